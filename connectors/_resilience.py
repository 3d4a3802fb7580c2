"""Connector calls that survive a flaky system and fail fast on a dead one.

Errors are classified once (:func:`is_retryable`): a system that cannot be reached, did
not answer in time or answered 5xx (``ConnectorUnavailable``) may answer a moment later;
a refusal of the call itself (a 4xx the model reads as a ``ToolResult``, arguments that
fail the schema, an unknown tool) is the same on every try and is never retried.

:class:`Resilient` wraps any connector: a retryable failure is tried again with
exponential backoff and jitter (tenacity), with the same idempotency key, so a write the
system did make is not made twice; its :class:`CircuitBreaker` opens after ``failures``
consecutive failed calls and then refuses calls at once with :class:`CircuitOpen`
naming the system, until ``reset_after`` seconds have passed and one call may try again
(half-open: a success closes the circuit, a failure opens it again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors._base import Connector, ToolCall, ToolResult
from connectors._errors import CircuitOpen, ConnectorError, ConnectorUnavailable


def is_retryable(exc: BaseException) -> bool:
    """Whether a call that raised ``exc`` may succeed if made again unchanged.

    ``ConnectorUnavailable`` (and ``ConnectorTimeout``) is: the system was down, slow or
    answered 5xx. An open circuit is not retried here (it says when to come back); every
    other error (invalid arguments, unknown tool, a refused write) is permanent.
    """
    return isinstance(exc, ConnectorUnavailable) and not isinstance(exc, CircuitOpen)


class CircuitBreaker:
    """Counts one system's consecutive failures; open, it refuses calls until ``reset_after``.

    Thread-safe: a worker's threads share one breaker per connector.
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError(f"circuit breaker {name!r}: failures must be at least 1")
        self.name = name
        self.threshold = failures
        self.reset_after = reset_after
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._last = ""
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (open, and a call may try again)."""
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now (closed, or the one half-open try)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half-open" and not self._probing:
                self._probing = True
                return
            assert self._opened_at is not None
            left = max(0.0, self.reset_after - (self._clock() - self._opened_at))
            raise CircuitOpen(self.name, self._failures, left or self.reset_after, self._last)

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            self._last = str(exc)[:200]
            if self._probing or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._probing = False


class Resilient:
    """A connector whose calls are retried on retryable errors and guarded by a breaker.

    Everything but ``invoke`` (``name``, ``tools``, ``dry_run`` where the wrapped
    connector has it, ``close``) is the wrapped connector's.
    """

    def __init__(
        self,
        inner: Connector,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 4.0,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"connector {inner.name!r}: attempts must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.attempts = attempts
        self.breaker = breaker if breaker is not None else CircuitBreaker(inner.name)
        self._wait = wait_exponential_jitter(initial=backoff, max=backoff_max, jitter=backoff)
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def tools(self) -> Any:
        return self.inner.tools()

    def invoke(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        """``inner.invoke``, tried up to ``attempts`` times while it fails retryably.

        CircuitOpen when the breaker is open (no request is made); the last
        ConnectorUnavailable when every try failed; a permanent error at once.
        """
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._once, call, idempotency_key)

    def _once(self, call: ToolCall, idempotency_key: str) -> ToolResult:
        self.breaker.before_call()
        try:
            result = self.inner.invoke(call, idempotency_key)
        except ConnectorError as exc:
            if is_retryable(exc):
                self.breaker.failed(exc)
            else:  # the system answered: it is up, the call was wrong
                self.breaker.succeeded()
            raise
        self.breaker.succeeded()
        return result
