"""``umiq health``'s engine check against a real HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.health import check_engine, run_checks
from worker.settings import Settings


class _Engine(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health" else 404
        body = b'{"status": "ok"}' if code == 200 else b'{"error": "Loading model"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        _Engine.status = 200


def _settings(url: str, role_model: str | None = None) -> Settings:
    return Settings(model_backend="openai", engine_url=url, role_model=role_model)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_engine_that_answers_health_passes(engine: ThreadingHTTPServer) -> None:
    """GET /health answering 200 makes the check ok, naming the dialect and URL."""
    url = f"http://127.0.0.1:{engine.server_address[1]}"
    check = check_engine(_settings(url))
    assert check.status == "ok", check.detail
    assert check.facts["url"] == url + "/health" and "llama.cpp" in check.detail


def test_an_engine_still_loading_fails(engine: ThreadingHTTPServer) -> None:
    """A 503 (llama-server loading its model) fails the check and says so."""
    _Engine.status = 503
    check = check_engine(_settings(f"http://127.0.0.1:{engine.server_address[1]}"))
    assert check.status == "fail" and "503" in check.detail and "loading" in check.detail


def test_an_engine_that_is_down_fails_naming_it() -> None:
    """Nothing listening: the check fails naming the engine's URL, and health is red."""
    url = f"http://127.0.0.1:{_closed_port()}"
    check = check_engine(_settings(url), timeout=2)
    assert check.status == "fail" and url in check.detail
    [only] = run_checks(_settings(url), ["engine"], timeout=2)
    assert not only.ok


def test_in_process_models_skip_the_engine_check() -> None:
    """With the hf backend, or a role-model plug-in, no engine is asked."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert check_engine(Settings(model_backend="hf", engine_url=url)).status == "skip"
    plugin = _settings(url, role_model="tests.support.scripted:factory")
    assert check_engine(plugin).status == "skip"
