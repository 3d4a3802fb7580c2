"""``umiq eval live``: held-out tasks end to end through a real worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from worker.errors import ConfigError, UmiqError
from worker.evaluation.cli.common import CliEnv, Split, command_line, parse_families
from worker.evaluation.cli.tables import LiveProgress, live_tables


def live_command(env: CliEnv) -> Callable[..., None]:
    """``eval live``, printing its progress, tables and file to ``env.console``."""

    def live(
        split: Split = typer.Option(Split.test, help="Catalogue split (held out from training)."),
        limit: int | None = typer.Option(None, min=1, help="Run the first N tasks."),
        families: str | None = typer.Option(
            None, help="Comma-separated task families (default: all the systems support)."
        ),
        seed: int = typer.Option(0, help="Seed of the Acme world and of the task draw."),
        per_family: int = typer.Option(
            2,
            min=1,
            help="Tasks per family drawn from the split: the first N of what `umiq data build` "
            "draws there with the same seed.",
        ),
        model_set: str = typer.Option(
            "shipped",
            "--model-set",
            help="shipped, base, adapters:DIR, single:DIR or checkpoint:DIR (NAME=SPEC).",
        ),
        out: Path = typer.Option(Path("eval-live"), help="Where to write live.json."),
        max_steps: int | None = typer.Option(
            None, min=1, help="Step limit per task (default: UMIQ_MAX_STEPS, 12)."
        ),
        max_new_tokens: int | None = typer.Option(
            None, min=1, help="Token limit per role output (default: UMIQ_MAX_NEW_TOKENS)."
        ),
        timeout: float | None = typer.Option(
            None, min=1, help="Seconds to wait for one task (default: 300 + 180 per step)."
        ),
        work_dir: Path | None = typer.Option(
            None, help="Broker, audit log, worker log and Acme data (default: OUT/work)."
        ),
        shard: str | None = typer.Option(
            None,
            help="K/N: run the K-th of N interleaved parts of the tasks, so N runs side by "
            "side (one per core) cover the split; give `umiq eval report --live` the folder "
            "that holds the N --out folders and it merges them.",
        ),
    ) -> None:
        """Held-out Acme tasks end to end through a real worker; writes live.json."""
        from worker.evaluation.live import LiveConfig, run_live
        from worker.evaluation.modelsets import ModelSet

        split_name = split.value

        command = command_line(
            ["eval", "live"],
            [
                ("--split", split_name),
                ("--limit", limit),
                ("--families", families),
                ("--seed", seed),
                ("--per-family", per_family),
                ("--model-set", model_set),
                ("--out", out),
                ("--max-steps", max_steps),
                ("--max-new-tokens", max_new_tokens),
                ("--timeout", timeout),
                ("--work-dir", work_dir),
                ("--shard", shard),
            ],
        )
        try:
            parts = parse_shard(shard)
            config = LiveConfig(
                out=out,
                model_set=ModelSet.parse(model_set),
                split=split_name,
                limit=limit,
                families=parse_families(families),
                seed=seed,
                per_family=per_family,
                max_steps=max_steps,
                max_new_tokens=max_new_tokens,
                timeout=timeout,
                work_dir=work_dir,
                command=command,
                shard=parts,
            )
            with LiveProgress(env.console) as hooks:
                result = run_live(config, hooks)
        except UmiqError as exc:
            raise env.fail(exc) from exc
        path = result.write(out)
        for table in live_tables(result):
            env.console.print(table)
        env.console.print(f"wrote {path}")

    return live


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/3"`` → ``(2, 3)``; None stays None."""
    if text is None:
        return None
    k, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(k), int(n)
    except ValueError:
        raise ConfigError(f"--shard takes K/N (e.g. 1/2), got {text!r}") from None
