"""Approval: which calls must wait for a human before a connector runs them.

Rules are data (tool pattern, effect, conditions over the arguments) so that a
department's settings can say "payments above 10,000 need approval" without code. A
department in ``review`` mode sends every write to a human, whatever the rules say.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies._access import _match
from policies._decision import Decision
from policies._pii import Detector

_DETECTOR = Detector()


def _carries(value: Any, kinds: Any) -> bool:
    # Personal data of the given kinds anywhere in the value (text, lists, dicts).
    wanted = {str(k).upper() for k in kinds}
    text = value if isinstance(value, str) else repr(value)
    return any(span.kind.value in wanted for span in _DETECTOR.find(text))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, options: value in options,
    "not in": lambda value, options: value not in options,
    # "carries": the value holds personal data of these kinds (IBAN, CARD, NATIONAL_ID…)
    "carries": _carries,
}


@dataclass(frozen=True)
class Condition:
    """``arguments[argument] <op> value``; a missing argument never matches."""

    argument: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown operator {self.op!r}; operators are {sorted(_OPS)}")

    def holds(self, arguments: Mapping[str, Any]) -> bool:
        if self.argument not in arguments:
            return False
        try:
            return bool(_OPS[self.op](arguments[self.argument], self.value))
        except TypeError:  # e.g. "abc" > 10: a value of the wrong type needs a human too
            return True

    def describe(self, arguments: Mapping[str, Any]) -> str:
        # Names the argument and the limit, never the value itself: arguments may carry
        # personal data, and reasons are logged and stored in plain text.
        return f"{self.argument} {self.op} {self.value!r}"


@dataclass(frozen=True)
class ApprovalRule:
    """Calls of ``tool`` (a name or glob, ``connector:tool`` allowed) with ``effect``
    (``read``, ``write`` or ``*``) whose arguments meet every condition need approval."""

    tool: str = "*"
    effect: str = "write"
    when: tuple[Condition, ...] = ()
    reason: str = ""
    """Why, in the department's words (shown to the approver)."""

    def matches(
        self, tool: str, connector: str | None, effect: str, arguments: Mapping[str, Any]
    ) -> bool:
        if self.effect not in ("*", effect) or not _match(self.tool, tool, connector):
            return False
        return all(c.holds(arguments) for c in self.when)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRule:
        """``{"tool": "schedule_payment", "when": [["amount", ">", 10000]], "reason": …}``."""
        when = tuple(
            Condition(*c) if isinstance(c, list | tuple) else Condition(**c)
            for c in data.get("when", ())
        )
        return cls(
            tool=data.get("tool", "*"),
            effect=data.get("effect", "write"),
            when=when,
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class ApprovalPolicy:
    """A department's approval rules and rollout mode."""

    rules: tuple[ApprovalRule, ...] = ()
    mode: str = "auto"
    exempt: frozenset[str] = field(default_factory=frozenset)
    """Idempotency keys a human has already approved (the resumed episode's)."""


def check_approval(
    policy: ApprovalPolicy,
    tool: str,
    effect: str,
    arguments: Mapping[str, Any],
    *,
    connector: str | None = None,
    key: str | None = None,
) -> Decision:
    """Allowed means "may run now"; not allowed means "wait for a human", with why."""
    if key is not None and key in policy.exempt:
        return Decision(True, "approval", (f"call {key} was approved by a human",))
    reasons = []
    if policy.mode == "review" and effect == "write":
        reasons.append("the department is in review mode: every write needs approval")
    for rule in policy.rules:
        if rule.matches(tool, connector, effect, arguments):
            conditions = " and ".join(c.describe(arguments) for c in rule.when)
            what = f"{tool} ({effect})" + (f" with {conditions}" if conditions else "")
            reasons.append(f"{what} needs approval" + (f": {rule.reason}" if rule.reason else ""))
    if reasons:
        return Decision(False, "approval", tuple(reasons))
    return Decision(True, "approval", (f"no approval rule applies to {tool} ({effect})",))


def approval_rules(data: Iterable[Mapping[str, Any]]) -> tuple[ApprovalRule, ...]:
    """Rules from settings (a list of dicts)."""
    return tuple(ApprovalRule.from_dict(d) for d in data)
