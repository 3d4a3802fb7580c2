"""Approval: which calls must wait for a human before a connector runs them.

Rules are data (tool pattern, effect, conditions over the arguments) so that a
department's settings can say "payments above 10,000 need approval" without code. A
policy that holds every write (``hold_writes``: a department in ``review``, as the
worker's rollout decides) sends every write to a human, whatever the rules say.

Conditions fail closed: a limit compared with a missing, NaN, infinite or non-numeric
amount holds (a human decides), and a money limit given per currency holds for a
currency it does not name or a call whose currency is unknown.

A rule also says who may approve what it holds: ``approvers`` (names; empty: anyone but
the requester) and ``distinct_approvers`` (the approver must differ from everyone who
approved an earlier call of the same task). The approval decision carries them in its
``details`` so that the approvals code enforces them when a human decides.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies._access import _match
from policies._decision import Decision
from policies._pii import Detector

_DETECTOR = Detector()


@dataclass(frozen=True)
class CallContext:
    """What a condition may know beyond the arguments, supplied by the worker.

    ``known`` maps raw values this task's tokens stand for to their kind (``IBAN``…): the
    outbound check finds them in the text as sent even when glued to other characters.
    ``currency`` is the currency of the record the call acts on (an invoice's), if known.
    """

    known: Mapping[str, str] = field(default_factory=dict)
    currency: str | None = None


_NO_CONTEXT = CallContext()


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _texts(v)]
    return [repr(value)]


def _carries(value: Any, kinds: Any, context: CallContext) -> bool:
    # Personal data of the given kinds anywhere in the value (text, lists, dicts), as it
    # will be sent: detected, or a raw value one of this task's tokens stood for, wherever
    # it sits (`x<NATIONAL_ID_1>x` resolves to a BSN glued to letters).
    wanted = {str(k).upper() for k in kinds}
    for text in _texts(value):
        if any(span.kind.value in wanted for span in _DETECTOR.find(text)):
            return True
        folded = text.casefold()
        for raw, kind in context.known.items():
            if kind in wanted and raw and raw.casefold() in folded:
                return True
            compact = "".join(raw.split())
            if kind in wanted and compact and compact.casefold() in "".join(folded.split()):
                return True
    return False


def domain_of(address: str) -> str:
    """The domain of an e-mail address, lower-cased, without a trailing dot ("" if none)."""
    _, at, domain = address.strip().rpartition("@")
    return domain.strip().rstrip(".").casefold() if at else ""


def _outside(value: Any, domains: Any) -> list[str]:
    """The domains of the addresses in ``value`` that are not ``domains`` or under them."""
    allowed = [str(d).strip().lstrip("@").rstrip(".").casefold() for d in domains]
    found = []
    for address in _texts(value) if not isinstance(value, str) else value.split(","):
        domain = domain_of(address)
        inside = domain and any(domain == d or domain.endswith("." + d) for d in allowed)
        if not inside and domain not in found:
            found.append(domain or "(no domain)")
    return found


def _number(value: Any) -> float | None:
    # A finite int or float; None for anything a limit cannot be compared with.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    **_COMPARE,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, options: value in options,
    "not in": lambda value, options: value not in options,
}
#: Operators that need the call's context; "carries": the value holds personal data of
#: these kinds (IBAN, CARD, NATIONAL_ID…); "domain not in": an address's domain is not
#: one of these (or under one of them).
_CONTEXT_OPS = ("carries", "domain not in")
OPERATORS = (*_OPS, *_CONTEXT_OPS)


@dataclass(frozen=True)
class Condition:
    """``arguments[argument] <op> value``.

    A missing argument never matches, except under a comparison (``>``, ``<``…): a limit
    on an amount the call does not state, or states as NaN, holds. The value of a
    comparison may be a number or a per-currency map (``{"EUR": 50000, "SEK": 550000}``).
    """

    argument: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown operator {self.op!r}; operators are {sorted(OPERATORS)}")
        per_currency = self.op in _COMPARE and isinstance(self.value, Mapping)
        if per_currency and (
            not self.value or any(_number(v) is None for v in self.value.values())
        ):
            raise ValueError(
                f"condition on {self.argument!r}: a per-currency limit maps currency "
                f"codes to numbers, got {self.value!r}"
            )

    def holds(self, arguments: Mapping[str, Any], context: CallContext = _NO_CONTEXT) -> bool:
        if self.op in _COMPARE:
            return self._compare(arguments, context)
        if self.argument not in arguments:
            return False
        value = arguments[self.argument]
        if self.op == "carries":
            return _carries(value, self.value, context)
        if self.op == "domain not in":
            return bool(_outside(value, self.value))
        try:
            return bool(_OPS[self.op](value, self.value))
        except TypeError:  # e.g. "abc" > 10: a value of the wrong type needs a human too
            return True

    def _compare(self, arguments: Mapping[str, Any], context: CallContext) -> bool:
        number = _number(arguments.get(self.argument))
        limit = self._limit(arguments, context)
        if number is None or limit is None:  # fail closed: missing, NaN, text, currency
            return True
        return bool(_COMPARE[self.op](number, limit))

    def _limit(self, arguments: Mapping[str, Any], context: CallContext) -> float | None:
        if not isinstance(self.value, Mapping):
            return _number(self.value)
        currency = arguments.get("currency") or context.currency
        if not isinstance(currency, str):
            return None
        return _number(self.value.get(currency.strip().upper()))

    def describe(self, arguments: Mapping[str, Any], context: CallContext = _NO_CONTEXT) -> str:
        # Names the argument and the limit, never the value itself: arguments may carry
        # personal data, and reasons are logged and stored in plain text. The one
        # exception is the domain of an outside recipient, which the approver must see.
        if self.op == "domain not in":
            outside = _outside(arguments.get(self.argument, ""), self.value)
            return (
                f"{self.argument} is outside the company domains "
                f"(recipient domain {', '.join(outside)})"
            )
        if self.op in _COMPARE:
            return self._describe_limit(arguments, context)
        return f"{self.argument} {self.op} {self.value!r}"

    def _describe_limit(self, arguments: Mapping[str, Any], context: CallContext) -> str:
        if self.argument not in arguments:
            return f"{self.argument} missing (limit {self.op} {self.value!r})"
        if _number(arguments[self.argument]) is None:
            return f"{self.argument} is not a finite number (limit {self.op} {self.value!r})"
        if not isinstance(self.value, Mapping):
            return f"{self.argument} {self.op} {self.value!r}"
        currency = arguments.get("currency") or context.currency
        if not isinstance(currency, str):
            return f"{self.argument} in an unknown currency (limits {dict(self.value)!r})"
        code = currency.strip().upper()
        if code not in self.value:
            return f"{self.argument} in {code}, a currency without a limit"
        return f"{self.argument} {self.op} {self.value[code]!r} {code}"


@dataclass(frozen=True)
class ApprovalRule:
    """Calls of ``tool`` (a name or glob, ``connector:tool`` allowed) with ``effect``
    (``read``, ``write`` or ``*``) whose arguments meet every condition need approval."""

    tool: str = "*"
    effect: str = "write"
    when: tuple[Condition, ...] = ()
    reason: str = ""
    """Why, in the department's words (shown to the approver)."""
    approvers: tuple[str, ...] = ()
    """Who may approve what this rule holds; empty: anyone but the requester."""
    distinct_approvers: bool = False
    """The approver must differ from everyone who approved an earlier call of the task."""

    def matches(
        self,
        tool: str,
        connector: str | None,
        effect: str,
        arguments: Mapping[str, Any],
        context: CallContext = _NO_CONTEXT,
    ) -> bool:
        if self.effect not in ("*", effect) or not _match(self.tool, tool, connector):
            return False
        return all(c.holds(arguments, context) for c in self.when)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRule:
        """``{"tool": "schedule_payment", "when": [["amount", ">", 10000]], "reason": …}``."""
        when = tuple(
            Condition(*c) if isinstance(c, list | tuple) else Condition(**c)
            for c in data.get("when", ())
        )
        approvers = data.get("approvers", ())
        if isinstance(approvers, str):
            raise TypeError(f"rule {data.get('tool')!r}: approvers must be a list of names")
        return cls(
            tool=data.get("tool", "*"),
            effect=data.get("effect", "write"),
            when=when,
            reason=data.get("reason", ""),
            approvers=tuple(str(a).strip() for a in approvers),
            distinct_approvers=bool(data.get("distinct_approvers", False)),
        )


@dataclass(frozen=True)
class ApprovalPolicy:
    """A department's approval rules, and whether every write waits."""

    rules: tuple[ApprovalRule, ...] = ()
    hold_writes: str = ""
    """Why every write waits for a human ("" when none must): the task's rollout decides."""
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
    context: CallContext = _NO_CONTEXT,
) -> Decision:
    """Allowed means "may run now"; not allowed means "wait for a human", with why.

    A held call's decision says in ``details`` who may approve it: ``approvers`` (the
    names every matching rule allows, intersected) and ``distinct_approvers``.
    """
    if key is not None and key in policy.exempt:
        return Decision(True, "approval", (f"call {key} was approved by a human",))
    reasons = []
    approvers: set[str] | None = None
    distinct = False
    if policy.hold_writes and effect == "write":
        reasons.append(policy.hold_writes)
    for rule in policy.rules:
        if rule.matches(tool, connector, effect, arguments, context):
            conditions = " and ".join(c.describe(arguments, context) for c in rule.when)
            what = f"{tool} ({effect})" + (f" with {conditions}" if conditions else "")
            reasons.append(f"{what} needs approval" + (f": {rule.reason}" if rule.reason else ""))
            if rule.approvers:
                named = set(rule.approvers)
                approvers = named if approvers is None else approvers & named
            distinct = distinct or rule.distinct_approvers
    if reasons:
        details: dict[str, Any] = {"distinct_approvers": distinct}
        if approvers is not None:
            details["approvers"] = sorted(approvers)
        return Decision(False, "approval", tuple(reasons), details)
    return Decision(True, "approval", (f"no approval rule applies to {tool} ({effect})",))


def approval_rules(data: Iterable[Mapping[str, Any]]) -> tuple[ApprovalRule, ...]:
    """Rules from settings (a list of dicts)."""
    return tuple(ApprovalRule.from_dict(d) for d in data)
