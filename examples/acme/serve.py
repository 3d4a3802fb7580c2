"""Serve the sample back office's ASGI apps with a real uvicorn server in a thread.

Only loopback addresses: these are sample services with no authentication, never to be
reachable from another machine.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path
from typing import Any, Self

import uvicorn

from examples.acme.erp import ErpDatabase, create_app


class ServiceThread:
    """A uvicorn server for ``app`` on a loopback address and an ephemeral port.

    ``start()`` returns once the server accepts connections; ``url`` is its base URL;
    ``stop()`` shuts it down and joins the thread. Also a context manager.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 15.0,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"refusing to serve on {host}: sample services bind to loopback only")
        self.app = app
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,  # leave the process's logging configuration alone
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
        )
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self.port is None:
            raise RuntimeError("the service is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive() and self._server.started

    def start(self) -> Self:
        """Bind, start serving in a background thread, and wait until it accepts."""
        if self._thread is not None:
            raise RuntimeError("a ServiceThread starts once; make a new one")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket, self.port = sock, sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"uvicorn-{self.host}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError(f"the service on {self.url} failed to start (see its log)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service on {self.url} did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask the server to exit, wait for it, and release the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class ErpService(ServiceThread):
    """The ERP served on loopback, with its database at hand for checks and resets."""

    def __init__(self, database: ErpDatabase, **kwargs: Any) -> None:
        super().__init__(create_app(database), **kwargs)
        self.db = database

    def reset(self) -> None:
        """Put the ERP back to its seed (the server keeps running)."""
        self.db.reset()


def start_erp(data_dir: str | Path, *, port: int = 0, seed: int = 0) -> ErpService:
    """Create (and seed, if new) ``<data_dir>/erp.sqlite3`` and serve the ERP on loopback.

    ``port`` 0 picks a free ephemeral port. An existing database is served as it is;
    call ``reset()`` for the seed.
    """
    database = ErpDatabase(Path(data_dir) / "erp.sqlite3", seed=seed)
    return ErpService(database, port=port).start()
