"""``umiq dlq list|show|replay``: the refused messages, why, and sending them back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import typer
from kombu.exceptions import OperationalError
from rich.console import Console
from rich.table import Table

console = Console()
#: What kombu raises when the broker cannot be reached.
_BROKER_DOWN = (OSError, OperationalError)


def _settings():  # type: ignore[no-untyped-def]
    from worker.settings import get_settings

    return get_settings()


def _broker_error(exc: Exception) -> typer.Exit:
    from kombu.utils.url import maybe_sanitize_url

    url = maybe_sanitize_url(_settings().resolved_broker_url)
    console.print(f"[red]error:[/red] cannot reach the broker at {url}: {exc}")
    return typer.Exit(2)


def _plain(text: str) -> None:
    """Print ``text`` as it is: not cut at the terminal's width, not read as markup, and
    not highlighted (rich's highlighter took 40 s for a 16 KiB line, growing with its
    square, and a dead letter's body can be megabytes)."""
    console.print(text, markup=False, soft_wrap=True, highlight=False)


def _digest_line(body: bytes, letter: Any) -> str:
    """The kept body's size and SHA-256, and whether it is the message the refusal recorded."""
    digest = hashlib.sha256(body).hexdigest()
    if letter.truncated is not None:
        return (f"body: the first {len(body):,} of {letter.truncated:,} bytes (refused for its "
                f"size; the whole body's sha256 is {letter.sha256})")  # fmt: skip
    if not letter.sha256:
        same = "no digest recorded: kept as the broker dead-lettered it"
    else:
        same = "the recorded digest" if digest == letter.sha256 else "NOT the recorded digest"
    return f"body: {len(body):,} bytes, sha256 {digest} ({same})"


def register(app: typer.Typer) -> None:
    """Add the ``dlq`` commands to the umiq command line."""
    dlq_app = typer.Typer(no_args_is_help=True, help="The dead-letter queue: refused messages.")
    app.add_typer(dlq_app, name="dlq")

    @dlq_app.command("list")
    def list_command(
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """The refused messages in queue order: position, digest, task, reason."""
        from worker.dlq import list_letters

        try:
            letters = list_letters(_settings())
        except _BROKER_DOWN as exc:
            raise _broker_error(exc) from exc
        if as_json:
            for letter in letters:
                typer.echo(json.dumps({
                    "position": letter.position,
                    "sha256": letter.sha256,
                    "task_id": letter.headers.get("x-umiq-task-id"),
                    "field": letter.headers.get("x-umiq-field"),
                    "reason": letter.reason,
                    "refused_at": letter.headers.get("x-umiq-refused-at"),
                    "audited": letter.headers.get("x-umiq-audited"),
                    "bytes": len(letter.body),
                }, default=str))  # fmt: skip
            return
        table = Table(title=f"{len(letters)} dead letter(s) in {_settings().dead_letter_queue}")
        for column in ("#", "sha256", "audit record", "reason"):
            table.add_column(column)
        for letter in letters:
            table.add_row(
                str(letter.position),
                letter.sha256[:12],
                str(letter.headers.get("x-umiq-task-id", "")),
                letter.reason,
            )
        console.print(table)

    @dlq_app.command("show")
    def show_command(
        selector: str = typer.Argument(..., help="Position from `dlq list`, or a SHA-256 prefix."),
        reveal: bool = typer.Option(
            False, "--reveal", help="Print the message as it came (it may hold personal data)."
        ),
        body_out: Path | None = typer.Option(
            None,
            "--body-out",
            help="With --reveal: write the body, byte for byte as it came, to this file.",
        ),
    ) -> None:
        """One refused message: headers and body with personal data masked (``<IBAN>``);
        a sealed one is opened with the key ring. ``--reveal`` prints it unmasked, its text
        read by its declared encoding; the body's size and SHA-256 show that it is the
        message's (the digest recorded at the refusal)."""
        from policies import SealError
        from worker.agent.guard import detector_from
        from worker.dlq import list_letters, operator_keyring
        from worker.letters import body_text, redacted

        if body_out is not None and not reveal:
            console.print("[red]error:[/red] --body-out writes the body as it came: add --reveal")
            raise typer.Exit(2)

        settings = _settings()
        try:
            letters = [x for x in list_letters(settings) if x.matches(selector)]
        except _BROKER_DOWN as exc:
            raise _broker_error(exc) from exc
        if not letters:
            console.print(f"[red]error:[/red] no dead letter {selector!r}: see `umiq dlq list`")
            raise typer.Exit(1)
        keyring = operator_keyring(settings) if any(x.sealed for x in letters) else None
        code = 0
        for letter in letters:
            console.print(f"[bold]#{letter.position}[/bold] {letter.sha256}")
            console.print(f"reason: {letter.reason}")
            console.print_json(json.dumps(letter.headers, default=str, sort_keys=True))
            try:
                original = letter.original(keyring)
            except SealError as exc:
                console.print(f"[red]sealed, cannot open:[/red] {exc}", markup=True)
                code = 1
                continue
            shown = original if reveal else redacted(detector_from(settings), original)
            state = "sealed" if letter.sealed else "kept as it came"
            view = "revealed" if reveal else "personal data masked"
            console.print(f"message ({state}; {view}):")
            console.print(f"content type: {shown.content_type} ({shown.content_encoding})")
            _plain(_digest_line(original.body, letter))
            console.print_json(json.dumps(shown.headers, default=str, sort_keys=True))
            if reveal:
                _plain(body_text(original))
                if body_out is not None:
                    body_out.write_bytes(original.body)
                    _plain(f"body written to {body_out}")
            else:
                _plain(shown.body.decode("utf-8", errors="backslashreplace"))
        if code:
            raise typer.Exit(code)

    @dlq_app.command("replay")
    def replay_command(
        selectors: list[str] = typer.Argument(..., help="Positions, SHA-256 prefixes, or `all`."),
    ) -> None:
        """Send refused messages back to the work queue, as they came; they are checked
        again, and refused again if nothing changed."""
        from policies import SealError
        from worker.dlq import replay
        from worker.errors import DeadLetterError

        try:
            done = replay(_settings(), selectors)
        except _BROKER_DOWN as exc:
            raise _broker_error(exc) from exc
        except (SealError, DeadLetterError) as exc:
            console.print(f"[red]error:[/red] nothing replayed: {exc}")
            raise typer.Exit(1) from exc
        for letter in done:
            console.print(f"replayed #{letter.position} {letter.sha256[:12]}")
        if not done:
            console.print(f"[red]error:[/red] no dead letter matches {' '.join(selectors)}")
            raise typer.Exit(1)
