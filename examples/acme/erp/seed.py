"""Deterministic seed data for the Acme ERP.

The scenario is fixed (which invoice matches its purchase order, which bills too much,
which is paid or disputed); the seed only varies the details — account numbers, contact
people, order lines and dates — so different seeds give different but equally valid
worlds. ``INV-1001`` from ``V-0042`` for 1,250.00 EUR against ``PO-4501`` is the same in
every world: it is the example the documentation uses.

Goods receipts follow ``RECEIPTS``: most orders were delivered in full, some in part (so
a three-way match of order, receipt and invoice fails on quantity although the invoice
equals the order), one in two deliveries, and the open orders not (or barely) yet.
Their details come from a random stream of their own, so adding them left every
earlier record of a seed as it was. No credit notes are seeded.
"""

from __future__ import annotations

import datetime as dt
import random
import string
import unicodedata

from sqlalchemy.orm import Session

from examples.acme.erp.models import (
    GoodsReceipt,
    GoodsReceiptLine,
    Invoice,
    Payment,
    PurchaseOrder,
    PurchaseOrderLine,
    Vendor,
)

# id, name, country, e-mail domain, currency
VENDORS = [
    ("V-0042", "Nordlicht Bürobedarf GmbH", "DE", "nordlicht-buero.de", "EUR"),
    ("V-0017", "Atelier Mercier SARL", "FR", "atelier-mercier.fr", "EUR"),
    ("V-0023", "Van Dijk Logistics B.V.", "NL", "vandijk-logistics.nl", "EUR"),
    ("V-0031", "Ferraro Componenti S.p.A.", "IT", "ferraro-componenti.it", "EUR"),
    ("V-0056", "Iberia Suministros S.L.", "ES", "iberia-suministros.es", "EUR"),
    ("V-0064", "Brouwer & Peeters NV", "BE", "brouwer-peeters.be", "EUR"),
    ("V-0078", "Alpenwerk Maschinen GmbH", "AT", "alpenwerk.at", "EUR"),
    ("V-0085", "Lindqvist Data AB", "SE", "lindqvist-data.se", "SEK"),
    ("V-0091", "Thames Office Supplies Ltd", "GB", "thames-office.co.uk", "GBP"),
    ("V-0103", "Kowalski Druk Sp. z o.o.", "PL", "kowalski-druk.pl", "PLN"),
]

# BBAN per country: a bank code drawn from real ones where it is letters, then digits
_BBAN = {
    "DE": ([""], 18), "FR": ([""], 23), "NL": (["ABNA", "INGB", "RABO", "TRIO"], 10),
    "IT": (list("ABCDEFGHIJKLMNOPRSTUVWXYZ"), 22), "ES": ([""], 20), "BE": ([""], 12),
    "AT": ([""], 16), "SE": ([""], 20), "GB": (["BARC", "HSBC", "LOYD", "NWBK"], 14),
    "PL": ([""], 24),
}  # fmt: skip

_PEOPLE = {
    "DE": (["Anna", "Jonas", "Lena", "Felix"], ["Schmidt", "Becker", "Wagner", "Hoffmann"]),
    "FR": (["Claire", "Hugo", "Léa", "Julien"], ["Mercier", "Dubois", "Lefèvre", "Moreau"]),
    "NL": (["Sanne", "Daan", "Femke", "Bram"], ["de Vries", "Jansen", "Bakker", "Visser"]),
    "IT": (["Giulia", "Marco", "Chiara", "Luca"], ["Ferraro", "Rossi", "Bianchi", "Greco"]),
    "ES": (["Lucía", "Javier", "Marta", "Pablo"], ["García", "López", "Martín", "Ruiz"]),
    "BE": (["Elise", "Thomas", "Noor", "Wout"], ["Peeters", "Janssens", "Maes", "Claes"]),
    "AT": (["Katharina", "Lukas", "Sophie", "Florian"], ["Gruber", "Huber", "Bauer", "Pichler"]),
    "SE": (["Astrid", "Erik", "Maja", "Oskar"], ["Lindqvist", "Berg", "Nilsson", "Holm"]),
    "GB": (["Emily", "Oliver", "Grace", "Harry"], ["Taylor", "Wright", "Evans", "Hughes"]),
    "PL": (["Zofia", "Jakub", "Alicja", "Piotr"], ["Kowalski", "Nowak", "Wiśniewski", "Zając"]),
}

# sku, description, unit price in cents
CATALOG = [
    ("PAP-A4-5", "Printer paper A4, box of 5 reams", 5000),
    ("CHR-ERG", "Ergonomic office chair", 28900),
    ("DSK-160", "Height-adjustable desk 160 cm", 54900),
    ("MON-27", "27-inch monitor", 23950),
    ("TON-HP", "Toner cartridge, black", 8990),
    ("SRV-LOG", "Freight handling, per pallet", 14500),
    ("CAB-C6", "Network cable Cat6, 5 m", 790),
    ("LIC-SAAS", "Software licence, seat per year", 36000),
    ("MNT-HRS", "Maintenance, per hour", 9500),
    ("PRT-BRO", "Brochure print run, 500 copies", 41250),
]

# invoice, purchase order, vendor, how the invoice relates to the PO, invoice status
SCENARIO = [
    ("INV-1001", "PO-4501", "V-0042", "match", "open"),
    ("INV-1002", "PO-4502", "V-0017", "match", "open"),
    ("INV-1003", "PO-4503", "V-0023", "over", "open"),
    ("INV-1004", "PO-4504", "V-0031", "match", "open"),
    ("INV-1005", "PO-4505", "V-0056", "under", "open"),
    ("INV-1006", "PO-4506", "V-0064", "match", "paid"),
    ("INV-1007", "PO-4507", "V-0078", "over", "disputed"),
    ("INV-1008", "PO-4508", "V-0085", "match", "open"),
    ("INV-1009", None, "V-0091", "no_po", "open"),
    ("INV-1010", "PO-4510", "V-0091", "match", "open"),
    ("INV-1011", "PO-4511", "V-0103", "over", "open"),
    ("INV-1012", "PO-4512", "V-0042", "match", "open"),
]
# purchase orders with no invoice yet
OPEN_ORDERS = [("PO-4509", "V-0017"), ("PO-4513", "V-0056")]

# purchase order -> how it was delivered: full, partial (a line short), split (two
# deliveries that add up to the order); orders not listed have no receipt yet
RECEIPTS = {
    "PO-4501": "full", "PO-4502": "full", "PO-4503": "full", "PO-4504": "partial",
    "PO-4505": "full", "PO-4506": "full", "PO-4507": "full", "PO-4508": "full",
    "PO-4510": "partial", "PO-4511": "full", "PO-4512": "split", "PO-4513": "partial",
}  # fmt: skip

BASE_DATE = dt.date(2025, 3, 3)


def iban(country: str, bban: str) -> str:
    """A valid IBAN for ``country`` and ``bban``: the two check digits make it ≡ 1 mod 97."""
    rearranged = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


def iban_is_valid(value: str) -> bool:
    """Whether ``value`` passes the ISO 13616 mod-97 check."""
    value = value.replace(" ", "").upper()
    if len(value) < 15 or not value.isalnum():
        return False
    rearranged = value[4:] + value[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _vendor(rng: random.Random, vid: str, name: str, country: str, domain: str) -> Vendor:
    banks, digits = _BBAN[country]
    bban = rng.choice(banks) + "".join(rng.choice(string.digits) for _ in range(digits))
    firsts, lasts = _PEOPLE[country]
    first, last = rng.choice(firsts), rng.choice(lasts)
    return Vendor(
        id=vid,
        name=name,
        country=country,
        iban=iban(country, bban),
        contact_name=f"{first} {last}",
        email=f"{_ascii(first)}.{_ascii(last)}@{domain}",
    )


def _lines(rng: random.Random, po_id: str) -> list[PurchaseOrderLine]:
    if po_id == "PO-4501":  # the documented example: 25 x 50.00 = 1,250.00
        items = [(CATALOG[0], 25)]
    else:
        items = [(item, rng.randint(1, 20)) for item in rng.sample(CATALOG, rng.randint(1, 3))]
    return [
        PurchaseOrderLine(
            po_id=po_id, line_no=n, sku=sku, description=desc, quantity=qty, unit_price_cents=price
        )
        for n, ((sku, desc, price), qty) in enumerate(items, start=1)
    ]


def seed(session: Session, seed: int = 0) -> None:
    """Add the Acme ERP world for ``seed`` to an empty database (the caller commits)."""
    rng = random.Random(seed)
    currency = {vid: cur for vid, _, _, _, cur in VENDORS}
    session.add_all(_vendor(rng, vid, name, cc, dom) for vid, name, cc, dom, _ in VENDORS)
    session.flush()

    invoiced = {po: status for _, po, _, _, status in SCENARIO if po}
    orders = [(po, vid) for _, po, vid, _, _ in SCENARIO if po] + OPEN_ORDERS
    pos: dict[str, PurchaseOrder] = {}
    for po_id, vid in sorted(orders):
        status = {"paid": "closed", None: "open"}.get(invoiced.get(po_id), "received")
        po = PurchaseOrder(
            id=po_id,
            vendor_id=vid,
            order_date=BASE_DATE - dt.timedelta(days=rng.randint(20, 45)),
            currency=currency[vid],
            status=status,
            lines=_lines(rng, po_id),
        )
        pos[po_id] = po
        session.add(po)
    session.flush()

    for inv_id, po_id, vid, kind, status in SCENARIO:
        if po_id is None:
            amount, issued = rng.randint(5, 80) * 2500, BASE_DATE - dt.timedelta(days=12)
        else:
            po = pos[po_id]
            extra = po.lines[0].unit_price_cents * {"over": 1, "under": -1}.get(kind, 0)
            amount = po.amount_cents + extra
            if amount <= 0:  # a one-unit order billed one unit short: bill half instead
                amount = po.amount_cents // 2
            issued = po.order_date + dt.timedelta(days=rng.randint(5, 15))
        invoice = Invoice(
            id=inv_id,
            vendor_id=vid,
            po_id=po_id,
            amount_cents=amount,
            currency=currency[vid],
            issue_date=issued,
            due_date=issued + dt.timedelta(days=30),
            status=status,
            dispute_reason=(
                f"Billed more than ordered on {po_id}." if status == "disputed" else None
            ),
        )
        session.add(invoice)
        if status == "paid":
            session.add(
                Payment(
                    id="PAY-0001",
                    invoice_id=inv_id,
                    amount_cents=amount,
                    currency=invoice.currency,
                    scheduled_date=invoice.due_date - dt.timedelta(days=2),
                    status="executed",
                )
            )
    session.flush()
    _receipts(random.Random(f"goods-receipts:{seed}"), session, pos)


def _receipts(rng: random.Random, session: Session, pos: dict[str, PurchaseOrder]) -> None:
    number = 7000
    for po_id, how in RECEIPTS.items():
        po = pos[po_id]
        received = {line.line_no: line.quantity for line in po.lines}
        if how == "partial":
            short = [n for n, qty in received.items() if qty > 1]
            if short:  # deliver fewer units of one line
                line_no = rng.choice(short)
                received[line_no] -= rng.randint(1, received[line_no] - 1)
            else:  # single units only: the last line did not come (nothing, if it is the only)
                received.pop(max(received))
        deliveries = [received]
        if how == "split":
            first = {n: qty // 2 for n, qty in received.items() if qty // 2}
            deliveries = [first, {n: qty - first.get(n, 0) for n, qty in received.items()}]
        day = po.order_date
        skus = {line.line_no: line.sku for line in po.lines}
        for delivery in deliveries:
            delivery = {n: qty for n, qty in delivery.items() if qty}
            if not delivery:
                continue
            number += 1
            day += dt.timedelta(days=rng.randint(3, 9))
            session.add(
                GoodsReceipt(
                    id=f"GR-{number}",
                    po_id=po_id,
                    receipt_date=day,
                    lines=[
                        GoodsReceiptLine(line_no=n, sku=skus[n], quantity=qty)
                        for n, qty in sorted(delivery.items())
                    ],
                )
            )
    session.flush()
