"""Grounded arguments: the caller's grammar admits only ids the task has seen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors import ToolCall, ToolResult, ToolSpec
from connectors._schema import is_valid, validate_arguments
from connectors.testing import FunctionConnector
from policies import AccessRule
from tests.support.scripted import RoleScripts as Scripted
from worker.agent.episode import Episode
from worker.agent.grounding import (
    QUOTED,
    dates_in,
    evidence,
    ground,
    grounded_parameters,
    grounded_values,
    id_form,
    id_forms,
    ids_in,
    quotes_in,
)
from worker.audit import AuditLog, ensure_schema
from worker.envelope import Envelope
from worker.toolbox import Toolbox

INVOICE = {"type": "string", "pattern": r"^INV-\d{4}$"}
GET_INVOICE = ToolSpec(
    "get_invoice",
    "Get one invoice.",
    {"type": "object", "properties": {"invoice_id": INVOICE}, "required": ["invoice_id"]},
)
LIST_PAYMENTS = ToolSpec(
    "list_payments",
    "Payments, filtered.",
    {
        "type": "object",
        "properties": {"invoice_id": {"type": "string"}, "status": {"type": "string"}},
    },
)
PAY = ToolSpec(
    "schedule_payment",
    "Pay an invoice.",
    {
        "type": "object",
        "properties": {"invoice_id": INVOICE, "date": {"type": "string", "format": "date"}},
        "required": ["invoice_id", "date"],
    },
    effect="write",
)
GET_ORDER = ToolSpec(
    "get_purchase_order",
    "Get one purchase order.",
    {
        "type": "object",
        "properties": {"po_id": {"type": "string", "pattern": r"^PO-\d{4}$"}},
        "required": ["po_id"],
    },
)


def turns(request: str, *observations: tuple[bool, Any]) -> list[dict[str, str]]:
    out = [{"from": "user", "value": request}]
    for ok, body in observations:
        out.append({"from": "assistant", "value": "Fetch it. INV-9999\n Next: caller."})
        out.append({"from": "caller", "value": 'Action: x\nAction Input: {"a": "INV-8888"}'})
        observed = {"error": "", "response": body} if ok else {"error": body, "response": None}
        out.append({"from": "observation", "value": json.dumps(observed)})
    return out


def test_id_forms_are_read_from_patterns_and_other_patterns_are_not() -> None:
    assert id_form(r"^INV-\d{4}$") is not None
    assert id_form(r"^E-[0-9]{4}$") is not None
    assert id_form(r"^PAY_\d{6}$") is not None
    for other in (r"^\d{4}-\d{2}-\d{2}$", r"^[a-z]+$", r"INV-\d{4}", r"^INV-\d+$", ""):
        assert id_form(other) is None, other


@pytest.mark.parametrize(
    "text",
    ["INV-1008", "inv-1008", "Inv 1008", "INV1008", "inv_1008", "(INV-1008)", "INV/1008."],
)
def test_an_id_is_found_in_every_common_spelling_and_admitted_in_the_schemas(text: str) -> None:
    assert ids_in(r"^INV-\d{4}$", [f"please check {text} today"]) == ["INV-1008"]


@pytest.mark.parametrize("text", ["INV-10080", "XINV-1008", "INV-108", "invoice 1008", "PINV1008"])
def test_near_misses_are_not_ids(text: str) -> None:
    assert ids_in(r"^INV-\d{4}$", [text]) == []


def test_ids_come_first_seen_first_once_each() -> None:
    texts = ["INV-1002 and inv-1001", "INV-1002 again, then INV-1003"]
    assert ids_in(r"^INV-\d{4}$", texts) == ["INV-1002", "INV-1001", "INV-1003"]


@pytest.mark.parametrize(
    "text",
    ["2025-03-14", "March 14, 2025", "march 14 2025", "14 March 2025", "Mar 14th, 2025"],
)
def test_a_date_is_found_in_every_usual_spelling_and_admitted_as_iso(text: str) -> None:
    assert dates_in([f"Pay INV-1001 on {text}."]) == ["2025-03-14"]


def test_impossible_dates_and_partial_dates_are_none() -> None:
    assert dates_in(["2025-02-30", "March 32, 2025", "on March 14", "12025-03-14"]) == []


def test_a_date_argument_admits_the_dates_the_request_states_only() -> None:
    history = turns("Pay INV-1001 on April 2, 2025.", (True, {"due_date": "2025-03-04"}))
    params = ground([PAY], history)[0].parameters["properties"]
    assert params["date"]["enum"] == ["2025-04-02"]  # not the record's due date
    assert params["invoice_id"]["enum"] == ["INV-1001"]
    # A request that states no date leaves the date as the schema has it.
    history = turns("Pay INV-1001.", (True, {"due_date": "2025-03-04"}))
    assert "enum" not in ground([PAY], history)[0].parameters["properties"]["date"]


def test_evidence_is_the_request_and_successful_responses_only() -> None:
    """The model's own words (thoughts, calls) and failed calls ground nothing."""
    history = turns(
        "Is INV-1001 paid?",
        (True, {"id": "INV-1001", "po_id": "PO-4501"}),
        (False, "INV-7777 not found"),
    )
    found = ids_in(r"^INV-\d{4}$", evidence(history))
    assert found == ["INV-1001"]
    assert ids_in(r"^PO-\d{4}$", evidence(history)) == ["PO-4501"]


def test_an_id_argument_is_narrowed_to_the_ids_seen_and_the_rest_is_unchanged() -> None:
    params = grounded_parameters(GET_INVOICE.parameters, ["pay inv-1008 and INV-1009"])
    assert params["properties"]["invoice_id"]["enum"] == ["INV-1008", "INV-1009"]
    assert params["properties"]["invoice_id"]["pattern"] == INVOICE["pattern"]
    assert params["required"] == ["invoice_id"]
    # No id of its form seen: the schema stays as it was (the pattern still holds).
    assert grounded_parameters(GET_INVOICE.parameters, ["what is open?"]) == dict(
        GET_INVOICE.parameters
    )
    assert GET_INVOICE.parameters["properties"]["invoice_id"] == INVOICE  # not mutated


def test_a_filter_without_a_pattern_takes_the_id_form_another_tool_gives_its_name() -> None:
    grounded = ground([LIST_PAYMENTS], turns("Was INV-1006 paid?"), catalogue=[GET_INVOICE])
    props = grounded[0].parameters["properties"]
    assert props["invoice_id"]["enum"] == ["INV-1006"]
    assert "enum" not in props["status"]
    # Without a tool that says what an invoice_id looks like, nothing is narrowed.
    assert ground([LIST_PAYMENTS], turns("Was INV-1006 paid?"))[0] == LIST_PAYMENTS


def test_an_optional_id_filter_with_no_id_seen_is_withheld_not_invented() -> None:
    """A manager's name, no employee id yet: list_leave_requests may list them all, but a
    made-up employee_id ("E-1234", seen live) cannot be written; the audit says so."""
    grounded = ground([LIST_PAYMENTS], turns("Which payments went out?"), [GET_INVOICE])
    props = grounded[0].parameters["properties"]
    assert "invoice_id" not in props and "status" in props
    # the grammar closes objects: the withheld filter cannot be written at all
    assert not is_valid({"invoice_id": "INV-1234"}, grounded[0].parameters)
    assert is_valid({"status": "executed"}, grounded[0].parameters)
    assert grounded_values(grounded, [LIST_PAYMENTS]) == {"list_payments": {"invoice_id": []}}
    # once an id of its form came up, it is admitted as any other
    seen = ground([LIST_PAYMENTS], turns("Was INV-1006 paid?"), [GET_INVOICE])
    assert seen[0].parameters["properties"]["invoice_id"]["enum"] == ["INV-1006"]


def test_a_name_with_two_id_forms_has_none() -> None:
    other = ToolSpec(
        "get_other",
        "x",
        {"type": "object", "properties": {"invoice_id": {**INVOICE, "pattern": r"^I-\d{2}$"}}},
    )
    assert "invoice_id" not in id_forms([GET_INVOICE, other])


def test_a_tool_whose_required_id_was_never_seen_is_not_offered() -> None:
    """Before any purchase order id came up, get_purchase_order cannot be called right."""
    tools = [GET_INVOICE, GET_ORDER, LIST_PAYMENTS]
    assert [t.name for t in ground(tools, turns("Is INV-1001 paid?"))] == [
        "get_invoice",
        "list_payments",
    ]
    after = ground(tools, turns("Is INV-1001 paid?", (True, {"po_id": "PO-4501"})))
    assert [t.name for t in after] == ["get_invoice", "get_purchase_order", "list_payments"]
    # No tool could be called right: all stay rather than none (the patterns still hold).
    assert [t.name for t in ground([GET_INVOICE, GET_ORDER], turns("hello"))] == [
        "get_invoice",
        "get_purchase_order",
    ]


def test_grounded_values_name_what_was_narrowed() -> None:
    tools = [GET_INVOICE, GET_ORDER]
    grounded = ground(tools, turns("INV-1001?", (True, {"po_id": "PO-4501"})))
    assert grounded_values(grounded, tools) == {
        "get_invoice": {"invoice_id": ["INV-1001"]},
        "get_purchase_order": {"po_id": ["PO-4501"]},
    }
    assert grounded_values(ground(tools, turns("hello")), tools) == {}


# -- the episode ------------------------------------------------------------------------


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url)


def _episode(audit: AuditLog, model: Scripted, **options: Any) -> Any:
    """An episode of "Is inv 1008 open?" (task ``t-g``) on get_invoice and list_payments;
    ``options`` go to ``Episode`` (``ground_arguments``, ``follow_named_tool``)."""

    def handler(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=True, data={"id": call.arguments.get("invoice_id"), "status": "open"})

    env = Envelope(task_id="t-g", department="finance", query="Is inv 1008 open?", requested_by="a")
    return Episode(
        env,
        model=model,
        toolbox=Toolbox([FunctionConnector("erp", [GET_INVOICE, LIST_PAYMENTS], handler)]),
        access=AccessRule("finance", tools=("*",), may_write=True),
        audit=audit,
        max_steps=5,
        **options,
    )


def _script() -> Scripted:
    return Scripted(
        planner=["Fetch it.\n Next: caller.", "Open.\n Next: conclusion."],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'],
        summarizer=["INV-1008 is open."],
    )


def test_the_callers_grammar_admits_only_the_requests_id_and_the_audit_says_so(audit):
    model = _script()
    assert _episode(audit, model).run().outcome == "answered"
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    schemas = {t.name: t.parameters["properties"] for t in caller.constraint.tools}
    assert schemas["get_invoice"]["invoice_id"]["enum"] == ["INV-1008"]
    assert schemas["list_payments"]["invoice_id"]["enum"] == ["INV-1008"]
    step = next(s for s in audit.steps("t-g") if s.kind == "caller")
    assert step.details["grounded"]["get_invoice"] == {"invoice_id": ["INV-1008"]}
    assert "not_offered" not in step.details  # both tools could be called right
    assert audit.verify().ok


def test_a_plan_naming_the_call_it_just_made_is_refused_before_a_caller_runs(audit):
    """ "I'll use get_invoice." right after get_invoice(INV-1008) answered: the only call
    the tool admits is a repeat, so the guard refuses it without asking the caller (which,
    offered the other tools, wrote a stray call live), and the planner is asked again with
    the refusal; the audit names the planned repeat."""
    model = Scripted(
        planner=[
            "Fetch it. I'll use get_invoice.\n Next: caller.",
            "INV-1008 came back. I'll check its status. I'll use get_invoice.\n Next: caller.",
            "It is open.\n Next: conclusion.",
        ],
        caller=['Action: get_invoice\nAction Input: {"invoice_id": "INV-1008"}'],
        summarizer=["INV-1008 is open."],
    )
    result = _episode(audit, model).run()
    assert result.outcome == "answered" and result.answer == "INV-1008 is open."
    assert [r.role for r in model.requests].count("caller") == 1
    planner_prompts = [r.prompt for r in model.requests if r.role == "planner"]
    assert "not run: this exact call was already made" in planner_prompts[2]
    steps = audit.steps("t-g")
    planned = [s for s in steps if s.kind == "caller" and s.details.get("planned_repeat")]
    assert len(planned) == 1 and planned[0].role is None
    assert planned[0].details["arguments"] == {"invoice_id": "INV-1008"}
    assert [s.details.get("policy") for s in steps if s.kind == "policy"].count("repeat") == 1
    assert audit.verify().ok


def test_grounding_off_leaves_the_schema_as_it_is(audit):
    model = _script()
    _episode(audit, model, ground_arguments=False).run()
    caller = next(r for r in model.requests if r.role == "caller")
    assert caller.constraint is not None
    assert "enum" not in caller.constraint.tools[0].parameters["properties"]["invoice_id"]
    step = next(s for s in audit.steps("t-g") if s.kind == "caller")
    assert "grounded" not in step.details and "not_offered" not in step.details


def test_audit_details_name_the_ids_admitted_and_the_tools_not_offered() -> None:
    from worker.agent.grounding import audit_details

    tools = [GET_INVOICE, GET_ORDER]
    assert audit_details(ground(tools, turns("Is INV-1001 paid?")), tools) == {
        "grounded": {"get_invoice": {"invoice_id": ["INV-1001"]}},
        "not_offered": ["get_purchase_order"],
    }
    assert audit_details(tools, tools) == {}


# -- every correct Acme call is still admitted ------------------------------------------


def test_every_expert_call_of_every_acme_family_is_admitted_by_its_grounded_schema(tmp_path):
    """Grounding must never exclude a correct call: each id argument of every expert
    call (every family the in-process world runs, train and test instances) is among
    the ids grounding admits at that step, and grounding narrows most id arguments. The
    repeat guard refuses none of them either."""
    from examples.acme.tasks import Facts, generate, solve
    from examples.acme.tasks.catalogue import FAMILIES
    from examples.acme.tasks.world import in_process_world
    from worker.agent import repeat

    narrowed = checked = dropped = 0
    with in_process_world(tmp_path, seed=3) as world:
        families = [f for f in FAMILIES if set(FAMILIES[f].systems) <= set(world.systems)]
        assert len(families) >= 20
        split = generate(Facts.gather(world), seed=3, per_family=2, families=families)
        catalogue = world.specs()
        writes = {spec.name for spec in catalogue if spec.effect == "write"}
        for instance in split["train"] + split["test"]:
            world.reset()
            history = solve(world, instance).trajectory["conversations"]
            for i, turn in enumerate(history):
                if turn["from"] != "caller":
                    continue
                call = json.loads(turn["value"].split("Action Input:", 1)[1])
                tool = turn["value"].split("\n", 1)[0].removeprefix("Action: ").strip()
                offered = {t.name: t for t in ground(catalogue, history[:i])}
                assert tool in offered, (instance.uid, tool, sorted(offered))
                # nor does the repeat guard: no expert call repeats one whose answer stands
                assert repeat.repeated_call(history[:i], turn["value"], writes) is None
                assert tool in {
                    t.name
                    for t in repeat.without_repeat(list(offered.values()), history[:i], writes)
                }
                validate_arguments(offered[tool].parameters, call)  # raises InvalidArguments
                checked += 1
                dropped += len(catalogue) - len(offered)
                narrowed += bool(grounded_values([offered[tool]], [world.spec(tool)]))
    assert checked >= 60
    assert narrowed >= checked // 2, (narrowed, checked)
    assert dropped >= checked, (dropped, checked)  # tools with no id seen were not offered


# -- quoted search texts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_text", "quote"),
    [
        ("What's the vendor id of Umbrella Supplies?", "Umbrella"),
        ("What's the vendor id of Umbrella Supplies?", "Umbrella Supplies"),
        ("Does Ines Carvalho have any leave requests open?", "Ines Carvalho"),
        ("Tell me Jan-Willem de Boer's remaining vacation days.", "Jan-Willem de Boer"),
        ("total the open invoices from <NAME_1>, please", "<NAME_1>"),
        ("who is o'brien's manager", "o'brien"),
    ],
)
def test_a_quote_is_a_pseudonym_or_a_run_of_request_words(request_text: str, quote: str) -> None:
    assert quote in quotes_in([request_text])


def test_quotes_leave_out_fillers_punctuation_and_long_runs() -> None:
    quotes = quotes_in(["Please check, for me: the vendor Van Dijk Holding Group BV Europe."])
    assert "Van Dijk" in quotes and "Van Dijk Holding Group" in quotes
    assert "Van Dijk Holding Group BV" not in quotes  # five words
    assert not [q for q in quotes if q.split()[0].lower() in ("please", "for", "the")]
    assert not [q for q in quotes if "," in q or ":" in q or q.endswith(".")]
    assert "NAME_1" not in quotes_in(["from <NAME_1>"])  # a token is whole or nothing


def test_a_quoted_argument_admits_the_requests_quotes_and_response_tokens_only() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 2, QUOTED: True},
            "note": {"type": "string"},
        },
    }
    history = turns("find Ines Carvalho or <NAME_1>", (True, {"manager": "<NAME_2>"}))
    narrowed = grounded_parameters(schema, evidence(history), request=[history[0]["value"]])[
        "properties"
    ]
    assert {"Ines Carvalho", "<NAME_1>", "<NAME_2>"} <= set(narrowed["name"]["enum"])
    assert "Eva Dijkstra" not in narrowed["name"]["enum"]
    assert all(len(q) >= 2 for q in narrowed["name"]["enum"])
    assert "enum" not in narrowed["note"]  # not flagged: left as it is
    # a failed call's response grounds nothing
    failed = turns("find <NAME_1>", (False, {"error": "<NAME_3> unknown"}))
    admitted = grounded_parameters(schema, evidence(failed), request=[failed[0]["value"]])
    assert "<NAME_3>" not in admitted["properties"]["name"]["enum"]
