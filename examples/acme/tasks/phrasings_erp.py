"""The expert's phrasings for the ERP families, one table per script step (see
``expert_erp``): the thoughts before each call, the thoughts that conclude and the
answers. ``Recorder.say`` picks one of a tuple with the instance's generator and fills
in its fields, so the order inside each tuple is part of the data: changing it changes
the trajectories drawn for a seed."""

from __future__ import annotations

from examples.acme.tasks.expert import _FINAL

INVOICE_STATUS_CONCLUDE = (
    "The invoice is {s}; I can report that.",
    "{i} shows status {s}, which answers the question.",
    "I have the status of {i}.",
)

INVOICE_STATUS_ANSWER = (
    "Invoice {i} is {s}. It is for {m} from vendor {v}.",
    "{i} currently has the status {s} ({m}, vendor {v}).",
    "The status of {i} is {s}; the amount is {m}.",
)

INVOICE_DUE_DATE_CONCLUDE = ("The due date is in the invoice record.", *_FINAL)

INVOICE_DUE_DATE_ANSWER = (
    "Invoice {i} is due on {d} ({m}, currently {s}).",
    "{i} falls due on {d}. It is for {m}.",
    "The due date of {i} is {d}; its status is {s}.",
)

VENDOR_COUNTRY_GET_VENDOR = (
    "I'll look up vendor {v} in the ERP.",
    "The vendor record of {v} will have its country.",
    "Let me fetch {v}'s master data.",
)

VENDOR_COUNTRY_CONCLUDE = (
    "The record shows the country; the bank details are not needed for this.",
    "I have the country of {v} and will leave the bank details out.",
    "{v}'s country is in the record, which is all that was asked.",
)

VENDOR_COUNTRY_ANSWER = (
    "Vendor {v}, {n}, is based in {c}.",
    "{n} ({v}) is registered in {c}.",
    "{v} is {n}, located in country {c}.",
)

PO_AMOUNT_GET_PURCHASE_ORDER = (
    "I'll retrieve purchase order {p}.",
    "The total of {p} is on the order itself; let me get it.",
    "Let me open {p} in the ERP.",
)

PO_AMOUNT_ANSWER = (
    "Purchase order {p} totals {m} over {n} line(s); it is {s}.",
    "{p} is for {m} ({n} line(s), vendor {v}).",
    "The total amount of {p} is {m}.",
)

PAYMENT_STATUS_LIST_PAYMENTS = (
    "I'll check the payments recorded for {i}.",
    "Let me list the payments against invoice {i}.",
    "Payments for {i} will tell me whether it was settled.",
)

PAYMENT_STATUS_CONCLUDE = ("There is no payment for {i}.", "The list is empty, so {i} is unpaid.")

PAYMENT_STATUS_ANSWER = (
    "No, {i} has not been paid: no payment is recorded or scheduled for it.",
    "No. There is no payment for invoice {i} yet.",
)

PAYMENT_STATUS_CONCLUDE_2 = ("A payment exists for {i}.", "I found the payment of {i}.")

PAYMENT_STATUS_ANSWER_2 = (
    "Yes, {i} was paid by {p} ({m}) on {d}; the payment is {s}.",
    "Yes. Payment {p} for {m} settled {i} on {d}.",
)

GET_ORDER = (
    "The invoice bills {p}; I need that order's total to compare.",
    "Now I'll fetch purchase order {p} to compare the amounts.",
    "Next, the purchase order {p}, to check the amount against it.",
)

INVOICE_PO_CHECK_CONCLUDE = ("{i} refers to no purchase order, so there is nothing to match.",)

INVOICE_PO_CHECK_CONCLUDE_2 = ("Both amounts are {m}.", "The invoice and order agree at {m}.")

INVOICE_PO_CHECK_ANSWER = (
    "Yes, {i} matches {p}: both are for {m}.",
    "Yes. Invoice {i} bills {m}, exactly the total of {p}.",
)

INVOICE_PO_CHECK_CONCLUDE_3 = (
    "The invoice is {d} {w} than the order.",
    "The amounts differ by {d}.",
)

INVOICE_PO_CHECK_ANSWER_2 = (
    "No, {i} does not match {p}: the invoice is for {mi} but the order totals "
    "{mo}, a difference of {d} ({w} than ordered).",
    "No. {i} bills {mi} while {p} is for {mo}; it is {d} {w} than the order.",
)

FIND_VENDOR_LIST_VENDORS = (
    "I need the vendor id of {n}, so I'll search the vendors by name.",
    "First I'll find {n} among our vendors.",
    "Let me search the vendor list for {n}.",
)

FIND_VENDOR_CONCLUDE = (
    "No vendor called {n} exists in the ERP; I'll say so.",
    "The search for {n} found no vendor, which is the answer.",
    "{n} is not one of our vendors, so there is nothing more to look up.",
)

FIND_VENDOR_ANSWER = (
    "There is no vendor called {n} in the ERP, so I did not change anything.",
    "{n} is not a vendor in our ERP; I found no record of them.",
    "I could not find {n} among our vendors: the ERP has no such vendor.",
)

VENDOR_OPEN_TOTAL_LIST_INVOICES = (
    "{n} is {v}; now its open invoices.",
    "Found {v}. I'll list its invoices with status open.",
    "The vendor id is {v}, so I can list its open invoices.",
)

VENDOR_OPEN_TOTAL_CONCLUDE = ("There are no open invoices for {v}.",)

VENDOR_OPEN_TOTAL_CONCLUDE_2 = (
    "Adding up {k} open invoice(s).",
    "I'll sum the {k} open amount(s).",
)

VENDOR_OPEN_TOTAL_ANSWER = (
    "{n} ({v}) has {k} open invoice(s), {ids}, totalling {t}.",
    "We owe {n} ({v}) {t} across {k} open invoice(s): {ids}.",
)

UNINVOICED_ORDERS_LIST_PURCHASE_ORDERS = (
    "First, the purchase orders of {v}.",
    "I'll list {v}'s purchase orders.",
)

UNINVOICED_ORDERS_LIST_INVOICES = (
    "Now the invoices of {v}, to see which orders they bill.",
    "Next I'll list {v}'s invoices and compare their order ids.",
)

UNINVOICED_ORDERS_CONCLUDE = ("Every order of {v} has an invoice.",)

UNINVOICED_ORDERS_CONCLUDE_2 = (
    "{k} order(s) have no invoice.",
    "Comparing the two lists leaves {k} order(s).",
)

SCHEDULE_SCHEDULE_PAYMENT = (
    "{i} is open and for {m}; I'll schedule it for {d}.",
    "Now I can schedule the payment of {m} for {d}.",
    "Scheduling the full amount of {i}, {m}, on {d}.",
)

SCHEDULE_CONCLUDE = ("The payment is scheduled.", "Payment {p} was created.", *_FINAL)

SCHEDULE_ANSWER = (
    "Done: payment {p} of {m} for {i} is scheduled on {d}.",
    "I scheduled {i} ({m}) for {d} as payment {p}.",
    "Payment {p} will pay {m} for invoice {i} on {d}.",
)

PAY_IF_MATCHES_THOUGHT = (
    "{i} is {mi} but {p} totals {mo}, so I'll dispute it instead of paying.",
    "The amounts differ by {d}; the instructions say to dispute in that case.",
    "No match ({mi} vs {mo}), so I'm raising a dispute.",
)

PAY_IF_MATCHES_CONCLUDE = ("The invoice is now disputed.", "The dispute is recorded.")

DISPUTE_INVOICE_DISPUTE_INVOICE = (
    "I'll dispute {i} with the reason given.",
    "The user wants {i} disputed because {r}; I'll record that.",
    "Raising the dispute on {i} now.",
)

DISPUTE_INVOICE_CONCLUDE = ("The invoice is disputed now.", "The ERP accepted the dispute.")

DISPUTE_INVOICE_ANSWER = (
    "Invoice {i} is now disputed (reason: {r}). It cannot be paid until resolved.",
    "Done: {i} is disputed because {r}.",
)

PAY_BLOCKED_INVOICE_CONCLUDE = (
    "{i} is disputed, so it must not be paid.",
    "A disputed invoice cannot be paid; I'll explain instead.",
)

PAY_BLOCKED_INVOICE_LIST_PAYMENTS = (
    "{i} is marked {s}; I'll find the payment to be sure it was settled.",
    "The status says {s}, so let me check its payments before anything else.",
)

PAY_BLOCKED_INVOICE_CONCLUDE_2 = (
    "It was already paid by {p}; paying again would be a double payment.",
    "Payment {p} already settled it, so I must not pay it twice.",
)

PAY_UNDER_LIMIT_CONCLUDE = (
    "{m} is above the {l} limit, so I must not pay it.",
    "The invoice exceeds the limit of {l}; no payment.",
)

RECEIPTS_LIST_GOODS_RECEIPTS = (
    "Now the goods receipts booked against {p}.",
    "I'll list the deliveries received for {p}.",
    "Next, what the warehouse received on {p}.",
)

DELIVERY_STATUS_GET_PURCHASE_ORDER = (
    "First the ordered quantities of {p}.",
    "Let me open {p} to see what was ordered.",
)

DELIVERY_STATUS_CONCLUDE = ("No goods receipt exists for {p}.",)

DELIVERY_STATUS_CONCLUDE_2 = ("The receipts cover every line.", "All ordered units were received.")

DELIVERY_STATUS_CONCLUDE_3 = (
    "Some lines were received short.",
    "The receipts do not cover the whole order.",
)

THREE_WAY_MATCH_CONCLUDE = ("Order, receipts and invoice all agree.", "Everything lines up.")

THREE_WAY_MATCH_CONCLUDE_2 = ("The match fails: {p}.",)

CREDIT_OVERBILLING_CONCLUDE = ("{i} does not bill more than {p}, so there is nothing to credit.",)

CREDIT_OVERBILLING_CREATE_CREDIT_NOTE = (
    "{i} is {a} over {p}; I'll record a credit note for that.",
    "The excess is {a}, so I'm booking the credit note dated {d}.",
)

CREDIT_OVERBILLING_CONCLUDE_2 = ("The credit note is recorded.", "Credit note {n} exists now.")

OUT_OF_SCOPE_GIVE_UP = (
    "This is HR work; none of my tools reach the HR system, so I cannot do it.",
    "Leave and employee records are not in the ERP or the mail tools I have; I have to give up.",
    "No tool of mine covers employees or leave, so I cannot act on this.",
)
