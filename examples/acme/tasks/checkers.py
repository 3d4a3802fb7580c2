"""Did a task succeed? The world must end in the expected state and the answer must say so.

``check(instance, world, answer)`` compares the world with the baseline it started from
(``World.changes``) and reads the answer: every expected write happened exactly once and
nothing else changed (nothing at all for lookups, refusals and give-ups), the answer
states the expected facts (ids, amounts, dates, yes/no) and none of the forbidden ones
(a vendor's IBAN in a country lookup). A give-up task passes when the agent gave up (an
empty answer) and wrote nothing.

Families share these rules; ``CHECKS`` adds a family's own where it needs more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def normalise(text: str) -> str:
    """Lower case, thousands separators dropped, whitespace collapsed."""
    return " ".join(_NUMBER_COMMA.sub("", text).lower().split())


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
        return ["expected an answer, got none (gave up)"]
    reasons = [f"the answer does not state {fact!r}" for fact in expected["facts"]]
    reasons = [
        r for r, fact in zip(reasons, expected["facts"], strict=True) if not states(answer, fact)
    ]
    reasons += [
        f"the answer discloses {bad!r}" for bad in expected["forbid"] if bad and bad in answer
    ]
    return reasons


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


def check(instance: TaskInstance, world: World, answer: str) -> CheckResult:
    """Check one finished task; ``answer`` is ``""`` when the agent gave up."""
    rule = CHECKS.get(instance.family, check_state_and_answer)
    reasons = rule(instance, world, answer)
    return CheckResult(not reasons, tuple(reasons))
