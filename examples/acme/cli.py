"""``umiq acme``: serve the sample back office, or put it back to its seed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer


def _data_dir(data_dir: Path | None) -> Path:
    # the worker's default data dir (UMIQ_DATA_DIR, else ./.umiq), without importing worker
    base = Path(os.environ.get("UMIQ_DATA_DIR") or Path.cwd() / ".umiq").expanduser()
    return data_dir or base.resolve() / "acme"


def register(app: typer.Typer) -> typer.Typer:
    """Add the ``acme`` command group (``serve``, ``reset``) to ``app``; returns the group."""
    acme = typer.Typer(no_args_is_help=True, help="The Acme sample back office.")
    app.add_typer(acme, name="acme")

    @acme.command("serve")
    def serve(
        data_dir: Path | None = typer.Option(None, help="Where the systems keep their data."),
        seed: int = typer.Option(0, help="Seed of the sample data (for new data only)."),
        erp_port: int = typer.Option(8701, help="ERP port on 127.0.0.1 (0: any free one)."),
        smtp_port: int = typer.Option(8725, help="SMTP port on 127.0.0.1 (0: any free one)."),
    ) -> None:
        """Serve the ERP, HR database and mail server on loopback until interrupted."""
        from examples.acme.serve import start_acme

        with start_acme(
            _data_dir(data_dir), seed=seed, erp_port=erp_port, smtp_port=smtp_port
        ) as office:
            typer.echo(f"ERP   {office.erp.url}  (OpenAPI: {office.erp.url}/openapi.json)")
            typer.echo(f"HR    {office.hr.url}")
            typer.echo(f"Mail  smtp://{office.mail.address}  (mailbox: {office.mail.mailbox.path})")
            typer.echo("point a worker at them with:")
            typer.echo(f"  export UMIQ_CONNECTORS='{json.dumps(office.connectors_config())}'")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                typer.echo("stopping")

    @acme.command("reset")
    def reset(
        data_dir: Path | None = typer.Option(None, help="Where the systems keep their data."),
        seed: int = typer.Option(0, help="Seed of the sample data."),
    ) -> None:
        """Put the ERP, HR and mail data back to the seed (the servers may keep running)."""
        from examples.acme.serve import AcmeBackOffice

        office = AcmeBackOffice(_data_dir(data_dir), seed=seed)
        office.reset()
        typer.echo(f"reset the Acme back office in {office.data_dir} to seed {seed}")

    @acme.command("shadow-run")
    def shadow_run(
        department: str = typer.Option("finance", help="The department to run in shadow."),
        split: str = typer.Option("test", help="The catalogue split: train, dev or test."),
        per_family: int = typer.Option(2, help="Tasks per family (12: the whole test split)."),
        limit: int | None = typer.Option(None, help="Run only the first N tasks."),
        family: list[str] = typer.Option([], help="Only this task family (repeatable)."),
        seed: int = typer.Option(0, help="Seed of the sample data and the tasks."),
        models: str = typer.Option(
            "expert",
            help="expert (its gold trajectories replayed), or a model set: "
            "shipped, adapters:DIR, …",
        ),
        by: str = typer.Option(..., help="Who puts the department in shadow (recorded)."),
        keep: bool = typer.Option(False, help="Leave the department in shadow afterwards."),
        out: Path = typer.Option(Path("shadow-run"), help="Where shadow.json/.png go."),
        timeout: float = typer.Option(600.0, help="Seconds to wait for one task."),
    ) -> None:
        """Run the department's Acme tasks in shadow through a real worker, record the
        expert's outcomes as the people's, and print the promotion report (agreement)."""
        from rich.console import Console

        from examples.acme.shadow import ShadowConfig, run_shadow
        from worker.errors import UmiqError
        from worker.rollout.cli import print_report

        config = ShadowConfig(
            out=out, department=department, split=split, seed=seed, per_family=per_family,
            limit=limit, families=family or None, models=models, by=by, keep=keep, timeout=timeout,
        )  # fmt: skip
        try:
            result = run_shadow(config, progress=typer.echo)
        except UmiqError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        console = Console()
        print_report(console, result.report)
        for task in result.tasks:
            if not task.agreement.get("agree"):
                typer.echo(f"disagrees: {task.task_id} {task.uid} {task.agreement}")
        typer.echo(f"wrote {out / 'shadow.json'} and {out / 'shadow.png'}")

    return acme
