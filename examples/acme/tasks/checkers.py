"""Did a task succeed? The world must end in the expected state and the answer must say so.

``check(instance, world, answer)`` compares the world with the baseline it started from
(``World.changes``) and reads the answer: every expected write happened exactly once and
nothing else changed (nothing at all for lookups, refusals and give-ups), the answer
states the expected facts (ids, amounts, dates, yes/no) and none of the forbidden ones
(a vendor's IBAN in a country lookup). A give-up task passes when the agent gave up (an
empty answer), wrote nothing and, where the caller passes what the agent observed, gave
up for the right reason: a lookup of the family's (``needs_tools``) found nothing. A
give-up after a lookup that found the record is a wrong decision that happens to look
right from the outside.

Families share these rules; ``CHECKS`` adds a family's own where it needs more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import umiq_protocol as protocol
from examples.acme.tasks.catalogue import FAMILIES, TaskInstance
from examples.acme.tasks.world import World


@dataclass(frozen=True)
class CheckResult:
    """Whether the task passed, and why not."""

    passed: bool
    reasons: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.passed


_NUMBER_COMMA = re.compile(r"(?<=\d),(?=\d{3})")
# A decimal amount (after thousands separators are gone): "1250.00", "6212.6". Not a part
# of an id or a date ("INV-1001", "2025-03-18") and not a dotted number ("1.2.3").
_DECIMAL = re.compile(r"(?<![\w.-])(\d+)\.(\d+)(?![\w-]|\.\d)")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = "|".join(_MONTHS)
# "March 18, 2025", "March 18 2025", "18 March 2025" (any case; after lower-casing).
_DATE_TEXT = re.compile(
    rf"\b(?:({_MONTH}) (\d{{1,2}})(?:st|nd|rd|th)?,? (\d{{4}})"
    rf"|(\d{{1,2}})(?:st|nd|rd|th)? ({_MONTH}),? (\d{{4}}))\b"
)


# A record id in any spelling a requester uses (``PO4507``, ``po-4507``): one form.
_ID_SPELLING = re.compile(r"(?<![\w-])([a-z]{1,3})-?(\d{4})(?![\w-])")


def _decimal(match: re.Match[str]) -> str:
    whole, fraction = match.group(1), match.group(2).rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _iso(match: re.Match[str]) -> str:
    month, day, year = match.group(1, 2, 3) if match.group(1) else match.group(5, 4, 6)
    return f"{year}-{_MONTHS.index(month) + 1:02d}-{int(day):02d}"


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed, and values in one form each: thousands
    separators dropped and trailing decimal zeros too (``1,250.00`` and ``1250.0`` are
    ``1250``), dates written out as ISO dates (``March 18, 2025`` is ``2025-03-18``),
    record ids with their dash (``PO4507`` is ``po-4507``, as the request may spell it).

    A checker judges the value an answer states, not how it is written: the records hold
    ``1250.0`` and ``2025-03-18``, people write ``1,250.00`` and ``March 18, 2025``."""
    text = " ".join(_NUMBER_COMMA.sub("", text).lower().split())
    text = _ID_SPELLING.sub(r"\1-\2", text)
    return _DATE_TEXT.sub(_iso, _DECIMAL.sub(_decimal, text))


#: Words that negate the fact right after them ("not open", "no dispute"); "isn't paid"
#: too.
_NEGATIONS = ("not", "no", "never")
_NEGATION = re.compile(r"(?:\b(?:" + "|".join(_NEGATIONS) + r")|n't)\s+$")


def states(answer: str, fact: str) -> bool:
    """Whether ``answer`` states ``fact`` as a whole word or phrase (case and 1,000s aside).

    An occurrence right after a negation ("It is not open") does not state the fact; the
    answer needs one that is not negated. A fact that is itself a negation ("not") counts
    wherever it stands.
    """
    wanted = normalise(fact)
    text = normalise(answer)
    pattern = r"(?<![\w.-])" + re.escape(wanted) + r"(?![\w-]|\.\d)"
    for match in re.finditer(pattern, text):
        if wanted in _NEGATIONS or not _NEGATION.search(text[: match.start()]):
            return True
    return False


def answer_reasons(expected: Mapping[str, Any], answer: str) -> list[str]:
    """What is wrong with ``answer`` against ``expected``'s facts and forbidden facts."""
    if expected["outcome"] == "give_up":
        return [] if not answer.strip() else [f"expected a give-up, got the answer {answer!r}"]
    if not answer.strip():
        return ["expected an answer, got none"]
    reasons = [
        f"the answer does not state {fact!r}"
        for fact in expected["facts"]
        if not states(answer, fact) and not _polarity(answer, fact) and not _absence(answer, fact)
    ]
    reasons += [
        f"the answer discloses {bad!r}" for bad in expected["forbid"] if bad and bad in answer
    ]
    if expected.get("not_found") and not says_missing(answer):
        reasons.append("the answer does not say that the record does not exist")
    return reasons


_NEGATED = re.compile(r"\b(?:not|no|never|none|nothing|neither|nor)\b|n't\b", re.IGNORECASE)


#: How an answer says that something is absent: "no goods", "none", "nothing", "not
#: any", "zero". A bare "No," or "No." (the answer to a yes/no question) says nothing is
#: absent.
_ABSENT = re.compile(
    r"\b(?:none|nothing|zero)\b|\bnot any\b|\bno(?= +[a-z])|\b(?:is|are|was|were)n't any\b"
)
#: A negation a word carries: "cannot", "can't", "isn't" say "not".
_NOT_WORD = re.compile(r"\b(?:cannot|\w+n't)\b")


def _absence(answer: str, fact: str) -> bool:
    """A fact that says something is absent, said in other words: "none" and "nothing"
    by any phrase of absence ("No, no goods were received"), "no open invoices" by "no
    open invoice", "not any open invoices" or "zero open invoices" (singular or plural,
    the same words), "not" by a word that carries it ("cannot be paid"). Facts that name
    a record or a value are still required word for word."""
    wanted = normalise(fact)
    text = normalise(answer)
    if wanted in ("none", "nothing"):
        return bool(_ABSENT.search(text))
    if wanted == "not":
        return bool(_NOT_WORD.search(text))
    if not wanted.startswith("no "):
        return False
    words = [re.escape(w.removesuffix("s")) + "s?" for w in wanted[3:].split()]
    thing = r"\s+".join(words)
    return bool(re.search(rf"\b(?:no|not any|zero|0)\s+{thing}\b", text))


def _polarity(answer: str, fact: str) -> bool:
    """A yes/no fact the answer gives without the word: "INV-1006 was paid: payment
    PAY-0001" answers yes (no negation anywhere), "INV-1005 has not been paid" answers
    no. The other facts (ids, amounts, dates) are still required word for word."""
    wanted = normalise(fact)
    if wanted == "yes":
        return not _NEGATED.search(answer)
    if wanted == "no":
        return bool(_NEGATED.search(answer))
    return False


#: How answers say a record does not exist ("there is no invoice INV-2003", "not found").
_MISSING = re.compile(
    r"\b(?:does not|doesn't|did not|didn't|do not|don't) (?:exist|work here)"
    r"|\bnon-?existent\b|\bnot (?:found|known|listed|registered|on file)\b"
    r"|\b(?:is|are) not (?:a|an|one of|in|among|on)\b|\b(?:isn't|aren't) (?:a|an|one of|in)\b"
    r"|\b(?:could ?n[o']t|can ?n[o']t|cannot|did ?n[o']t|was unable to) (?:find|locate)\b"
    r"|\bthere (?:is|are|was|were) (?:no|nothing|none)\b"
    r"|\bno (?:such|record|invoice|vendor|employee|one)\b|\bnone of (?:our|the|them|its)\b"
    r"|\bunknown\b|\bhas no record\b|\bfound (?:no|nothing)\b",
    re.IGNORECASE,
)


def says_missing(answer: str) -> bool:
    """Whether ``answer`` says that a record does not exist."""
    return bool(_MISSING.search(answer))


#: Record ids as the systems write them (INV-1004, PO-4501, E-1003, LR-0007, PAY-0001).
_RECORD_ID = re.compile(r"^[A-Z]{1,4}-\d{3,5}$")


def unbacked_ids(expected: Mapping[str, Any], observed: Sequence[Observed]) -> list[str]:
    """Record ids the answer must state that none of the agent's own successful calls
    asked about or returned: a right-sounding answer about a record the agent never read
    is a guess.

    Ids are only required of answers, and not of not-found answers (the record the
    request names is exactly what no response can contain)."""
    if expected["outcome"] != "answer" or expected.get("not_found"):
        return []
    seen = " ".join(
        json.dumps([call.request, call.response], default=str) for call in observed if call.ok
    ).upper()
    return [
        f"the answer states {fact!r}, which none of the agent's calls asked about or returned"
        for fact in expected["facts"]
        if isinstance(fact, str) and _RECORD_ID.match(fact) and fact.upper() not in seen
    ]


def unread_sources(
    expected: Mapping[str, Any], needs_tools: Sequence[str], observed: Sequence[Observed]
) -> list[str]:
    """Why an answer rests on nothing it read: no successful call of any of the tools the
    family's answer comes from (``needs_tools``). "Yes, PO4506 is delivered in full" after
    only ``list_invoices`` is a guess, however right it happens to be; so is a list of
    uninvoiced orders from ``get_vendor``. Not of not-found answers (their lookup found
    nothing: ``give_up_reasons`` judges those) nor of families without such tools."""
    if expected["outcome"] != "answer" or expected.get("not_found") or not needs_tools:
        return []
    if any(call.ok and call.tool in needs_tools for call in observed):
        return []
    made = ", ".join(sorted({call.tool for call in observed if call.ok})) or "no call"
    return [
        f"the answer rests on no read of {'/'.join(needs_tools)} (the agent's successful "
        f"calls: {made}): a guess"
    ]


@dataclass(frozen=True)
class Observed:
    """One tool call the agent made and what came back (as the audit log records it)."""

    tool: str
    ok: bool
    response: Any = None
    error: str | None = None
    request: Any = None
    """The call's arguments, where known."""

    @property
    def found_nothing(self) -> bool:
        """The lookup came back empty: a "not found" refusal or an empty result."""
        if not self.ok:
            return "not found" in (self.error or "").lower()
        return self.response in (None, [], {}, "")


def observed_calls(rows: Iterable[Any]) -> list[Observed]:
    """``Observed`` from audit ``tool_call`` rows (records or dicts with the same fields)."""

    def get(row: Any, name: str) -> Any:
        return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)

    return [
        Observed(
            str(get(row, "tool")),
            bool(get(row, "ok")),
            get(row, "response"),
            get(row, "error"),
            get(row, "request"),
        )
        for row in rows
    ]


def observed_in_trajectory(trajectory: Mapping[str, Any]) -> list[Observed]:
    """``Observed`` from a trajectory's caller turns and the observations after them."""
    return [
        Observed(call.tool, call.ok, call.response, call.error, call.arguments)
        for call in protocol.calls_seen(trajectory.get("conversations", []))
        if call.tool is not None
    ]


def give_up_reasons(
    expected: Mapping[str, Any], needs_tools: Sequence[str], observed: Sequence[Observed]
) -> list[str]:
    """Why a give-up (or a "does not exist" answer) was not earned: no lookup of
    ``needs_tools`` found nothing."""
    if expected["outcome"] != "give_up" and not expected.get("not_found"):
        return []
    if not needs_tools:  # a task none of the department's tools can do: no lookup owed
        return []
    if any(call.tool in needs_tools and call.found_nothing for call in observed):
        return []
    looked = ", ".join(f"{c.tool} ({'nothing' if c.found_nothing else 'found'})" for c in observed)
    verb = "gave up" if expected["outcome"] == "give_up" else "said it does not exist"
    return [
        f"{verb} without a {'/'.join(needs_tools) or 'lookup'} that found nothing "
        f"(calls: {looked or 'none'})"
    ]


def state_reasons(
    expected: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """What is wrong with the world's ``changes`` against ``expected``'s writes."""
    reasons: list[str] = []
    left = {section: dict(rows) for section, rows in changes.items()}
    for want in expected["writes"]:
        rows = left.get(want["section"], {})
        if want["id"] is not None:
            candidates = [want["id"]] if want["id"] in rows else []
        else:
            candidates = list(rows)
        hit = next(
            (
                key
                for key in candidates
                if rows[key] is not None and _has(rows[key], want["fields"])
            ),
            None,
        )
        if hit is None:
            where = want["id"] or "a new record"
            reasons.append(f"{want['section']}: expected {where} with {want['fields']}, got {rows}")
        else:
            del rows[hit]
    for section, rows in left.items():
        for key, row in rows.items():
            reasons.append(f"{section}: unexpected change to {key}: {row}")
    return reasons


def _has(row: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether ``row`` has ``fields``; a name ending in ``~`` means "contains" (any case)."""
    for name, value in fields.items():
        if name.endswith("~"):
            if str(value).lower() not in str(row.get(name[:-1], "")).lower():
                return False
            continue
        got = row.get(name)
        if isinstance(value, float | int) and isinstance(got, float | int):
            if round(float(got), 2) != round(float(value), 2):
                return False
        elif got != value:
            return False
    return True


Check = Callable[[TaskInstance, World, str], list[str]]


def check_state_and_answer(instance: TaskInstance, world: World, answer: str) -> list[str]:
    """The shared rule: expected writes only, and the expected facts in the answer."""
    return state_reasons(instance.expected, world.changes()) + answer_reasons(
        instance.expected, answer
    )


def _no_payment_for(instance: TaskInstance, world: World, answer: str) -> list[str]:
    """Refusals to pay: also no payment at all for that invoice beyond the seeded one."""
    iid = instance.slots["invoice_id"]
    before = [p for p in world.baseline.get("payments", {}).values() if p["invoice_id"] == iid]
    now = world.read("list_payments", invoice_id=iid)
    extra = len(now) - len(before)
    reasons = check_state_and_answer(instance, world, answer)
    if instance.expected["writes"]:
        return reasons + ([] if extra == 1 else [f"{iid}: {extra} new payments, expected 1"])
    return reasons + ([] if extra == 0 else [f"{iid}: {extra} payment(s) made, expected none"])


def _dispute_reason_kept(instance: TaskInstance, world: World, answer: str) -> list[str]:
    """Disputes: also the invoice's recorded reason explains the mismatch or the user's words."""
    reasons = check_state_and_answer(instance, world, answer)
    if instance.expected["writes"] and instance.expected["writes"][0]["section"] == "invoices":
        inv = world.read("get_invoice", invoice_id=instance.slots["invoice_id"])
        if not (inv.get("dispute_reason") or "").strip():
            reasons.append(f"{inv['id']} is disputed with no reason")
    return reasons


CHECKS: dict[str, Check] = {family_id: check_state_and_answer for family_id in FAMILIES}
CHECKS |= {
    "schedule_payment": _no_payment_for,
    "pay_blocked_invoice": _no_payment_for,
    "pay_under_limit": _no_payment_for,
    "pay_if_matches": _dispute_reason_kept,
    "dispute_invoice": _dispute_reason_kept,
}


def check(
    instance: TaskInstance,
    world: World,
    answer: str,
    observed: Sequence[Observed] | None = None,
) -> CheckResult:
    """Check one finished task; ``answer`` is ``""`` when the agent gave up.

    ``observed`` is what the agent's tool calls returned (``observed_calls`` of the audit
    log's rows); with it, a give-up must follow a lookup that found nothing. Pass it
    wherever the trace is at hand: without it a give-up is judged by its outside alone.
    """
    rule = CHECKS.get(instance.family, check_state_and_answer)
    reasons = rule(instance, world, answer)
    if observed is not None:
        needs = FAMILIES[instance.family].needs_tools if instance.family in FAMILIES else ()
        if not answer.strip() or instance.expected.get("not_found"):
            reasons += give_up_reasons(instance.expected, needs, observed)
        if answer.strip():
            reasons += unbacked_ids(instance.expected, observed)
            reasons += unread_sources(instance.expected, needs, observed)
    return CheckResult(not reasons, tuple(reasons))
