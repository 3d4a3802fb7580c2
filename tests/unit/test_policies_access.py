"""Access policy: deny by default, allow-lists with globs, writes only when permitted."""

from __future__ import annotations

from policies import AccessRule, allowed_tools, check_access

RULE = AccessRule(
    "finance",
    tools=("get_*", "schedule_payment"),
    may_write=True,
    write_tools=("schedule_payment",),
)


def test_no_rule_denies() -> None:
    """A department without a rule may call nothing."""
    decision = check_access(None, "get_invoice", "read")
    assert not decision.allowed
    assert "deny by default" in decision.reasons[0]


def test_listed_read_is_allowed() -> None:
    """A tool matching the allow-list may be read."""
    assert check_access(RULE, "get_invoice", "read").allowed


def test_unlisted_tool_is_denied_with_reason() -> None:
    """A tool outside the allow-list is denied and the reason names it."""
    decision = check_access(RULE, "delete_vendor", "write")
    assert not decision.allowed
    assert "delete_vendor" in decision.reasons[0]


def test_write_needs_write_permission() -> None:
    """A write with a tool the department may read but not write with is denied."""
    read_only = AccessRule("hr", tools=("*",), may_write=False)
    assert not check_access(read_only, "schedule_payment", "write").allowed
    assert check_access(RULE, "schedule_payment", "write").allowed
    assert not check_access(RULE, "get_invoice", "write").allowed


def test_allowed_tools_filters_in_order() -> None:
    """allowed_tools keeps the allowed names in their given order."""
    tools = [("schedule_payment", "write"), ("drop_db", "write"), ("get_vendor", "read")]
    assert allowed_tools(RULE, tools) == ["schedule_payment", "get_vendor"]


def test_connector_qualified_patterns() -> None:
    """A pattern like erp:* matches the tools of that connector only."""
    rule = AccessRule("finance", tools=("erp:*",))
    assert check_access(rule, "get_invoice", "read", connector="erp").allowed
    assert not check_access(rule, "get_employee", "read", connector="hr").allowed
    assert not check_access(rule, "get_invoice", "read").allowed
