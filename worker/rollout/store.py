"""The live copy of the departments' rollout settings: the audit log's ``rollout_change``.

A department's settings are its newest change's ``after``; a department never changed
has the defaults of ``Settings.departments`` (version 0). Every change is a link of the
hash chain with who, when, why, before and after, so ``umiq audit verify`` covers it.
Workers read the live copy per task (and the kill switches before every write): a change
takes effect on the next task, no restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.audit.protocol import AuditLogProtocol
from worker.rollout.config import (
    GLOBAL,
    RolloutFile,
    RolloutFileError,
    as_data,
    check_name,
    validate_department,
)
from worker.settings import DepartmentSettings


@dataclass(frozen=True)
class Live:
    """A department's settings as the workers see them now."""

    department: str
    settings: DepartmentSettings | None
    version: int
    changed_by: str | None = None
    changed_at: datetime | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "department": self.department,
            "version": self.version,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "reason": self.reason,
            "settings": as_data(self.settings, self.department),
        }


class RolloutStore:
    """Reads and changes the live rollout settings over an audit log."""

    def __init__(self, audit: AuditLogProtocol, defaults: Mapping[str, DepartmentSettings]) -> None:
        self.audit = audit
        self.defaults = dict(defaults)

    def live(self, department: str) -> Live:
        """``department``'s live settings (None when neither changed nor configured)."""
        return self.live_many([department])[department]

    def live_many(self, departments: list[str]) -> dict[str, Live]:
        latest = self.audit.rollout_latest(departments)
        out = {}
        for name in departments:
            row = latest.get(name)
            if row is None:
                default = self.defaults.get(name)
                if name == GLOBAL:
                    default = DepartmentSettings()
                out[name] = Live(name, default, 0)
            else:
                out[name] = Live(
                    name,
                    DepartmentSettings.model_validate(row.after),
                    row.version,
                    row.changed_by,
                    row.created_at,
                    row.reason,
                )
        return out

    def all(self) -> dict[str, Live]:
        """Every department configured or ever changed, and the global settings."""
        changed = {r.department for r in self.audit.rollout_changes(latest_only=True)}
        names = sorted({*self.defaults, *changed} - {GLOBAL})
        return self.live_many([GLOBAL, *names])

    def kill_switch(self, department: str) -> str | None:
        """Why writes of ``department`` must stop now, or None. Raises when it cannot tell
        (the caller fails closed)."""
        live = self.live_many([GLOBAL, department])
        glob, dept = live[GLOBAL], live[department]
        if glob.settings is not None and glob.settings.kill_switch:
            return _why("the global kill switch is on", glob)
        if dept.settings is not None and dept.settings.kill_switch:
            return _why(f"the kill switch of {department!r} is on", dept)
        return None

    def set(
        self,
        department: str,
        changes: Mapping[str, Any],
        *,
        by: str,
        reason: str,
        replace: bool = False,
    ) -> Live | None:
        """Apply ``changes`` (or, with ``replace``, make them the whole settings) to
        ``department``; one audited change. None when nothing would change."""
        check_name(department)
        if not by.strip():
            raise RolloutFileError("a rollout change needs the name of who makes it (--by)")
        current = self.live(department)
        before = as_data(current.settings, department) if current.settings is not None else None
        base = {} if replace else dict(before or {})
        after_settings = validate_department(department, {**base, **changes})
        after = as_data(after_settings, department)
        if before == after:
            return None
        row = self.audit.append_rollout_change(
            department=department,
            version=current.version + 1,
            changed_by=by.strip(),
            reason=reason,
            before=before,
            after=after,
        )
        return Live(department, after_settings, row.version, row.changed_by, row.created_at, reason)

    def apply(self, parsed: RolloutFile, *, by: str, reason: str) -> list[Live]:
        """Make a validated file the live copy: one change per department that differs."""
        done = []
        glob = self.set(GLOBAL, parsed.global_.model_dump(), by=by, reason=reason, replace=True)
        if glob is not None:
            done.append(glob)
        for name, dept in sorted(parsed.departments.items()):
            data = dept.model_dump(mode="json")
            changed = self.set(name, data, by=by, reason=reason, replace=True)
            if changed is not None:
                done.append(changed)
        return done

    def history(self, department: str | None = None) -> list[Any]:
        """The changes, oldest first."""
        return list(self.audit.rollout_changes(department))


def _why(what: str, live: Live) -> str:
    if live.changed_by:
        when = live.changed_at.isoformat(timespec="seconds") if live.changed_at else "?"
        note = f": {live.reason}" if live.reason else ""
        return f"{what} (set by {live.changed_by} at {when}{note})"
    return f"{what} (in the settings)"


def store_for(audit: AuditLogProtocol, settings: Any) -> RolloutStore:
    """The store over ``audit`` with ``settings.departments`` as the defaults."""
    return RolloutStore(audit, settings.departments)
