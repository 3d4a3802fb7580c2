"""The OpenAPI-derived HTTP connector, against httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    HttpConnector,
    InvalidArguments,
    ToolCall,
    UnknownTool,
    tools_from_openapi,
)

BASE = "http://erp.test"

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "Mini ERP", "version": "1"},
    "paths": {
        "/invoices": {
            "get": {
                "operationId": "list_invoices",
                "summary": "List Invoices",
                "description": "List invoices by status.",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "description": "Invoice status.",
                        "schema": {
                            "anyOf": [
                                {"type": "string", "enum": ["open", "paid"]},
                                {"type": "null"},
                            ],
                            "title": "Status",
                        },
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                ],
            }
        },
        "/invoices/{invoice_id}": {
            "parameters": [
                {
                    "name": "invoice_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "title": "Invoice Id"},
                },
            ],
            "get": {"operationId": "get_invoice", "summary": "Get one invoice."},
        },
        "/payments": {
            "post": {
                "operationId": "schedule_payment",
                "description": "Schedule a payment.",
                "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/PaymentRequest"}
                        }
                    },
                },
            }
        },
        "/search": {
            "post": {
                "operationId": "search_invoices",
                "description": "Search invoices (a POST that changes nothing).",
                "x-umiq-effect": "read",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Query"}}
                    }
                },
            }
        },
        "/health": {"get": {"summary": "no operationId, no tool"}},
    },
    "components": {
        "schemas": {
            "PaymentRequest": {
                "title": "PaymentRequest",
                "type": "object",
                "properties": {
                    "invoice_id": {"type": "string", "title": "Invoice Id"},
                    "amount": {"type": "number", "exclusiveMinimum": 0, "title": "Amount"},
                    "method": {"$ref": "#/components/schemas/Method"},
                },
                "required": ["invoice_id", "amount"],
            },
            "Method": {
                "title": "Method",
                "type": "string",
                "enum": ["sepa", "wire"],
                "description": "How to pay.",
            },
            "Query": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        }
    },
}


class Recorder:
    """A MockTransport handler that records requests and answers with a fixed response."""

    def __init__(self, response: httpx.Response | Exception | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.response = response if response is not None else httpx.Response(200, json={"ok": 1})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


def connector(handler) -> HttpConnector:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HttpConnector("erp", BASE, openapi=OPENAPI, client=client)


def spec(name):
    return {tool.name: tool for tool in tools_from_openapi(OPENAPI, "erp")}[name]


def test_one_tool_per_operation_id():
    """Every operation with an operationId becomes a tool, in document order."""
    names = [tool.name for tool in tools_from_openapi(OPENAPI)]
    assert names == ["list_invoices", "get_invoice", "schedule_payment", "search_invoices"]


def test_tools_name_their_connector():
    """Derived tools carry the connector's name."""
    assert spec("get_invoice").connector == "erp"


def test_get_is_read_and_post_is_write():
    """The HTTP method decides the effect: GET reads, POST writes."""
    assert spec("list_invoices").effect == "read"
    assert spec("schedule_payment").effect == "write"


def test_effect_extension_overrides_the_method():
    """x-umiq-effect marks a POST that changes nothing as a read."""
    assert spec("search_invoices").effect == "read"


def test_description_falls_back_to_summary():
    """An operation without a description is described by its summary."""
    assert spec("get_invoice").description == "Get one invoice."


def test_query_parameters_become_optional_properties():
    """Query params are properties; Optional is unwrapped, enum and description kept."""
    assert spec("list_invoices").parameters == {
        "type": "object",
        "properties": {
            "status": {
                "type": "string",
                "enum": ["open", "paid"],
                "description": "Invoice status.",
            },
            "limit": {"type": "integer"},
        },
        "additionalProperties": False,
    }


def test_path_item_parameters_are_required():
    """Path params declared on the path item are required properties."""
    assert spec("get_invoice").parameters["required"] == ["invoice_id"]
    assert spec("get_invoice").parameters["properties"] == {"invoice_id": {"type": "string"}}


def test_body_properties_are_merged_with_refs_resolved_and_titles_dropped():
    """The JSON body's properties join the tool's, refs inlined and titles removed."""
    assert spec("schedule_payment").parameters == {
        "type": "object",
        "properties": {
            "invoice_id": {"type": "string"},
            "amount": {"type": "number", "exclusiveMinimum": 0},
            "method": {"type": "string", "enum": ["sepa", "wire"], "description": "How to pay."},
        },
        "required": ["invoice_id", "amount"],
        "additionalProperties": False,
    }


def test_idempotency_header_is_not_an_argument():
    """The Idempotency-Key header parameter is the connector's, not the model's."""
    assert "Idempotency-Key" not in spec("schedule_payment").parameters["properties"]


def test_duplicate_argument_names_are_refused():
    """A body property that repeats a path parameter's name is a document error."""
    doc = json.loads(json.dumps(OPENAPI))
    doc["paths"]["/payments/{amount}"] = {
        "post": {
            **doc["paths"]["/payments"]["post"],
            "operationId": "clash",
            "parameters": [{"name": "amount", "in": "path", "schema": {"type": "number"}}],
        }
    }
    with pytest.raises(ValueError, match="'amount' appears twice"):
        tools_from_openapi(doc)


def test_from_url_fetches_the_openapi_document():
    """Without a document the connector fetches <base_url>/openapi.json."""
    handler = Recorder(httpx.Response(200, json=OPENAPI))
    client = httpx.Client(transport=httpx.MockTransport(handler))
    erp = HttpConnector.from_url("erp", BASE + "/", client=client)
    assert str(handler.requests[0].url) == "http://erp.test/openapi.json"
    assert len(erp.tools()) == 4


def test_fetch_of_a_non_openapi_document_is_refused():
    """A JSON answer without paths is not taken for an OpenAPI document."""
    client = httpx.Client(transport=httpx.MockTransport(Recorder(httpx.Response(200, json=[]))))
    with pytest.raises(ConnectorError, match="not an OpenAPI document"):
        HttpConnector.from_url("erp", BASE, client=client)


def test_read_sends_query_parameters():
    """A read passes its arguments as query parameters and returns the JSON body."""
    handler = Recorder(httpx.Response(200, json=[{"id": "INV-1001"}]))
    result = connector(handler).invoke(
        ToolCall("list_invoices", {"status": "open", "limit": 5}), ""
    )
    assert str(handler.requests[0].url) == "http://erp.test/invoices?status=open&limit=5"
    assert (result.ok, result.data, result.status) == (True, [{"id": "INV-1001"}], 200)


def test_path_parameters_are_url_quoted():
    """Path parameter values are quoted, so a slash cannot change the route."""
    handler = Recorder()
    connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV 1/2"}), "")
    assert handler.requests[0].url.raw_path == b"/invoices/INV%201%2F2"


def test_write_sends_json_body_and_idempotency_key():
    """A write sends its body properties as JSON with the Idempotency-Key header."""
    handler = Recorder(httpx.Response(201, json={"id": "PAY-0002"}))
    args = {"invoice_id": "INV-1001", "amount": 1250.0}
    result = connector(handler).invoke(ToolCall("schedule_payment", args), "task-7:3")
    request = handler.requests[0]
    assert request.method == "POST"
    assert json.loads(request.content) == args
    assert request.headers["Idempotency-Key"] == "task-7:3"
    assert (result.ok, result.status) == (True, 201)


def test_reads_carry_no_idempotency_key():
    """A read never sends the Idempotency-Key header."""
    handler = Recorder()
    connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV-1001"}), "task-7:1")
    assert "Idempotency-Key" not in handler.requests[0].headers


def test_write_without_idempotency_key_is_refused():
    """A write with an empty idempotency key is refused before any request."""
    handler = Recorder()
    with pytest.raises(ConnectorError, match="without an idempotency key"):
        connector(handler).invoke(
            ToolCall("schedule_payment", {"invoice_id": "x", "amount": 1}), ""
        )
    assert handler.requests == []


def test_unknown_tool_is_refused():
    """A call of a tool the document does not have raises UnknownTool."""
    with pytest.raises(UnknownTool, match="no tool 'delete_everything'"):
        connector(Recorder()).invoke(ToolCall("delete_everything"), "k")


def test_invalid_arguments_are_refused_before_any_request():
    """Arguments that break the schema raise InvalidArguments naming the field."""
    handler = Recorder()
    with pytest.raises(InvalidArguments, match="amount: expected number"):
        connector(handler).invoke(
            ToolCall("schedule_payment", {"invoice_id": "INV-1001", "amount": "lots"}), "k"
        )
    assert handler.requests == []


def test_client_error_is_a_result_the_model_can_read():
    """A 4xx comes back as ok=False with the server's detail message."""
    handler = Recorder(httpx.Response(409, json={"detail": "invoice INV-1006 is already paid"}))
    result = connector(handler).invoke(
        ToolCall("schedule_payment", {"invoice_id": "INV-1006", "amount": 1}), "k"
    )
    assert (result.ok, result.error, result.status) == (
        False,
        "invoice INV-1006 is already paid",
        409,
    )


def test_fastapi_validation_errors_are_flattened():
    """A 422 with a pydantic error list becomes 'field: message' text."""
    detail = [{"loc": ["body", "amount"], "msg": "Input should be greater than 0", "type": "x"}]
    handler = Recorder(httpx.Response(422, json={"detail": detail}))
    result = connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "")
    assert result.error == "amount: Input should be greater than 0"


def test_server_error_raises_unavailable():
    """A 5xx raises ConnectorUnavailable so the task can be retried."""
    handler = Recorder(httpx.Response(503, text="maintenance"))
    with pytest.raises(ConnectorUnavailable, match="HTTP 503: maintenance"):
        connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "")


def test_connection_refused_raises_unavailable():
    """A connection error is translated to ConnectorUnavailable, chained to the cause."""
    handler = Recorder(httpx.ConnectError("Connection refused"))
    with pytest.raises(ConnectorUnavailable) as caught:
        connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert not isinstance(caught.value, ConnectorTimeout)


def test_timeout_raises_connector_timeout():
    """A read timeout is translated to ConnectorTimeout."""
    handler = Recorder(httpx.ReadTimeout("timed out"))
    with pytest.raises(ConnectorTimeout):
        connector(handler).invoke(ToolCall("get_invoice", {"invoice_id": "INV-1"}), "")


@pytest.mark.parametrize("value", [".", "..", ""])
def test_dot_path_parameters_are_refused(value: str) -> None:
    """``.`` and ``..`` (and an empty id) never reach a URL, where they would name another
    endpoint of a service whose ids have no pattern."""
    from connectors import InvalidArguments, ToolSpec
    from connectors._http import Operation, _fill_path

    spec = ToolSpec(name="get_thing", description="", parameters={}, effect="read")
    op = Operation(spec, "GET", "/things/{thing_id}", path_params=("thing_id",))
    assert _fill_path(op, {"thing_id": "T-1"}) == "/things/T-1"
    with pytest.raises(InvalidArguments, match="thing_id"):
        _fill_path(op, {"thing_id": value})
