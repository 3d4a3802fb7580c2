"""Minimization: responses projected then pseudonymized, arguments resolved, reasons clean."""

from __future__ import annotations

import json

from policies import (
    Decision,
    Detector,
    MinimizationPolicy,
    MinimizationRule,
    Pseudonymizer,
    minimize,
    resolve_arguments,
)

DETECTOR = Detector(known_names=("Pieter Jansen", "Fleur Smit"))
POLICY = MinimizationPolicy(
    (
        MinimizationRule(
            "erp:get_invoice",
            fields=("id", "total", "vendor.name", "vendor.email", "vendor.iban", "lines[].amount"),
        ),
        MinimizationRule("hr:get_employee", fields=("id", "name"), allow_raw=("name",)),
        MinimizationRule("hr:list_departments", pseudonymize=False),
        MinimizationRule("*"),  # deny by default otherwise: keep the rest, explicitly
    )
)
INVOICE = {
    "id": "INV-1001",
    "total": 1250.0,
    "vendor": {
        "name": "Nordlicht Bürobedarf GmbH",
        "email": "billing@nordlicht-buero.de",
        "iban": "DE89370400440532013000",
        "phone": "+4915123456789",
        "contact": "Fleur Smit",
    },
    "lines": [{"amount": 1000.0, "sku": "P-1"}, {"amount": 250.0, "sku": "T-2"}],
}
RAW_VALUES = (
    "billing@nordlicht-buero.de",
    "DE89370400440532013000",
    "+4915123456789",
    "Fleur Smit",
)


def test_response_is_projected_then_pseudonymized() -> None:
    """The model sees only allowed fields, with personal data as tokens."""
    result = minimize(POLICY, "get_invoice", "erp", INVOICE, Pseudonymizer(DETECTOR))
    assert result.visible == {
        "id": "INV-1001",
        "total": 1250.0,
        "vendor": {
            "name": "Nordlicht Bürobedarf GmbH",
            "email": "<EMAIL_1>",
            "iban": "<IBAN_1>",
        },
        "lines": [{"amount": 1000.0}, {"amount": 250.0}],
    }


def test_decision_names_dropped_fields() -> None:
    """The decision lists the dropped paths, list paths once."""
    result = minimize(POLICY, "get_invoice", "erp", INVOICE, Pseudonymizer(DETECTOR))
    assert "dropped fields: vendor.phone, vendor.contact, lines[].sku" in result.decision.reasons
    assert result.dropped == ("vendor.phone", "vendor.contact", "lines[].sku")


def test_decision_counts_pseudonymized_values_per_kind() -> None:
    """The decision says how many values of each kind were pseudonymized."""
    result = minimize(POLICY, "get_invoice", "erp", INVOICE, Pseudonymizer(DETECTOR))
    assert "pseudonymized 2 values: EMAIL×1, IBAN×1" in result.decision.reasons
    assert result.counts == {"EMAIL": 1, "IBAN": 1}


def test_decision_is_an_allowed_minimization_decision() -> None:
    """Minimizing a response never refuses it: the decision allows, policy minimization."""
    decision = minimize(POLICY, "get_invoice", "erp", INVOICE, Pseudonymizer(DETECTOR)).decision
    assert isinstance(decision, Decision)
    assert decision.allowed
    assert decision.policy == "minimization"


def test_reasons_never_hold_raw_values() -> None:
    """No raw personal value appears in the reasons, dropped or kept."""
    result = minimize(POLICY, "get_invoice", "erp", INVOICE, Pseudonymizer(DETECTOR))
    reasons = json.dumps(result.decision.as_dict(), ensure_ascii=False)
    for raw in RAW_VALUES:
        assert raw not in reasons


def test_dropped_key_holding_personal_data_is_masked_in_reasons() -> None:
    """A dropped key that is itself personal data is named by its kind in the reasons."""
    response = {"id": 1, "by_email": {"jan@example.org": {"open": 2}}}
    rule = MinimizationPolicy((MinimizationRule("get_*", fields=("id", "by_email.x")),))
    result = minimize(rule, "get_stats", None, response, Pseudonymizer(DETECTOR))
    assert "dropped fields: by_email.<EMAIL>" in result.decision.reasons
    assert "jan@example.org" not in json.dumps(result.decision.as_dict())
    assert result.dropped == ("by_email.<EMAIL>",)


def test_same_value_gets_the_same_token_across_responses() -> None:
    """Two responses of one task share the task's tokens."""
    pseudonymizer = Pseudonymizer(DETECTOR)
    first = minimize(POLICY, "get_invoice", "erp", INVOICE, pseudonymizer)
    second = minimize(POLICY, "send_email", "mail", {"to": INVOICE["vendor"]["email"]},
                      pseudonymizer)  # fmt: skip
    assert second.visible == {"to": first.visible["vendor"]["email"]}


def test_tool_without_rule_keeps_all_fields_and_pseudonymizes() -> None:
    """A tool no rule names keeps every field and still gets tokens."""
    result = minimize(POLICY, "get_vendor", "erp", {"email": "a@x.nl", "n": 1},
                      Pseudonymizer(DETECTOR))  # fmt: skip
    assert result.visible == {"email": "<EMAIL_1>", "n": 1}
    assert "all fields kept: the rule has no field allow-list" in result.decision.reasons
    assert result.dropped == ()


def test_allow_raw_fields_are_shown_raw_and_reported() -> None:
    """Fields a rule allows raw reach the model unchanged, and the decision says so."""
    employee = {"id": "E-1002", "name": "Pieter Jansen", "iban": "NL91ABNA0417164300"}
    result = minimize(POLICY, "get_employee", "hr", employee, Pseudonymizer(DETECTOR))
    assert result.visible == {"id": "E-1002", "name": "Pieter Jansen"}
    assert "raw by policy: name" in result.decision.reasons
    assert "no personal data found in the kept fields" in result.decision.reasons


def test_pseudonymization_can_be_switched_off_per_tool() -> None:
    """A rule with pseudonymize=False shows values raw and says so."""
    departments = [{"id": "FIN", "head": "Pieter Jansen"}]
    result = minimize(POLICY, "list_departments", "hr", departments, Pseudonymizer(DETECTOR))
    assert result.visible == departments
    assert result.visible is not departments
    assert "pseudonymization is off for this tool: values are shown raw" in (
        result.decision.reasons
    )
    assert result.counts == {}


def test_response_with_only_allowed_fields_drops_nothing() -> None:
    """A response already inside the allow-list is reported as such."""
    result = minimize(POLICY, "get_invoice", "erp", {"id": "INV-1"}, Pseudonymizer(DETECTOR))
    assert "no fields dropped: the response holds only allowed fields" in result.decision.reasons


def test_resolve_arguments_replaces_known_tokens() -> None:
    """The caller's tokens are resolved to the raw values for the connector."""
    pseudonymizer = Pseudonymizer(DETECTOR)
    visible = minimize(POLICY, "get_invoice", "erp", INVOICE, pseudonymizer).visible
    arguments = {"iban": visible["vendor"]["iban"], "memo": f"for {visible['id']}", "amount": 1250}
    raw, decision = resolve_arguments(arguments, pseudonymizer)
    assert raw == {"iban": "DE89370400440532013000", "memo": "for INV-1001", "amount": 1250}
    assert decision.allowed
    assert decision.reasons == ("resolved 1 token: IBAN×1",)


def test_resolve_arguments_counts_every_token() -> None:
    """The decision counts resolved tokens per kind."""
    pseudonymizer = Pseudonymizer(DETECTOR)
    pseudonymizer.tokenize("a@x.nl NL91ABNA0417164300")
    _, decision = resolve_arguments({"to": ["<EMAIL_1>", "<EMAIL_1>"], "i": "<IBAN_1>"},
                                    pseudonymizer)  # fmt: skip
    assert decision.reasons == ("resolved 3 tokens: EMAIL×2, IBAN×1",)


def test_resolve_arguments_refuses_unknown_tokens() -> None:
    """An invented token is refused, the reason names it, and no raw arguments come back."""
    pseudonymizer = Pseudonymizer(DETECTOR)
    pseudonymizer.tokenize("NL91ABNA0417164300")
    raw, decision = resolve_arguments({"iban": "<IBAN_7>", "alt": "<IBAN_1>"}, pseudonymizer)
    assert raw is None
    assert not decision.allowed
    assert decision.policy == "minimization"
    assert "<IBAN_7>" in decision.reasons[0]
    assert "<IBAN_1>" not in decision.reasons[0]


def test_resolve_arguments_without_tokens_passes_them_through() -> None:
    """Arguments without tokens come back equal, with a reason saying so."""
    raw, decision = resolve_arguments({"id": "INV-1001"}, Pseudonymizer(DETECTOR))
    assert raw == {"id": "INV-1001"}
    assert decision.allowed
    assert decision.reasons == ("no tokens in the arguments",)


def test_a_tool_without_a_rule_shows_nothing() -> None:
    """Deny by default: a tool no rule names reaches the model as nothing, and says why."""
    named_only = MinimizationPolicy(POLICY.rules[:-1])
    result = minimize(named_only, "get_payroll", "hr", INVOICE, Pseudonymizer(DETECTOR))
    assert result.visible == {} and set(result.dropped) == set(INVOICE)
    assert "deny by default" in result.decision.reasons[0]
