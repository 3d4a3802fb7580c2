"""Access: which tools a department may use, and whether it may write. Deny by default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from policies._decision import Decision


@dataclass(frozen=True)
class AccessRule:
    """A department's tool allow-list (names or glob patterns) and its write permission."""

    department: str
    tools: tuple[str, ...] = ()
    may_write: bool = False
    write_tools: tuple[str, ...] | None = field(default=None)
    """Tools the department may write with; None means all allowed tools if ``may_write``."""

    def matches(self, tool: str) -> bool:
        return any(fnmatchcase(tool, pattern) for pattern in self.tools)

    def may_write_with(self, tool: str) -> bool:
        if not self.may_write:
            return False
        if self.write_tools is None:
            return True
        return any(fnmatchcase(tool, pattern) for pattern in self.write_tools)


def check_access(rule: AccessRule | None, tool: str, effect: str) -> Decision:
    """May the department of ``rule`` call ``tool`` with ``effect`` (``read``/``write``)?"""
    if rule is None:
        return Decision(False, "access", ("no access rule for this department: deny by default",))
    if not rule.matches(tool):
        return Decision(
            False, "access", (f"tool {tool!r} is not in department {rule.department!r}'s tools",)
        )
    if effect == "write" and not rule.may_write_with(tool):
        return Decision(
            False, "access", (f"department {rule.department!r} may not write with {tool!r}",)
        )
    return Decision(
        True, "access", (f"tool {tool!r} ({effect}) is allowed for {rule.department!r}",)
    )


def allowed_tools(rule: AccessRule | None, tools: Iterable[tuple[str, str]]) -> list[str]:
    """The names among ``(name, effect)`` pairs that ``rule`` allows, in their order."""
    return [name for name, effect in tools if check_access(rule, name, effect).allowed]
