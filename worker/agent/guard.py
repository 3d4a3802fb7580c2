"""The policies a worker applies around one task's connector calls (DESIGN §6).

A :class:`Guard` holds one task's access rule, approval policy, minimization policy and
pseudonymizer. The episode asks it, for every call, in this order:

1. may the department use the tool (access, deny by default);
2. which raw values the caller's tokens stand for (an unknown token is refused);
3. whether a human must approve the call first (approval: the department's rules, with
   the task's token map so that outbound checks see the text as sent, and the scope
   check: a write the request did not ask for waits too);
4. after the connector ran: what the model may see of the response (projection, then
   pseudonymization with this task's stable tokens).

The guard is pure: it decides and transforms; the episode records every decision in the
audit log and the token map sealed with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors import ToolResult, ToolSpec
from policies import (
    AccessRule,
    ApprovalPolicy,
    CallContext,
    Decision,
    Detector,
    MinimizationPolicy,
    MinimizationRule,
    Minimized,
    Pseudonymizer,
    ScopePolicy,
    Seen,
    approval_rules,
    check_access,
    check_approval,
    check_scope,
    key_arguments,
    minimize,
    resolve_arguments,
)
from worker.errors import ConfigError
from worker.rollout.decide import Rollout, decide

if TYPE_CHECKING:
    from worker.audit.protocol import AuditLogProtocol


@dataclass
class Guard:
    """One task's policies and its token map."""

    access: AccessRule | None
    approval: ApprovalPolicy
    minimization: MinimizationPolicy
    pseudonymizer: Pseudonymizer
    scope: ScopePolicy = field(default_factory=lambda: ScopePolicy(enabled=False))
    request: str = ""
    """The task's request as the requester wrote it (raw): what the scope check reads."""
    seen: list[Seen] = field(default_factory=list)
    """This task's calls so far (key arguments and raw response), for the scope check."""
    dry_run: bool = False
    """Writes are dry-run (shadow): what would wait for a human is recorded, not held."""
    _pending: tuple[str, dict[str, Any]] | None = field(default=None, repr=False)
    _opened: tuple[str, str] | None = field(default=None, repr=False)

    @classmethod
    def permissive_minimization(
        cls, access: AccessRule | None, detector: Detector | None = None
    ) -> Guard:
        """Access only as given; every response kept whole but pseudonymized; no approvals."""
        return cls(
            access=access,
            approval=ApprovalPolicy(),
            minimization=MinimizationPolicy((MinimizationRule("*"),)),  # explicit keep-all
            pseudonymizer=Pseudonymizer(detector or Detector()),
        )

    @classmethod
    def for_department(
        cls,
        settings: Any,
        department: str,
        *,
        mapping: Mapping[str, str] | None = None,
        rollout: Rollout | None = None,
        department_settings: Any = None,
    ) -> Guard:
        """The guard that ``settings`` define for ``department`` (``mapping`` restores the
        task's tokens after a redelivery or on resume).

        ``rollout`` is the task's rollout decision (``worker.rollout``, the one place that
        reads a department's mode): review holds every write, shadow lets writes through
        to the dry run. Without one, it is decided from the settings, as for a new task.
        ``department_settings`` are the department's live settings (default: ``settings``').
        """
        dept = department_settings or settings.departments.get(department)
        if rollout is None:
            rollout = decide(department, dept, key="")
        access = None
        if dept is not None and rollout.runs_model:
            access = AccessRule(
                department=department, tools=tuple(dept.tools), may_write=dept.may_write
            )
        try:
            approval = ApprovalPolicy(
                rules=approval_rules(dept.approvals if dept is not None else ()),
                hold_writes=rollout.hold_writes,
            )
            minimization = minimization_policy(settings.minimization, settings.pii_allow_raw)
            scope = ScopePolicy.from_settings(
                getattr(settings, "scope", {}),
                enabled=bool(getattr(dept, "scope", True)) if dept is not None else True,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"invalid policy settings for {department!r}: {exc}") from exc
        detector = detector_from(settings)
        pseudonymizer = (
            Pseudonymizer.from_mapping(detector, mapping) if mapping else Pseudonymizer(detector)
        )
        return cls(access, approval, minimization, pseudonymizer, scope, dry_run=rollout.dry_run)

    def set_request(self, query: str) -> None:
        """The task's request (raw or in this task's tokens) that writes must follow from."""
        self.request = str(self.reveal(query))

    def open_request(self, query: str) -> str:
        """Take the task's request (raw, or in this task's tokens on a resume): writes must
        follow from it (:meth:`set_request`), and its text in this task's tokens comes back,
        the one text the task row holds and the model reads. Tokenized once: the same
        request again gets the same text back."""
        if self._opened is None or self._opened[0] != query:
            tokens = self.tokenize(query)
            self.set_request(query)
            self._opened = (query, tokens)
        return self._opened[1]

    # -- decisions ------------------------------------------------------------------

    def allowed_tools(self, specs: Iterable[ToolSpec]) -> list[ToolSpec]:
        """The tools the caller is offered and constrained to."""
        return [
            s for s in specs if check_access(self.access, s.name, s.effect, s.connector).allowed
        ]

    def unasked_writes(self, specs: Iterable[ToolSpec]) -> list[str]:
        """The write tools among ``specs`` that the scope check would hold whatever their
        arguments, because the request asks for none of them (its rule's words are not in
        the request). The caller is not offered them: a write the task did not ask for is
        not a step towards its answer, and a held write ends the task awaiting a human."""
        if not self.scope.enabled:
            return []
        return [
            spec.name
            for spec in specs
            if spec.effect == "write"
            and (rule := self.scope.rule_for(spec.name, spec.connector)) is not None
            and rule.asks
            and not rule.asked(self.request)
        ]

    def check_access(self, spec: ToolSpec) -> Decision:
        return check_access(self.access, spec.name, spec.effect, spec.connector)

    def resolve(self, arguments: Mapping[str, Any]) -> tuple[dict[str, Any] | None, Decision]:
        """The raw arguments for the connector, or None and a refusal naming unknown tokens."""
        return resolve_arguments(dict(arguments), self.pseudonymizer)

    def check_approval(
        self, spec: ToolSpec, raw_arguments: Mapping[str, Any], key: str
    ) -> Decision:
        """Allowed: run now. Not allowed: a human must approve first (reasons say why):
        an approval rule holds it, or the scope check finds a write the request did not
        ask for."""
        rule = self.scope.rule_for(spec.name, spec.connector)
        keys = key_arguments(raw_arguments, rule)
        self._pending = (spec.name, keys)
        approval = check_approval(
            self.approval,
            spec.name,
            spec.effect,
            raw_arguments,
            connector=spec.connector,
            key=key,
            context=self.context(keys),
        )
        if key in self.approval.exempt or spec.effect != "write":
            return approval
        scope = check_scope(
            self.scope,
            spec.name,
            spec.effect,
            raw_arguments,
            request=self.request,
            seen=self.seen,
            connector=spec.connector,
        )
        if approval.allowed and scope.allowed:
            return Decision(True, "approval", (*approval.reasons, *scope.reasons))
        held = [d for d in (approval, scope) if not d.allowed]
        if self.dry_run:  # nothing will be sent: record what would wait, do not wait
            return Decision(
                True,
                "approval",
                tuple(f"shadow, dry run; outside shadow: {r}" for d in held for r in d.reasons),
            )
        details = dict(approval.details) or {"distinct_approvers": False}
        return Decision(False, "approval", tuple(r for d in held for r in d.reasons), details)

    def context(self, keys: Mapping[str, Any]) -> CallContext:
        """What an approval condition may know of a call: the raw values of this task's
        tokens with their kinds, and the currency of the record the call acts on."""
        known = {raw: token[1:].rsplit("_", 1)[0] for token, raw in self.mapping().items()}
        wanted = {str(v) for v in keys.values()}
        currency = None
        for call in reversed(self.seen):
            for record in _records(call.data):
                if str(record.get("id")) in wanted and isinstance(record.get("currency"), str):
                    currency = record["currency"]
                    break
            if currency is not None:
                break
        return CallContext(known=known, currency=currency)

    def approve(self, key: str) -> None:
        """Let the call with idempotency key ``key`` run (a human approved it)."""
        self.approval = ApprovalPolicy(
            self.approval.rules, self.approval.hold_writes, self.approval.exempt | {key}
        )

    def minimize(self, spec: ToolSpec, response: Any) -> Minimized:
        """What the model may see of ``response``."""
        return minimize(self.minimization, spec.name, spec.connector, response, self.pseudonymizer)

    def visible(self, spec: ToolSpec, result: ToolResult) -> tuple[ToolResult, Decision | None]:
        """What the model may see of a connector's ``result``: the error text tokenized,
        the data minimized; with the minimization decision (None when there is no data).

        The episode and the scripted expert that writes training data both show the model
        exactly this, so the role models learn on what they see at inference."""
        error = None if result.error is None else str(self.tokenize(result.error))
        pending, self._pending = self._pending, None
        if result.data is not None:
            # the records this call returned: the scope check traces writes through them
            arguments = pending[1] if pending is not None and pending[0] == spec.name else None
            self.seen.append(Seen(arguments, result.data))
        if result.data is None:
            return ToolResult(ok=result.ok, data=None, error=error), None
        minimized = self.minimize(spec, result.data)
        return ToolResult(ok=result.ok, data=minimized.visible, error=error), minimized.decision

    # -- tokens ---------------------------------------------------------------------

    def tokenize(self, value: Any) -> Any:
        """``value`` with personal data replaced by this task's tokens."""
        return self.pseudonymizer.tokenize(value)

    def reveal(self, value: Any) -> Any:
        """``value`` with this task's tokens replaced by the raw values (for auditors)."""
        return self.pseudonymizer.detokenize(value)

    def mapping(self) -> dict[str, str]:
        """Token → raw value: sealed in the audit log whenever it grows."""
        return self.pseudonymizer.mapping()


def _records(data: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(data, Mapping):
        yield data
    elif isinstance(data, list):
        for item in data:
            yield from _records(item)


def restore_tokens(audit: AuditLogProtocol, task_id: str) -> dict[str, str] | None:
    """The task's token map as last sealed in the audit log (a redelivery or a resume
    keeps its tokens), or None when none was sealed. ``audit`` needs the key ring."""
    latest = None
    for step in audit.steps(task_id):
        if step.kind == "policy" and "tokens" in step.details:
            latest = step
    if latest is None:
        return None
    opened = audit.unseal(latest)
    return dict(opened.details["tokens"])


def reveal(audit: AuditLogProtocol, task_id: str, text: str) -> str:
    """``text`` of task ``task_id`` (its answer) with the task's tokens replaced by the raw
    values: what the requester or a checker reads. Needs the audit's key ring."""
    mapping = restore_tokens(audit, task_id)
    if not mapping or not text:
        return text
    return str(Pseudonymizer.from_mapping(Detector(), mapping).detokenize(text))


def minimization_policy(
    fields: Mapping[str, list[str] | None], allow_raw: Mapping[str, list[str]]
) -> MinimizationPolicy:
    """Rules from settings: ``{tool pattern: allowed fields or None}`` plus raw paths."""
    rules = [
        MinimizationRule(
            tool=pattern,
            fields=None if allowed is None else tuple(allowed),
            allow_raw=tuple(allow_raw.get(pattern, ())),
        )
        for pattern, allowed in fields.items()
    ]
    unknown = sorted(set(allow_raw) - set(fields))
    if unknown:
        raise ValueError(
            f"pii_allow_raw names tools without a minimization rule: {unknown}; "
            "add them to minimization (None keeps all fields)"
        )
    return MinimizationPolicy(tuple(rules))


def detector_from(settings: Any) -> Detector:
    """The personal-data detector with the systems' known names (cached per name list)."""
    names = list(settings.pii_known_names)
    path = settings.pii_known_names_file
    return _detector(tuple(names), str(path) if path else None)


@lru_cache(maxsize=8)
def _detector(names: tuple[str, ...], path: str | None) -> Detector:
    known = list(names)
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read pii_known_names_file {path}: {exc}") from exc
        known.extend(line.strip() for line in text.splitlines() if line.strip())
    return Detector(known_names=known)
