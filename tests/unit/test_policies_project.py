"""Projection: allow-listed paths are kept, everything else is dropped and reported."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import MinimizationPolicy, MinimizationRule, project

INVOICE = {
    "id": "INV-1001",
    "vendor": {"name": "Nordlicht", "iban": "DE89370400440532013000", "phone": "+4915123456789"},
    "lines": [
        {"sku": "A-1", "amount": 1000.0, "note": "paper"},
        {"sku": "B-2", "amount": 250.0, "note": "toner"},
    ],
    "total": 1250.0,
}


def test_nested_key_keeps_only_that_field() -> None:
    """A dotted path keeps one key of a nested dict and drops its siblings."""
    visible, dropped = project(INVOICE, ["id", "vendor.name"])
    assert visible == {"id": "INV-1001", "vendor": {"name": "Nordlicht"}}
    assert dropped == ["vendor.iban", "vendor.phone", "lines", "total"]


def test_list_path_applies_to_every_item() -> None:
    """``lines[].amount`` keeps the amount of every line and reports the rest once."""
    visible, dropped = project(INVOICE, ["lines[].amount"])
    assert visible == {"lines": [{"amount": 1000.0}, {"amount": 250.0}]}
    assert dropped == ["id", "vendor", "lines[].sku", "lines[].note", "total"]


def test_list_marker_is_optional() -> None:
    """``lines.amount`` means the same as ``lines[].amount``: lists are transparent."""
    assert project(INVOICE, ["lines.amount"]) == project(INVOICE, ["lines[].amount"])


def test_star_keeps_everything_at_its_level() -> None:
    """``*`` alone keeps the whole response."""
    visible, dropped = project(INVOICE, ["*"])
    assert visible == INVOICE
    assert dropped == []


def test_trailing_star_keeps_its_level_whole() -> None:
    """``vendor.*`` keeps ``vendor`` whole, whatever its shape."""
    assert project({"vendor": "Nordlicht", "id": 1}, ["vendor.*"]) == (
        {"vendor": "Nordlicht"},
        ["id"],
    )
    assert project("payment scheduled", ["*"]) == ("payment scheduled", [])


def test_star_then_key_keeps_that_key_of_every_child() -> None:
    """``*.name`` keeps ``name`` of every child dict and drops scalars at the top level."""
    visible, dropped = project(INVOICE, ["*.name"])
    assert visible == {"vendor": {"name": "Nordlicht"}, "lines": [{}, {}]}
    assert "id" in dropped
    assert "vendor.iban" in dropped


def test_star_merges_with_named_key() -> None:
    """A named path and a wildcard path at one level both apply to the named key."""
    visible, _ = project({"a": {"x": 1, "y": 2, "z": 3}}, ["a.x", "*.y"])
    assert visible == {"a": {"x": 1, "y": 2}}


def test_path_naming_a_dict_keeps_it_whole() -> None:
    """A path that names a dict keeps all of it."""
    visible, dropped = project(INVOICE, ["vendor"])
    assert visible == {"vendor": INVOICE["vendor"]}
    assert "vendor.iban" not in dropped


def test_path_naming_a_list_keeps_it_whole() -> None:
    """A path that names a list keeps every item whole."""
    visible, _ = project(INVOICE, ["lines"])
    assert visible == {"lines": INVOICE["lines"]}


def test_top_level_list_with_bracket_paths() -> None:
    """A response that is a list is projected item by item with ``[].id`` paths."""
    rows = [{"id": "E-1001", "iban": "NL91ABNA0417164300"}, {"id": "E-1002", "iban": "x"}]
    visible, dropped = project(rows, ["[].id"])
    assert visible == [{"id": "E-1001"}, {"id": "E-1002"}]
    assert dropped == ["[].iban"]


def test_top_level_list_with_plain_paths() -> None:
    """Plain ``id`` applied to a list response keeps the id of every item, like ``[].id``."""
    rows = [{"id": "E-1001", "iban": "NL91ABNA0417164300"}]
    assert project(rows, ["id"]) == project(rows, ["[].id"])


def test_bare_brackets_keep_a_whole_list_response() -> None:
    """The path ``[]`` names the response itself and keeps it whole."""
    rows = [{"id": "E-1001", "iban": "NL91ABNA0417164300"}]
    assert project(rows, ["[]"]) == (rows, [])


def test_missing_paths_are_fine() -> None:
    """Allowed paths that the response lacks neither fail nor appear."""
    visible, dropped = project({"id": 1}, ["id", "vendor.name", "lines[].amount"])
    assert visible == {"id": 1}
    assert dropped == []


def test_scalar_where_fields_expected_is_dropped() -> None:
    """A scalar where the allow-list expects nested fields is dropped (deny by default)."""
    visible, dropped = project({"vendor": "Nordlicht GmbH"}, ["vendor.name"])
    assert visible == {}
    assert dropped == ["vendor"]


def test_scalar_items_of_a_list_are_dropped_where_fields_expected() -> None:
    """Scalar items of a list whose items must be dicts are dropped and reported once."""
    visible, dropped = project({"tags": ["a", {"name": "b"}, "c"]}, ["tags[].name"])
    assert visible == {"tags": [{"name": "b"}]}
    assert dropped == ["tags[]"]


def test_scalar_response_is_dropped_whole() -> None:
    """A scalar response with a field allow-list projects to None and reports ``$``."""
    assert project("payment scheduled", ["id"]) == (None, ["$"])


def test_empty_allow_list_drops_everything() -> None:
    """No allowed field leaves an empty dict and reports every top-level key."""
    visible, dropped = project({"a": 1, "b": {"c": 2}}, [])
    assert visible == {}
    assert dropped == ["a", "b"]


def test_input_is_not_modified() -> None:
    """Projection returns a copy and leaves the response as it was."""
    response = copy.deepcopy(INVOICE)
    visible, _ = project(response, ["vendor", "lines[].amount"])
    visible["vendor"]["name"] = "changed"
    assert response == INVOICE


def test_single_string_fields_are_refused() -> None:
    """A bare string for fields is refused instead of being read as characters."""
    with pytest.raises(TypeError, match="sequence of paths"):
        project(INVOICE, "id")  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", " ", "a..b", "a.[]", "get_*", "a[0]", "a.b]", ".a"])
def test_malformed_paths_are_refused(path: str) -> None:
    """A malformed path raises ValueError naming it."""
    with pytest.raises(ValueError, match="field path"):
        project(INVOICE, [path])


def test_rule_matches_tool_globs() -> None:
    """A rule's tool pattern matches like an access rule's: globs and connector prefixes."""
    assert MinimizationRule("get_*").matches("get_invoice")
    assert MinimizationRule("erp:get_*").matches("get_invoice", "erp")
    assert not MinimizationRule("erp:get_*").matches("get_invoice", "hr")
    assert not MinimizationRule("erp:get_*").matches("get_invoice")


def test_policy_first_matching_rule_wins() -> None:
    """rule_for returns the first rule that matches, in the policy's order."""
    first = MinimizationRule("hr:get_employee", fields=("id",))
    second = MinimizationRule("get_*", fields=("id", "name"))
    policy = MinimizationPolicy((first, second))
    assert policy.rule_for("get_employee", "hr") is first
    assert policy.rule_for("get_employee", "erp") is second


def test_policy_default_denies_every_field() -> None:
    """A tool no rule names gets the default: deny by default, no field allowed."""
    rule = MinimizationPolicy().rule_for("send_email", "mail")
    assert rule.fields == ()
    assert rule.pseudonymize


def test_an_explicit_catch_all_keeps_every_field() -> None:
    """A last ``*`` rule with no allow-list keeps every field of the tools it catches."""
    policy = MinimizationPolicy((MinimizationRule("get_*", fields=("id",)), MinimizationRule("*")))
    assert policy.rule_for("send_email", "mail").fields is None


def test_rule_stores_sequences_as_tuples() -> None:
    """Lists given for fields and allow_raw are stored as tuples (the rule is hashable)."""
    rule = MinimizationRule("get_vendor", fields=["id", "name"], allow_raw=["name"])  # type: ignore[arg-type]
    assert rule.fields == ("id", "name")
    assert rule.allow_raw == ("name",)
    assert hash(rule)


def test_rule_refuses_allow_raw_outside_fields() -> None:
    """An allow_raw path that the allow-list does not keep is a configuration error."""
    with pytest.raises(ValueError, match=r"allow_raw path 'vendor\.iban' is not among its"):
        MinimizationRule("get_invoice", fields=("id", "vendor.name"), allow_raw=("vendor.iban",))


def test_rule_accepts_allow_raw_under_a_kept_dict_or_wildcard() -> None:
    """allow_raw paths inside a kept dict or a wildcard are accepted."""
    MinimizationRule("get_invoice", fields=("vendor",), allow_raw=("vendor.name",))
    MinimizationRule("get_invoice", fields=("*.name",), allow_raw=("vendor.name",))


def test_rule_refuses_malformed_paths() -> None:
    """A rule with a malformed field path fails at construction."""
    with pytest.raises(ValueError, match="field path"):
        MinimizationRule("get_invoice", fields=("vendor..name",))


def test_rule_records_itself() -> None:
    """as_dict gives the rule as plain data to store with decisions."""
    rule = MinimizationRule("get_*", fields=("id",), allow_raw=("id",))
    assert rule.as_dict() == {
        "tool": "get_*",
        "fields": ["id"],
        "pseudonymize": True,
        "allow_raw": ["id"],
    }


# --- properties -----------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.text("xyz", max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=20,
)
PATHS = st.lists(st.lists(KEYS | st.just("*"), min_size=1, max_size=3).map(".".join), max_size=4)


def _reach(value: Any, steps: tuple[str, ...]) -> list[Any]:
    """Reference walk: the values a path reaches (lists transparent, ``*`` any key)."""
    if not steps:
        return [value]
    if isinstance(value, list):
        return [found for item in value for found in _reach(item, steps)]
    if not isinstance(value, dict):
        return []
    head, rest = steps[0], steps[1:]
    keys = list(value) if head == "*" else [head] if head in value else []
    return [found for key in keys for found in _reach(value[key], rest)]


def _nodes(value: Any, steps: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every (key path, value) in ``value``; list items share their list's key path."""
    found = [(steps, value)]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*steps, key))
    elif isinstance(value, list):
        for item in value:
            found += _nodes(item, steps)
    return found


def _steps(path: str) -> tuple[str, ...]:
    steps = path.split(".")
    while steps and steps[-1] == "*":  # a trailing "*" names its level whole
        steps.pop()
    return tuple(steps)


def _covered(steps: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    return len(allowed) <= len(steps) and all(
        a in ("*", s) for a, s in zip(allowed, steps, strict=False)
    )


def _leads_to(steps: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    return len(steps) < len(allowed) and all(
        a in ("*", s) for a, s in zip(allowed, steps, strict=False)
    )


@settings(max_examples=200, deadline=None)
@given(JSON, PATHS)
def test_projection_keeps_nothing_outside_the_allow_list(value: Any, fields: list[str]) -> None:
    """Every scalar kept lies under an allowed path; every inner container leads to one."""
    visible, _ = project(value, fields)
    allowed = [_steps(path) for path in fields]
    for steps, item in _nodes(visible) if visible is not None else []:
        inside = any(_covered(steps, a) for a in allowed)
        if isinstance(item, dict | list):
            # the response's own shell is always kept, possibly empty
            assert not steps or inside or any(_leads_to(steps, a) for a in allowed), steps
        else:
            assert inside, steps


@settings(max_examples=200, deadline=None)
@given(JSON, PATHS)
def test_projection_keeps_every_allowed_path_present(value: Any, fields: list[str]) -> None:
    """Whatever an allowed path reaches in the input it reaches, unchanged, in the output."""
    visible, _ = project(value, fields)
    for path in fields:
        steps = _steps(path)
        assert _reach(visible, steps) == _reach(value, steps)


def test_key_label_writes_the_keys_of_dropped_paths() -> None:
    """key_label rewrites each key in the dropped paths, not in the kept value."""
    visible, dropped = project({"id": 1, "by": {"jan@x.nl": 2}}, ["id"], key_label=str.upper)
    assert visible == {"id": 1}
    assert dropped == ["BY"]
    _, dropped = project({"by": {"jan@x.nl": 2}}, ["by.id"], key_label=str.upper)
    assert dropped == ["BY.JAN@X.NL"]
