"""``umiq review``: serve the review web page, make password hashes for its users.

    umiq review serve [--host 127.0.0.1] [--port 8700] [--ssl-certfile F --ssl-keyfile F]
    umiq review hash-password            (prompts; prints a scrypt$… hash)

Logins come from the settings: ``UMIQ_REVIEW_USERS`` (JSON ``{"name": "scrypt$…"}``),
``UMIQ_REVIEW_TOKEN`` (a read-only bearer token) and ``UMIQ_REVIEW_AUDITORS`` (JSON list
of users who may open sealed fields). With none configured the server does not start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from worker.errors import UmiqError


def register(app: typer.Typer, *, console: Console | None = None) -> typer.Typer:
    """Add the ``review`` group to ``app``."""
    out = console or Console()
    err = Console(stderr=True)
    group = typer.Typer(no_args_is_help=True, help="The review web page for compliance officers.")
    app.add_typer(group, name="review")

    @group.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8700, help="Port to listen on."),
        ssl_certfile: Path | None = typer.Option(None, help="TLS certificate (PEM)."),
        ssl_keyfile: Path | None = typer.Option(None, help="TLS private key (PEM)."),
    ) -> None:
        """Serve the review page: tasks, traces, the audit chain, pending approvals."""
        import uvicorn

        from worker.review.app import create_app
        from worker.settings import get_settings

        try:
            web = create_app(get_settings())
        except UmiqError as exc:
            err.print(Text.assemble(("error: ", "red"), str(exc)), soft_wrap=True)
            raise typer.Exit(2) from exc
        tls = ssl_certfile is not None and ssl_keyfile is not None
        if not tls and not _loopback(host):
            err.print(
                Text(
                    f"warning: serving on {host} without TLS: basic-auth passwords cross the "
                    "network in clear; use --ssl-certfile/--ssl-keyfile or a TLS proxy",
                    style="yellow",
                ),
                soft_wrap=True,
            )
        scheme = "https" if tls else "http"
        out.print(Text(f"umiq review on {scheme}://{host}:{port}/"), soft_wrap=True)
        uvicorn.run(
            web,
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )

    @group.command("hash-password")
    def hash_password_command() -> None:
        """Prompt for a password; print its scrypt hash for UMIQ_REVIEW_USERS."""
        from worker.review._auth import hash_password

        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        try:
            typer.echo(hash_password(password))
        except ValueError as exc:
            err.print(Text.assemble(("error: ", "red"), str(exc)))
            raise typer.Exit(2) from exc

    return group


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
