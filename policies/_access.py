"""Access: which tools a department may use, and whether it may write. Deny by default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from policies._decision import Decision


def _match(pattern: str, tool: str, connector: str | None) -> bool:
    # "erp:*" names a connector's tools; a pattern without ":" matches the tool name.
    if ":" in pattern:
        return connector is not None and fnmatchcase(f"{connector}:{tool}", pattern)
    return fnmatchcase(tool, pattern)


@dataclass(frozen=True)
class AccessRule:
    """A department's tool allow-list and its write permission.

    Patterns are tool names or globs (``get_*``), optionally qualified by connector
    (``erp:*``, ``mail:send_email``).
    """

    department: str
    tools: tuple[str, ...] = ()
    may_write: bool = False
    write_tools: tuple[str, ...] | None = field(default=None)
    """Tools the department may write with; None means all allowed tools if ``may_write``."""

    def matches(self, tool: str, connector: str | None = None) -> bool:
        return any(_match(pattern, tool, connector) for pattern in self.tools)

    def may_write_with(self, tool: str, connector: str | None = None) -> bool:
        if not self.may_write:
            return False
        if self.write_tools is None:
            return True
        return any(_match(pattern, tool, connector) for pattern in self.write_tools)


def check_access(
    rule: AccessRule | None, tool: str, effect: str, connector: str | None = None
) -> Decision:
    """May the department of ``rule`` call ``tool`` (of ``connector``) with ``effect``?"""
    if rule is None:
        return Decision(False, "access", ("no access rule for this department: deny by default",))
    if not rule.matches(tool, connector):
        return Decision(
            False, "access", (f"tool {tool!r} is not in department {rule.department!r}'s tools",)
        )
    if effect == "write" and not rule.may_write_with(tool, connector):
        return Decision(
            False, "access", (f"department {rule.department!r} may not write with {tool!r}",)
        )
    return Decision(
        True, "access", (f"tool {tool!r} ({effect}) is allowed for {rule.department!r}",)
    )


def allowed_tools(rule: AccessRule | None, tools: Iterable[tuple[str, str]]) -> list[str]:
    """The names among ``(name, effect)`` pairs that ``rule`` allows, in their order."""
    return [name for name, effect in tools if check_access(rule, name, effect).allowed]
