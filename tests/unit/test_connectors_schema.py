"""The pure JSON-schema validator for tool arguments."""

from __future__ import annotations

import pytest

from connectors import InvalidArguments, Violation, validate_arguments, violations

PAYMENT = {
    "type": "object",
    "properties": {
        "invoice_id": {"type": "string", "pattern": r"^INV-\d{4}$"},
        "amount": {"type": "number", "exclusiveMinimum": 0},
        "date": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": ["open", "paid"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 5},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "note": {"type": "string", "minLength": 3, "maxLength": 10},
    },
    "required": ["invoice_id", "amount"],
}


def messages(instance, schema=PAYMENT, **kw):
    return [str(v) for v in violations(instance, schema, **kw)]


def test_valid_arguments_have_no_violations():
    """Arguments that satisfy every keyword give an empty list."""
    args = {
        "invoice_id": "INV-1001",
        "amount": 1250,
        "date": "2025-03-20",
        "status": "open",
        "count": 2,
        "urgent": False,
        "tags": ["a"],
        "note": "fine",
    }
    assert violations(args, PAYMENT) == []


def test_missing_required_field_is_named():
    """A missing required property is reported at its own path."""
    assert violations({"invoice_id": "INV-1001"}, PAYMENT) == [Violation("amount", "is required")]


def test_wrong_type_names_expected_and_actual():
    """A value of the wrong type says which type was expected and what came."""
    assert messages({"invoice_id": "INV-1001", "amount": "12"}) == [
        "amount: expected number, got string '12'"
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(3, True), (3.0, True), (3.5, False), (True, False), ("3", False)],
)
def test_integer_accepts_whole_numbers_only(value, ok):
    """Integers accept ints and integral floats, never booleans or strings."""
    schema = {"type": "integer"}
    assert (violations(value, schema) == []) is ok


def test_boolean_is_not_a_number():
    """A boolean does not pass as a number although Python's bool is an int."""
    assert messages(True, {"type": "number"}) == ["expected number, got boolean True"]


def test_enum_lists_the_allowed_values():
    """A value outside the enum is refused with the allowed values."""
    assert messages({"invoice_id": "INV-1001", "amount": 1, "status": "late"}) == [
        "status: 'late' is not one of 'open', 'paid'"
    ]


def test_objects_are_closed_by_default():
    """An unexpected property is refused when the schema does not allow extras."""
    found = messages({"invoice_id": "INV-1001", "amount": 1, "colour": "red"})
    assert found == [
        "colour: unexpected field (allowed: invoice_id, amount, date, status, "
        "count, urgent, tags, note)"
    ]


def test_open_objects_accept_extras():
    """With closed=False, properties the schema does not list are accepted."""
    assert violations({"invoice_id": "INV-1001", "amount": 1, "x": 1}, PAYMENT, closed=False) == []


def test_explicit_additional_properties_schema_is_checked():
    """An additionalProperties schema validates the extra values."""
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert messages({"a": 1, "b": "x"}, schema) == ["b: expected integer, got string 'x'"]


def test_pattern_is_enforced():
    """A string that does not match the pattern is refused."""
    assert messages({"invoice_id": "1001", "amount": 1}) == [
        r"invoice_id: '1001' does not match the pattern ^INV-\d{4}$"
    ]


def test_exclusive_minimum_is_enforced():
    """A number equal to the exclusive minimum is refused."""
    assert messages({"invoice_id": "INV-1001", "amount": 0}) == [
        "amount: must be greater than 0, got 0"
    ]


def test_numeric_bounds_are_enforced():
    """Minimum and maximum are inclusive bounds."""
    assert messages(6, PAYMENT["properties"]["count"]) == ["must be at most 5, got 6"]
    assert messages(0, PAYMENT["properties"]["count"]) == ["must be at least 1, got 0"]


def test_string_length_is_enforced():
    """minLength and maxLength bound a string's length."""
    assert messages("ab", PAYMENT["properties"]["note"]) == ["must be at least 3 characters long"]


def test_date_format_is_checked():
    """A string with format date must be an ISO date."""
    assert messages("20.03.2025", {"type": "string", "format": "date"}) == [
        "'20.03.2025' is not a date in the form YYYY-MM-DD"
    ]


def test_array_items_are_checked_with_their_index():
    """Each array item is validated and reported with its index."""
    assert messages(["a", 2], PAYMENT["properties"]["tags"]) == [
        "[1]: expected string, got integer 2"
    ]


def test_nested_paths_are_dotted():
    """Violations deep in objects and arrays carry a dotted path."""
    schema = {
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
            }
        },
    }
    assert messages({"lines": [{"sku": 1}]}, schema) == [
        "lines[0].sku: expected string, got integer 1"
    ]


def test_type_list_allows_any_listed_type():
    """A list of types accepts a value of any of them."""
    assert violations(None, {"type": ["string", "null"]}) == []


def test_any_of_needs_one_match():
    """anyOf passes when a branch matches and fails when none does."""
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert violations(3, schema) == []
    assert messages(1.5, schema) == ["1.5 does not match any of the allowed forms"]


def test_unknown_type_in_schema_is_a_schema_error():
    """A schema naming a type JSON schema does not have raises ValueError."""
    with pytest.raises(ValueError, match="unknown type"):
        violations(1, {"type": "float"})


def test_validate_arguments_raises_naming_the_fields():
    """validate_arguments raises InvalidArguments listing every offending field."""
    with pytest.raises(
        InvalidArguments, match=r"^invoice_id: is required; amount: expected number"
    ):
        validate_arguments(PAYMENT, {"amount": "x"})


def test_validate_arguments_accepts_valid_arguments():
    """validate_arguments returns None for arguments that fit."""
    assert validate_arguments(PAYMENT, {"invoice_id": "INV-1001", "amount": 1}) is None


def test_dollar_means_the_end_of_the_input() -> None:
    """A trailing newline does not pass a ``$``-anchored pattern (ECMA-262's meaning)."""
    from connectors._schema import is_valid

    schema = {"type": "string", "pattern": r"^[^\r\n]*$"}
    assert is_valid("one line", schema)
    assert not is_valid("one line\n", schema)
    assert is_valid("costs $5", {"type": "string", "pattern": r"^[$\d]+ ?\$?\d*$|costs"})
    assert is_valid("a]$", {"type": "string", "pattern": r"^[]$a]+$"})
