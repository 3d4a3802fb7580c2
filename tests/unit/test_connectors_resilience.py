"""Retries and the circuit breaker over a function connector and a fake clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import httpx
import pytest

from connectors import (
    CircuitBreaker,
    CircuitOpen,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    HttpConnector,
    InvalidArguments,
    Resilient,
    ToolCall,
    ToolResult,
    ToolSpec,
    UnknownTool,
    is_retryable,
)
from connectors.testing import FunctionConnector

READ = ToolSpec("get_invoice", "Get an invoice.")
CALL = ToolCall("get_invoice", {})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def flaky(outcomes: list[BaseException | ToolResult]) -> FunctionConnector:
    """A connector that raises or returns each of ``outcomes`` in turn."""

    def handler(call: ToolCall, key: str) -> ToolResult:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return FunctionConnector("erp", [READ], handler)


def resilient(
    inner: FunctionConnector, *, attempts: int = 3, failures: int = 5, clock: Clock | None = None
) -> tuple[Resilient, list[float]]:
    slept: list[float] = []
    breaker = CircuitBreaker("erp", failures=failures, reset_after=30.0, clock=clock or Clock())
    return Resilient(inner, attempts=attempts, breaker=breaker, sleep=slept.append), slept


DOWN = ConnectorUnavailable("erp: cannot reach http://127.0.0.1:1 for get_invoice")
OK = ToolResult(ok=True, data={"id": "INV-1"})


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ConnectorUnavailable("down"), True),
        (ConnectorTimeout("slow"), True),
        (CircuitOpen("erp", 5, 30, "down"), False),
        (InvalidArguments("bad"), False),
        (UnknownTool("none"), False),
        (ConnectorError("refused write"), False),
    ],
)
def test_errors_are_classified_retryable_or_permanent(
    error: ConnectorError, retryable: bool
) -> None:
    """Unreachable, slow and 5xx systems are retryable; refusals of the call are not."""
    assert is_retryable(error) is retryable


def test_a_retryable_failure_is_tried_again_with_the_same_key_and_backoff() -> None:
    """Two outages then an answer: three tries under one key, waiting between them."""
    inner = flaky([DOWN, ConnectorTimeout("erp: no answer"), OK])
    connector, slept = resilient(inner)
    assert connector.invoke(CALL, "t:2") == OK
    assert [key for _, key in inner.calls] == ["t:2", "t:2", "t:2"]
    assert len(slept) == 2 and all(0 < s <= 4.0 for s in slept)


def test_a_permanent_error_is_not_retried() -> None:
    """Invalid arguments raise at once, after one try."""
    inner = flaky([InvalidArguments("get_invoice: invoice_id is required"), OK])
    connector, slept = resilient(inner)
    with pytest.raises(InvalidArguments):
        connector.invoke(CALL, "t:2")
    assert len(inner.calls) == 1 and slept == []


def test_a_refusal_the_model_reads_is_returned_after_one_try() -> None:
    """A 4xx comes back as a failed ToolResult, not retried."""
    refused = ToolResult(ok=False, error="invoice INV-9 not found", status=404)
    inner = flaky([refused, OK])
    connector, _ = resilient(inner)
    assert connector.invoke(CALL, "t:2") == refused
    assert len(inner.calls) == 1


def test_the_last_outage_is_raised_when_every_try_failed() -> None:
    """Out of tries, the last ConnectorUnavailable reaches the caller."""
    connector, _ = resilient(flaky([DOWN, DOWN, DOWN]))
    with pytest.raises(ConnectorUnavailable, match="cannot reach"):
        connector.invoke(CALL, "t:2")


def test_the_circuit_opens_after_consecutive_failures_and_fails_fast() -> None:
    """After three failed calls the fourth raises CircuitOpen naming the system, with no try."""
    inner = flaky([DOWN, DOWN, DOWN, OK])
    connector, _ = resilient(inner, attempts=1, failures=3)
    for _ in range(3):
        with pytest.raises(ConnectorUnavailable):
            connector.invoke(CALL, "t:2")
    with pytest.raises(CircuitOpen, match=r"erp: circuit open after 3 consecutive failures"):
        connector.invoke(CALL, "t:2")
    assert len(inner.calls) == 3
    assert connector.breaker.state == "open"


def test_a_success_resets_the_count_of_failures() -> None:
    """Failures must be consecutive: one answer in between starts the count again."""
    inner = flaky([DOWN, DOWN, OK, DOWN, DOWN, OK])
    connector, _ = resilient(inner, attempts=1, failures=3)
    for expected in (ConnectorUnavailable, ConnectorUnavailable, None) * 2:
        if expected is None:
            assert connector.invoke(CALL, "k").ok
        else:
            with pytest.raises(expected):
                connector.invoke(CALL, "k")
    assert connector.breaker.state == "closed"


@pytest.mark.parametrize(
    ("probe", "state"), [(OK, "closed"), (DOWN, "open")], ids=["recovered", "still down"]
)
def test_after_the_reset_time_one_call_probes_the_system(
    probe: BaseException | ToolResult, state: str
) -> None:
    """Half-open: one call goes out; an answer closes the circuit, a failure opens it again."""
    clock = Clock()
    inner = flaky([DOWN, probe])
    connector, _ = resilient(inner, attempts=1, failures=1, clock=clock)
    with pytest.raises(ConnectorUnavailable):
        connector.invoke(CALL, "k")
    clock.now += 31
    assert connector.breaker.state == "half-open"
    with contextlib.suppress(ConnectorUnavailable):
        connector.invoke(CALL, "k")
    assert connector.breaker.state == state
    assert len(inner.calls) == 2


def test_an_open_circuit_is_not_retried_by_the_wrapper() -> None:
    """A call refused by the open circuit raises at once, with when to come back."""
    clock = Clock()
    connector, slept = resilient(flaky([DOWN]), attempts=3, failures=1, clock=clock)
    with pytest.raises(ConnectorUnavailable):
        connector.invoke(CALL, "k")
    slept.clear()
    clock.now += 10
    with pytest.raises(CircuitOpen) as info:
        connector.invoke(CALL, "k")
    assert slept == [] and info.value.retry_after == pytest.approx(20)


def test_the_wrapper_is_the_connector_for_everything_else() -> None:
    """name, tools and other attributes are the wrapped connector's."""
    inner = flaky([])
    connector, _ = resilient(inner)
    assert connector.name == "erp" and list(connector.tools()) == [READ]
    assert connector.calls is inner.calls


def http(handler: Callable[[httpx.Request], httpx.Response]) -> HttpConnector:
    openapi = {
        "paths": {
            "/invoices/{invoice_id}": {
                "get": {
                    "operationId": "get_invoice",
                    "parameters": [
                        {
                            "name": "invoice_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                }
            }
        }
    }
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HttpConnector("erp", "http://erp.test", openapi=openapi, client=client)


@pytest.mark.parametrize(("status", "tries"), [(503, 3), (500, 3), (404, 1), (422, 1)])
def test_http_5xx_is_retried_and_4xx_is_not(status: int, tries: int) -> None:
    """Over HTTP: a server error is tried three times, a client error once."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(status, json={"detail": "no"})

    connector = Resilient(http(handler), sleep=lambda _: None)
    call = ToolCall("get_invoice", {"invoice_id": "INV-1"})
    if status >= 500:
        with pytest.raises(ConnectorUnavailable, match=f"HTTP {status}"):
            connector.invoke(call, "k")
    else:
        assert connector.invoke(call, "k").status == status
    assert len(seen) == tries
