"""``umiq eval report``: result files of static and live runs → tables and plots.

Reads ``metrics.json`` (``umiq eval static``) and ``live.json`` (``umiq eval live``)
from any number of result folders, each named by its model set, and writes into the
output folder:

- ``acme.md``: the five static metrics per model set with their denominators, the live
  pass rate, mean steps, tokens, wall time and failures by cause per model set, pass
  rates per task family, the model sets, and the command behind every result (from the
  result files' metadata);
- ``static_metrics.png``: grouped bars, one group per metric, one bar per model set;
- ``live_pass_rate.png``: pass rate per task family, one bar per model set.

The output is a pure function of the inputs: no clock, no absolute output paths, the
plots drawn on a fresh Agg figure with fixed metadata, so running the report twice on
the same results rewrites identical bytes. Hand-written pages next to it (the
``README.md`` of ``docs/results``) are never touched.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.evaluation.causes import CAUSES
from worker.evaluation.metrics import STATIC_METRICS

MARKDOWN = "acme.md"
STATIC_PLOT = "static_metrics.png"
LIVE_PLOT = "live_pass_rate.png"


@dataclass(frozen=True)
class Result:
    """One result folder: the model set's name, the folder and its parsed file."""

    name: str
    path: Path
    data: Mapping[str, Any]

    @property
    def run(self) -> Mapping[str, Any]:
        return self.data.get("run") or {}

    @property
    def command(self) -> str:
        """The command behind the result; a run of shards: each shard's, side by side."""
        shards = self.run.get("shards") or []
        if shards:
            return "` and `".join(str(shard.get("command") or "") for shard in shards)
        return str(self.run.get("command") or "")


@dataclass
class ReportInputs:
    """The static and live results to report, in the order given."""

    static: list[Result] = field(default_factory=list)
    live: list[Result] = field(default_factory=list)
    command: str = ""


def _named(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"expected NAME=DIR, got {item!r}")
    return name.strip(), Path(path.strip())


def load_static(name: str, path: Path) -> Result:
    """A static result folder (or its ``metrics.json``)."""
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"static result {name!r}: no metrics.json in {path}")
    data = json.loads(file.read_text(encoding="utf-8"))
    missing = [key for _, key, count in STATIC_METRICS for key in (key, count) if key not in data]
    if missing:
        raise ConfigError(f"static result {name!r}: {file} lacks {', '.join(missing)}")
    return Result(name, path, data)


def load_live(name: str, path: Path) -> Result:
    """A live result folder (or its ``live.json``), or a folder of shard folders
    (``umiq eval live --shard K/N``), merged into one result."""
    file = path / "live.json" if path.is_dir() else path
    if path.is_dir() and not file.is_file() and (shards := sorted(path.glob("*/live.json"))):
        return Result(name, path, merge_live([_read_live(name, f) for f in shards]))
    if not file.is_file():
        raise ConfigError(f"live result {name!r}: no live.json in {path}")
    return Result(name, path, _read_live(name, file))


def merge_live(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ``live.json`` record from the shards of one run: every task once (in task
    order), the summary recomputed, the first shard's settings and each shard's run."""
    from worker.evaluation.live.scoring import LiveTask, summarize

    shards = sorted(parts, key=lambda p: str(p["run"].get("shard") or ""))
    labels = [p["run"].get("shard") for p in shards]
    sizes = {str(label).partition("/")[2] for label in labels}
    if None in labels or len(sizes) != 1 or len(set(labels)) != len(labels):
        raise ConfigError(f"live shards must be the parts K/N of one run, got {labels}")
    if len(labels) != int(sizes.pop()):
        raise ConfigError(f"live shards {labels}: some part of the run is missing")
    tasks = sorted((t for p in shards for t in p["tasks"]), key=lambda t: t["uid"])
    if len({t["uid"] for t in tasks}) != len(tasks):
        raise ConfigError("live shards hold the same task twice: they are not one run's parts")
    run = {
        **shards[0]["run"],
        "shard": None,
        "shards": [p["run"] for p in shards],
        "wall_s": max(p["run"].get("wall_s") or 0 for p in shards),
    }
    return {
        **shards[0],
        "run": run,
        "summary": summarize([LiveTask(**t) for t in tasks]),
        "tasks": tasks,
    }


def _read_live(name: str, file: Path) -> dict[str, Any]:
    data = json.loads(file.read_text(encoding="utf-8"))
    if "summary" not in data or "tasks" not in data:
        raise ConfigError(f"live result {name!r}: {file} is not a umiq live.json")
    return data


def gather(
    static: Sequence[str] = (),
    live: Sequence[str] = (),
    config: Path | None = None,
    command: str = "",
) -> ReportInputs:
    """Load ``NAME=DIR`` items and a config file listing more.

    The config (TOML or JSON) has ``static`` and ``live`` tables of name → folder;
    relative folders are read from the config file's folder.
    """
    items: dict[str, list[tuple[str, Path]]] = {
        "static": [_named(i) for i in static],
        "live": [_named(i) for i in live],
    }
    if config is not None:
        text = config.read_text(encoding="utf-8")
        parsed = json.loads(text) if config.suffix == ".json" else tomllib.loads(text)
        for kind in ("static", "live"):
            table = parsed.get(kind) or {}
            if not isinstance(table, Mapping):
                raise ConfigError(f"{config}: [{kind}] must map names to folders")
            for name, folder in table.items():
                where = Path(folder)
                items[kind].append((name, where if where.is_absolute() else config.parent / where))
    for kind, entries in items.items():
        names = [n for n, _ in entries]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{kind} results named twice: {', '.join(repeated)}")
    if not items["static"] and not items["live"]:
        raise ConfigError("nothing to report: give --static NAME=DIR, --live NAME=DIR or --config")
    return ReportInputs(
        static=[load_static(n, p) for n, p in items["static"]],
        live=[load_live(n, p) for n, p in items["live"]],
        command=command,
    )


# -- Markdown -----------------------------------------------------------------------------


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    marks = [("---:" if a == "r" else "---") for a in (align or "l" * len(header))]
    return [_row(header), _row(marks), *(_row(r) for r in rows)]


def static_rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per model set: each metric as ``value (n=denominator)``."""
    rows = []
    for result in results:
        cells = [result.name]
        for _label, key, count in STATIC_METRICS:
            cells.append(f"{float(result.data[key]):.3f} (n={int(result.data[count])})")
        rows.append(cells)
    return rows


def _causes(summary: Mapping[str, Any]) -> str:
    counts = summary.get("causes") or {}
    parts = [f"{cause} {counts[cause]}" for cause in CAUSES if counts.get(cause)]
    return ", ".join(parts) if parts else "none"


def live_rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per model set: tasks, passed, pass rate, means and failures by cause."""
    rows = []
    for result in results:
        s = result.data["summary"]
        rows.append(
            [
                result.name,
                str(s["tasks"]),
                str(s["passed"]),
                f"{float(s['pass_rate']):.3f}",
                f"{float(s['mean_steps']):.2f}",
                f"{float(s['mean_tokens']):.0f}",
                f"{float(s['mean_wall_s']):.1f}",
                _causes(s),
            ]
        )
    return rows


def families_of(results: Sequence[Result]) -> list[str]:
    """Every family any live result covers, sorted."""
    return sorted({fam for r in results for fam in r.data["summary"].get("per_family", {})})


def family_rows(results: Sequence[Result]) -> list[list[str]]:
    """One row per family: ``passed/tasks`` for each model set (``–`` when not run)."""
    rows = []
    for family in families_of(results):
        cells = [family]
        for result in results:
            entry = result.data["summary"].get("per_family", {}).get(family)
            cells.append(f"{entry['passed']}/{entry['tasks']}" if entry else "–")
        rows.append(cells)
    return rows


def _model_sets(inputs: ReportInputs) -> list[list[str]]:
    seen: dict[str, list[str]] = {}
    for result in [*inputs.static, *inputs.live]:
        model_set = result.run.get("model_set") or {}
        spec = model_set.get("spec") or "(environment)"
        description = model_set.get("description") or _described(result.run.get("model"))
        seen.setdefault(result.name, [result.name, spec, description])
    return list(seen.values())


def _described(model: Any) -> str:
    if not isinstance(model, Mapping):
        return ""
    return ", ".join(f"{k}: {v}" for k, v in sorted(model.items()) if isinstance(v, str))


def _broker(url: str) -> str:
    return "embedded SQLite" if url.startswith("sqla+sqlite") else url


def markdown(inputs: ReportInputs) -> str:
    """The ``acme.md`` page."""
    lines = [
        "<!-- Generated by `umiq eval report` from the result files listed below; "
        "edits are overwritten. -->",
        "",
        "# Acme evaluation results",
        "",
    ]
    if inputs.command:
        lines += [f"Regenerate this page: `{inputs.command}`", ""]
    if inputs.static:
        lines += [
            "## Static metrics (teacher-forced, α-UMi definitions)",
            "",
            "Each cell is the metric and, as `n`, the steps it is averaged over: Plan ACC "
            "and Hallu. rate over all steps, Act. EM over gold call steps, Arg. F1 over "
            "gold call steps with parsable arguments, R-L over gold conclusion steps. "
            "Lower is better for Hallu. rate only.",
            "",
            *_table(
                ["model set", *(label for label, _, _ in STATIC_METRICS)],
                static_rows(inputs.static),
                "l" + "r" * len(STATIC_METRICS),
            ),
            "",
            f"![static metrics]({STATIC_PLOT})",
            "",
        ]
    if inputs.live:
        lines += [
            "## Live (held-out Acme tasks through the worker, checked on the systems)",
            "",
            "A task passes when its episode ends by itself (an answer or a give-up) and "
            "the task's checker finds the systems in the expected state and the expected "
            "facts in the answer. Means are per task; tokens are prompt plus completion "
            "tokens of all role calls.",
            "",
            *_table(
                [
                    "model set",
                    "tasks",
                    "passed",
                    "pass rate",
                    "mean steps",
                    "mean tokens",
                    "mean wall s",
                    "failures by cause",
                ],
                live_rows(inputs.live),
                "lrrrrrrl",
            ),
            "",
            "### Passed per task family",
            "",
            *_table(
                ["family", *(r.name for r in inputs.live)],
                family_rows(inputs.live),
                "l" + "r" * len(inputs.live),
            ),
            "",
            f"![live pass rate per family]({LIVE_PLOT})",
            "",
            "### Settings",
            "",
            *_table(
                [
                    "model set",
                    "run on",
                    "split",
                    "seed",
                    "limit",
                    "max steps",
                    "max new tokens",
                    "broker",
                ],
                [
                    [
                        r.name,
                        str(r.run.get("started_at") or "")[:10],
                        r.run.get("split", ""),
                        r.run.get("seed", ""),
                        r.run.get("limit") if r.run.get("limit") is not None else "all",
                        (r.run.get("settings") or {}).get("max_steps", ""),
                        (r.run.get("settings") or {}).get("max_new_tokens", ""),
                        _broker((r.run.get("settings") or {}).get("broker", "")),
                    ]
                    for r in inputs.live
                ],
            ),
            "",
        ]
    lines += [
        "## Model sets",
        "",
        *_table(["name", "spec", "description"], _model_sets(inputs)),
        "",
        "## Commands",
        "",
    ]
    for kind, results in (("static", inputs.static), ("live", inputs.live)):
        for result in results:
            lines.append(f"- {kind} `{result.name}`: `{result.command or '(not recorded)'}`")
    lines.append("")
    return "\n".join(lines)


# -- plots --------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    # fixed metadata: no version stamp, so a rerun writes identical bytes
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _grouped_bars(
    ax: Any, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]]
) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series):
        offsets = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(offsets, values, width=width, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_ylim(0, 1.15)  # headroom for the legend above the bars
    ax.legend(loc="upper center", ncols=max(1, len(series)), fontsize="small", frameon=False)
    ax.grid(axis="y", alpha=0.3)


def plot_static(results: Sequence[Result], path: Path) -> Path:
    """Grouped bars: one group per metric, one bar per model set."""
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    labels = [label for label, _, _ in STATIC_METRICS]
    series = [(r.name, [float(r.data[key]) for _, key, _ in STATIC_METRICS]) for r in results]
    _grouped_bars(ax, labels, series)
    ax.set_xticklabels(
        [f"{label} (↓)" if key == "hallu_rate" else label for label, key, _ in STATIC_METRICS]
    )
    ax.set_ylabel("score")
    ax.set_title("Static metrics per model set")
    fig.tight_layout()
    return _save(fig, path)


def plot_live(results: Sequence[Result], path: Path) -> Path:
    """Pass rate per task family, one bar per model set."""
    families = families_of(results)
    fig = _figure(max(8.0, 0.45 * len(families) * max(1, len(results)) + 2), 5)
    ax = fig.add_subplot()
    series = []
    for result in results:
        per_family = result.data["summary"].get("per_family", {})
        series.append(
            (result.name, [float(per_family.get(f, {}).get("pass_rate", 0.0)) for f in families])
        )
    _grouped_bars(ax, families, series)
    ax.set_xticklabels(families, rotation=45, ha="right", fontsize="small")
    ax.set_ylabel("pass rate")
    ax.set_title("Live pass rate per task family")
    fig.tight_layout()
    return _save(fig, path)


def write_report(inputs: ReportInputs, out: str | Path) -> list[Path]:
    """Write ``acme.md`` and the plots under ``out``; return the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    page = out / MARKDOWN
    page.write_text(markdown(inputs), encoding="utf-8")
    written.append(page)
    if inputs.static:
        written.append(plot_static(inputs.static, out / STATIC_PLOT))
    if inputs.live:
        written.append(plot_live(inputs.live, out / LIVE_PLOT))
    return written
