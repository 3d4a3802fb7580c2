"""The expert's phrasings for the HR families, one table per script step (see
``expert_hr``): the thoughts before each call, the thoughts that conclude and the
answers. ``Recorder.say`` picks one of a tuple with the instance's generator and fills
in its fields, so the order inside each tuple is part of the data: changing it changes
the trajectories drawn for a seed."""

from __future__ import annotations

from examples.acme.tasks.expert import _FINAL

FIND_PERSON_FIND_EMPLOYEE = (
    "First I need {n}'s employee id, so I'll search HR by name.",
    "Let me find {n} in the HR database.",
    "I'll look {n} up among the employees.",
)

FIND_PERSON_CONCLUDE = (
    "Nobody called {n} works here; I'll say so.",
    "HR has no employee named {n}, which is the answer.",
    "The search found no {n}, so there is no one to act on.",
)

FIND_PERSON_ANSWER = (
    "There is no employee called {n} in HR, so I did not change anything.",
    "{n} does not work here: HR has no record of them.",
    "I could not find {n} among our employees; nothing was done.",
)

GET_REQUEST_GET_LEAVE_REQUEST = (
    "I'll open leave request {r} first.",
    "Let me read {r}: who asked, for which days, and its status.",
    "First, the details of {r}.",
)

LEAVE_BALANCE_GET_LEAVE_BALANCE = (
    "{n} is {e}; now the leave balance.",
    "Found {e}. I'll fetch the 2025 balance.",
)

MANAGER_OF_GET_MANAGER = (
    "Now I'll ask HR for {e}'s manager.",
    "With the id {e} I can get the manager.",
)

MANAGER_OF_CONCLUDE = ("I know who the manager is.", *_FINAL)

MANAGER_OF_ANSWER = (
    "{n} reports to {m}, {t} ({mail}).",
    "{n}'s manager is {m} ({t}).",
)

PENDING_LEAVE_TEAM_LIST_LEAVE_REQUESTS = (
    "Now the pending requests of {e}'s direct reports.",
    "I'll list pending leave requests for the team managed by {e}.",
)

PENDING_LEAVE_TEAM_CONCLUDE = ("The list is empty.",)

PENDING_LEAVE_TEAM_CONCLUDE_2 = ("{k} request(s) are pending.",)

APPROVE_IF_POSSIBLE_GET_LEAVE_BALANCE = (
    "It is annual leave for {d} days; I'll check {e}'s balance.",
    "Before approving I need to know whether {e} has {d} days left.",
)

APPROVE_IF_POSSIBLE_CONCLUDE = ("Only {l} days remain, less than the {d} requested.",)

APPROVE_IF_POSSIBLE_APPROVE_LEAVE_REQUEST = (
    "The request can be granted; approving {r}.",
    "Everything checks out, so I'll approve {r}.",
)

APPROVE_LEAVE_CONCLUDE = ("The approval went through.", "Done.")

REJECT_LEAVE_REJECT_LEAVE_REQUEST = (
    "I'll reject {r} with the reason given.",
    "Rejecting {r}: {why}.",
)

REJECT_LEAVE_CONCLUDE = ("The request is rejected.", "HR recorded the rejection.")

DECIDE_CLOSED_LEAVE_CONCLUDE = (
    "{r} was already {s}, so it cannot be decided again.",
    "It is no longer pending ({s}); I won't change it.",
)

ASK_MANAGER_DECISION_GET_MANAGER = (
    "{n} filed it; now I need their manager.",
    "Next, who manages {e}.",
)

ASK_MANAGER_DECISION_THOUGHT = ("I'll e-mail {m} at {a}.", "Writing to {m} to ask for a decision.")

ASK_MANAGER_DECISION_CONCLUDE = ("The mail is sent.", "The manager has been asked.")

APPROVE_AND_NOTIFY_FIND_EMPLOYEE = (
    "Approved. Now {n}'s e-mail address.",
    "I need {n}'s address for the confirmation.",
)

APPROVE_AND_NOTIFY_THOUGHT = ("Sending {n} the confirmation.", "I'll confirm it to {n} by e-mail.")

APPROVE_AND_NOTIFY_CONCLUDE = ("Approved and notified.", *_FINAL)

VENDOR_GET_VENDOR = (
    "Now the vendor {v}, for its contact address.",
    "I need {v}'s contact to write to.",
)

DISPUTE_AND_NOTIFY_VENDOR_DISPUTE_INVOICE = (
    "{i} is {s}; I'll dispute it.",
    "Disputing {i} because {why}.",
)

DISPUTE_AND_NOTIFY_VENDOR_THOUGHT = (
    "Letting {c} know at {a}.",
    "I'll e-mail {c} about the dispute.",
)

DISPUTE_AND_NOTIFY_VENDOR_CONCLUDE = ("Disputed and notified.", *_FINAL)

PAY_AND_NOTIFY_VENDOR_SCHEDULE_PAYMENT = (
    "{i} is open for {m}; scheduling it on {d}.",
    "I'll schedule the {m} payment for {d}.",
)

PAY_AND_NOTIFY_VENDOR_THOUGHT = ("Sending the payment notice to {a}.", "Now the e-mail to {c}.")

PAY_AND_NOTIFY_VENDOR_CONCLUDE = ("Paid and notified.", *_FINAL)
