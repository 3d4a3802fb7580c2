"""Serve the sample back office: the ERP (uvicorn in a thread), the HR database (a
SQLite file) and the mail server (aiosmtpd in a thread).

Only loopback addresses: these are sample services with no authentication, never to be
reachable from another machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from pathlib import Path
from typing import Any, Self

import uvicorn

from examples.acme.erp import ErpDatabase, create_app
from examples.acme.hr import HrDatabase
from examples.acme.mail import MailServer

HR_QUERIES = "examples.acme.hr.queries:QUERIES"
AGENT_SENDER = "back-office.agent@acme-corp.nl"


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
        # Accepted sockets inherit TCP_NODELAY: without it, uvicorn's separate writes of
        # headers and body meet the client's delayed ACK and each keep-alive call waits
        # ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


class AcmeBackOffice:
    """The three Acme systems, in ``data_dir``: ERP over HTTP, HR database, mail server.

    Files: ``erp.sqlite3``, ``hr.sqlite3``, ``mailbox.sqlite3`` and the mail connector's
    ``mail-sent.sqlite3``. ``start()`` (or ``start_acme``) serves the ERP and the mail
    server on loopback; the HR database needs no server. Also a context manager.
    """

    def __init__(
        self, data_dir: str | Path, *, seed: int = 0, erp_port: int = 0, smtp_port: int = 0
    ) -> None:
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.hr = HrDatabase(self.data_dir / "hr.sqlite3", seed=seed)
        self.erp = ErpService(ErpDatabase(self.data_dir / "erp.sqlite3", seed=seed), port=erp_port)
        self.mail = MailServer(self.data_dir / "mailbox.sqlite3", port=smtp_port)
        self.sent_log = self.data_dir / "mail-sent.sqlite3"

    def start(self) -> Self:
        """Serve the ERP and the mail server; returns once both answer."""
        self.erp.start()
        try:
            self.mail.start()
        except BaseException:
            self.erp.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers (the data files stay)."""
        try:
            self.mail.stop()
        finally:
            self.erp.stop()

    def __enter__(self) -> Self:
        if not self.erp.running:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Put all three systems back to the seed: ERP and HR data, mailbox, sent-log."""
        from connectors import SmtpConnector

        self.erp.reset()
        self.hr.reset()
        self.mail.reset()
        SmtpConnector.clear_sent_log(self.sent_log)

    def messages(self) -> list[dict[str, Any]]:
        """The mail delivered since the last reset (see ``Mailbox.messages``)."""
        return self.mail.messages()

    def known_names(self) -> list[str]:
        """Every person's full name in the systems' records (see ``known_names``)."""
        return known_names(self.data_dir)

    def write_known_names(self, path: str | Path) -> Path:
        """``known_names()`` one per line at ``path`` (``UMIQ_PII_KNOWN_NAMES_FILE``)."""
        return write_known_names(self.data_dir, path)

    def connectors_config(self) -> dict[str, dict[str, Any]]:
        """The ``UMIQ_CONNECTORS`` setting that reaches these systems."""
        return {
            "erp": {"kind": "http", "base_url": self.erp.url},
            "hr": {"kind": "sql", "url": self.hr.url, "queries": HR_QUERIES},
            "mail": {
                "kind": "smtp",
                "host": self.mail.host,
                "port": self.mail.port,
                "sender": AGENT_SENDER,
                "sent_log": str(self.sent_log.resolve()),
            },
        }

    def build_connectors(self) -> dict[str, Any]:
        """Connector instances by system name, built from ``connectors_config()``."""
        from connectors import HttpConnector, SmtpConnector, SqlConnector

        factories = {
            "http": HttpConnector.from_url,
            "sql": SqlConnector.from_config,
            "smtp": SmtpConnector,
        }
        built: dict[str, Any] = {}
        for name, config in self.connectors_config().items():
            options = dict(config)
            built[name] = factories[options.pop("kind")](name=name, **options)
        return built


def start_acme(
    data_dir: str | Path, *, seed: int = 0, erp_port: int = 0, smtp_port: int = 0
) -> AcmeBackOffice:
    """Create (and seed, if new) the three systems in ``data_dir`` and serve them on loopback.

    Ports 0 pick free ephemeral ports. Existing data is served as it is; call
    ``reset()`` for the seed. Use as a context manager, or call ``stop()``.
    """
    return AcmeBackOffice(data_dir, seed=seed, erp_port=erp_port, smtp_port=smtp_port).start()


def known_names(data_dir: str | Path) -> list[str]:
    """Full names of the people in the Acme records under ``data_dir`` (HR employees,
    ERP vendor contacts; systems not created there are skipped): what the worker's
    detector needs to pseudonymize names (``UMIQ_PII_KNOWN_NAMES_FILE``)."""
    import sqlite3

    data_dir = Path(data_dir)
    names: set[str] = set()
    for file, sql in (
        ("hr.sqlite3", "SELECT name FROM employee"),
        ("erp.sqlite3", "SELECT contact_name FROM vendor"),
    ):
        if (data_dir / file).is_file():
            with contextlib.closing(sqlite3.connect(data_dir / file)) as conn:
                names |= {str(row[0]) for row in conn.execute(sql)}
    return sorted(names)


def write_known_names(data_dir: str | Path, path: str | Path) -> Path:
    """``known_names(data_dir)`` one per line at ``path``."""
    path = Path(path)
    path.write_text("\n".join(known_names(data_dir)) + "\n", encoding="utf-8")
    return path
