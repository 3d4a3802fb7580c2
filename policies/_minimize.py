"""Minimization of a tool response before the model sees it, and of the caller's arguments
on their way back to the connector: projection, then tokens out; tokens resolved in.

Reasons name paths, kinds and counts, never a raw value (personal data in a dropped key
is masked by its kind too).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies._decision import Decision
from policies._pii import Detector, PiiKind
from policies._project import DEFAULT_RULE, MinimizationPolicy, project
from policies._pseudonymize import TOKEN_RE, Pseudonymizer

POLICY = "minimization"


@dataclass(frozen=True)
class Minimized:
    """What the model may see of a response, the decision that says why, and the number
    of values pseudonymized per kind (``{"EMAIL": 1, "IBAN": 1}``)."""

    visible: Any
    decision: Decision
    counts: Mapping[str, int] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    """The data paths the projection dropped, keys that are personal data masked."""


def _per_kind(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind}×{n}" for kind, n in counts.items())


def _masked(text: str, detector: Detector) -> str:
    # A key can be personal data (a dict keyed by e-mail): name its kind, not its value.
    for span in reversed(detector.find(text)):
        text = f"{text[: span.start]}<{span.kind.value}>{text[span.end :]}"
    return text


def minimize(
    policy: MinimizationPolicy,
    tool: str,
    connector: str | None,
    response: Any,
    pseudonymizer: Pseudonymizer,
) -> Minimized:
    """Apply ``policy``'s rule for ``tool`` to ``response``: keep the allowed fields, then
    replace personal data by the task's tokens (except under the rule's ``allow_raw``)."""
    rule = policy.rule_for(tool, connector)
    if rule is DEFAULT_RULE:
        reasons = [f"no minimization rule names {tool!r}: every field dropped (deny by default)"]
    else:
        reasons = [f"rule {rule.tool!r} applies to {tool!r}"]
    dropped: list[str] = []
    if rule.fields is None:
        visible = response
        reasons.append("all fields kept: the rule has no field allow-list")
    else:
        visible, dropped = project(
            response, rule.fields, key_label=lambda key: _masked(key, pseudonymizer.detector)
        )
        if dropped:
            reasons.append(f"dropped fields: {', '.join(dropped)}")
        else:
            reasons.append("no fields dropped: the response holds only allowed fields")
    counts: dict[str, int] = {}
    if rule.pseudonymize:
        visible, counts = pseudonymizer.tokenize_counted(visible, allow_raw=rule.allow_raw)
        total = sum(counts.values())
        if total:
            noun = "value" if total == 1 else "values"
            reasons.append(f"pseudonymized {total} {noun}: {_per_kind(counts)}")
        else:
            reasons.append("no personal data found in the kept fields")
        if rule.allow_raw:
            reasons.append(f"raw by policy: {', '.join(rule.allow_raw)}")
    else:
        visible = copy.deepcopy(visible) if rule.fields is None else visible
        reasons.append("pseudonymization is off for this tool: values are shown raw")
    return Minimized(visible, Decision(True, POLICY, tuple(reasons)), counts, tuple(dropped))


def resolve_arguments(arguments: Any, pseudonymizer: Pseudonymizer) -> tuple[Any, Decision]:
    """The caller's ``arguments`` with tokens replaced by the raw values, for the connector.

    An argument naming a token this task never handed out is refused: the raw
    arguments are then ``None`` and the decision names the unknown tokens.
    """
    unknown = pseudonymizer.unknown_tokens(arguments)
    if unknown:
        return None, Decision(
            False,
            POLICY,
            (
                f"unknown tokens in the arguments: {', '.join(unknown)}; only tokens that "
                "appeared in this task's tool responses can be resolved",
            ),
        )
    counts: dict[str, int] = {}
    _count_tokens(arguments, counts)
    if not counts:
        return pseudonymizer.detokenize(arguments), Decision(
            True, POLICY, ("no tokens in the arguments",)
        )
    total = sum(counts.values())
    noun = "token" if total == 1 else "tokens"
    ordered = {kind.value: counts[kind.value] for kind in PiiKind if kind.value in counts}
    return pseudonymizer.detokenize(arguments), Decision(
        True, POLICY, (f"resolved {total} {noun}: {_per_kind(ordered)}",)
    )


def _count_tokens(obj: Any, counts: dict[str, int]) -> None:
    if isinstance(obj, str):
        for match in TOKEN_RE.finditer(obj):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    elif isinstance(obj, dict):
        for value in obj.values():
            _count_tokens(value, counts)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _count_tokens(value, counts)
