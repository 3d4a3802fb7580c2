"""Stage fingerprints: reuse a finished stage of another run instead of training it again.

A stage's weights are decided by the data, the base checkpoint, the LoRA shape, the
optimizer settings, the stage's own schedule (epochs, warmup, sample cap), its seed, the
device type and dtype, and the adapter it starts from. :func:`fingerprints` hashes
exactly those, so two runs that differ only in, say, the summarizer's sample cap share
the fingerprints of their global, planner and caller stages, and ``umiq train
--reuse-from OTHER_RUN`` copies those stages instead of retraining them (GLPFT's local
stages each start from the global adapter and draw their own samples with their own
seed, so they do not depend on one another). Training is deterministic here, so a
reused stage is byte-identical to the one a fresh run would train (the test suite
checks that).

A stage is fingerprinted by its own role's samples (``data.role_hashes`` in the card),
not by the whole data: a dataset that changes only the planner's prompts (a prompt view
that restates the request to the planner) leaves the global, caller and summarizer
stages reusable. Runs from before that are fingerprinted by the whole data's hash.

New runs write the fingerprint into every ``done`` file; for older runs it is computed
from their model card (``umiq-train.json``: config, data hash, device).
:func:`record_role_hashes` gives an older run's card the role hashes of the data it
trained on (checked against its whole hash), so its stages are found the new way too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.training import card as _card
from worker.training.config import AUTOCASTS, METHODS, RUNTIME_FIELDS, TrainConfig
from worker.training.data import Stage, stages_for

DONE = "done"

#: Config fields that do not decide a stage's weights, or that the stage-level entries
#: below replace (the whole run's epochs/warmup/caps become the stage's own; the data
#: path becomes the data hash; method becomes the stage's role and start).
_NOT_WEIGHTS = (
    frozenset(
        {
            "out",
            "save_every",
            "data",
            "method",
            "epochs",
            "warmup_ratio",
            "max_samples",
            "seed",
            "device",
            "dtype",
            "autocast",
            "pack",
            "balance",
            "decision_shares",
            "continue_from",  # the continued adapter's fingerprint is the stage's init
            "lr",
            "stage_lr",
        }
    )
    | RUNTIME_FIELDS
)  # out, save_every, max_cut_share: knobs that never change the weights


def fingerprints(
    config: TrainConfig,
    digest: str,
    device: str,
    base_revision: str,
    *,
    autocast: str | None = None,
    role_digests: Mapping[str, str] | None = None,
    stage_autocasts: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every stage of ``config.method``: name -> sha256 of what decides its weights.

    ``base_revision`` is the base checkpoint's digest (a base of the same name with other
    weights gives other adapters). ``autocast`` is the mixed precision the run resolved
    (its card's ``precision``), when not the one ``config`` resolves to on this machine:
    ``auto`` means bfloat16 only where the hardware computes it natively.
    ``role_digests`` (``data.role_hashes``): each stage is fingerprinted by its own role's
    samples, not by the whole data's ``digest`` (runs whose card records none).
    ``stage_autocasts`` names a stage's own precision where it differs (a stage reused
    from a run under another one). A continued stage's adapter must still be there.
    """
    keys = StageKeys(config, digest, device, base_revision, dict(role_digests or {}))
    own = stage_autocasts or {}
    out: dict[str, str] = {}
    for index, stage in enumerate(stages_for(config.method)):
        init = start_fingerprint(config, stage, out)
        precision = own.get(stage.name) or autocast
        out[stage.name] = keys.fingerprint(index, stage, init=init, autocast=precision)
    return out


def continued(config: TrainConfig, stage: Stage) -> Path | None:
    """The finished adapter ``stage`` continues (``config.continue_from``), if any."""
    source = config.continue_from.get("global" if stage.name == "single" else stage.name)
    return None if source is None else Path(source).expanduser()


def start_dir(config: TrainConfig, stage: Stage, out: Path) -> Path | None:
    """The adapter ``stage`` starts from: the one it continues, else its GLPFT start in
    the run's folder ``out``; None for a fresh LoRA."""
    source = continued(config, stage)
    if source is not None:
        return source
    return out / stage.init_from if stage.init_from else None


def start_name(config: TrainConfig, stage: Stage) -> str | None:
    """What a stage's ``done`` record names as its start: the continued adapter's folder,
    else the stage it starts from (None: a fresh LoRA)."""
    source = continued(config, stage)
    return str(source) if source is not None else stage.init_from


def start_fingerprint(config: TrainConfig, stage: Stage, done: dict[str, str]) -> str | None:
    """The fingerprint of the adapter ``stage`` starts from: the finished adapter it
    continues, else its GLPFT start's (``done``: the fingerprints of this run's stages)."""
    source = continued(config, stage)
    if source is None:
        return done.get(stage.init_from) if stage.init_from else None
    try:
        fingerprint = json.loads((source / DONE).read_text()).get("fingerprint")
    except (OSError, ValueError):
        fingerprint = None
    if not fingerprint or not (source / "adapter_config.json").is_file():
        raise ConfigError(
            f"stage {stage.name} continues {source}, which is not a finished adapter "
            f"(a stage folder with adapter_config.json and a {DONE} file naming its "
            "fingerprint)"
        )
    return str(fingerprint)


@dataclass(frozen=True)
class StageKeys:
    """What decides every stage's weights in one run: its config, data and base."""

    config: TrainConfig
    digest: str  # the data's hash
    device: str
    base_revision: str
    role_digests: Mapping[str, str] = field(default_factory=dict)
    """Each role's samples' hash (``data.role_hashes``): where given, a stage's
    fingerprint names its own role's samples instead of the whole data (new runs)."""

    def fingerprint(
        self, index: int, stage: Stage, *, init: str | None, autocast: str | None = None
    ) -> str:
        """The fingerprint of stage ``index`` when it starts from the adapter
        fingerprinted ``init``; ``autocast`` replaces the config's resolved mixed
        precision (to look for the same stage trained under another one: :meth:`find`)."""
        config, device = self.config, self.device
        common = {k: v for k, v in config.to_dict().items() if k not in _NOT_WEIGHTS}
        parts = {
            **common,
            "data_hash": self.role_digests.get(stage.role, "")
            if self.role_digests
            else self.digest,
            "base_revision": self.base_revision,
            "role": stage.role,
            "stage_seed": config.seed + index,
            "epochs": config.epochs_for(stage.name),
            "warmup_ratio": config.warmup_for(stage.name),
            "lr": config.lr_for(stage.name),
            "max_samples": config.max_samples_for(stage.name),
            "device": device.split(":")[0],
            "dtype": config.resolved_dtype(device),
            "init": init,
        }
        if self.role_digests:
            parts["data_scope"] = "role"  # only then: older runs' fingerprints stay valid
        precision = autocast if autocast is not None else config.resolved_autocast(device)
        if precision != "none":
            # Only when on, so the fingerprints of runs from before the field stay valid.
            parts["autocast"] = precision
        if config.pack:
            parts["pack"] = True  # only when on, as autocast
        if stage.name in config.balance:
            # Only when set, so the fingerprints of runs from before the field stay valid.
            parts["balance"] = True
            if config.decision_shares:
                parts["decision_shares"] = config.decision_shares
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def find(
        self,
        index: int,
        stage: Stage,
        *,
        init: str | None,
        reusable: dict[str, Path],
        any_precision: bool = False,
    ) -> tuple[str, Path | None]:
        """The stage's fingerprint and the finished stage to copy for it (None: train it).

        With ``any_precision``, a finished stage that differs only in its mixed precision
        (e.g. the shipped stages trained with bfloat16 autocast, on a CPU without native
        bfloat16) is reused too; the fingerprint returned is then the reused stage's, so
        the stages trained on top of it are fingerprinted as starting from what they did
        start from.
        """
        own = self.fingerprint(index, stage, init=init)
        if own in reusable or not any_precision:
            return own, reusable.get(own)
        mine = self.config.resolved_autocast(self.device)
        for other in AUTOCASTS:
            if other in (mine, "auto"):
                continue
            fingerprint = self.fingerprint(index, stage, init=init, autocast=other)
            if fingerprint in reusable:
                return fingerprint, reusable[fingerprint]
        return own, None


def finished_stages(run: Path) -> dict[str, Path]:
    """A run directory's finished stages by fingerprint (from ``done`` or its card)."""
    run = Path(run).expanduser()
    found: dict[str, Path] = {}
    record: dict[str, Any] | None = None
    card = run / _card.CARD_JSON
    if card.is_file():
        record = json.loads(card.read_text())
    per_role = record is not None and bool((record.get("data") or {}).get("role_hashes"))
    for done in sorted(run.glob(f"*/{DONE}")):
        summary = json.loads(done.read_text())
        if summary.get("fingerprint"):
            found[summary["fingerprint"]] = done.parent
            if not per_role:
                continue
        if record is None:
            continue
        # a card with role hashes (``record_role_hashes`` for an older run) also finds
        # its stages by their per-role fingerprints
        fingerprint = _fingerprint_from_card(record, done.parent.name, summary, run)
        if fingerprint:
            found.setdefault(fingerprint, done.parent)
    return found


def record_role_hashes(run: Path, data: str | Path) -> dict[str, str]:
    """Write into an older run's card (``umiq-train.json``) the per-role hashes of the
    data it trained on, so its stages are found by their per-role fingerprints (a run
    on data that differs in one role's samples then reuses the others). ``data`` must
    be that data: its whole hash must equal the card's, else ConfigError."""
    from worker.training.data import data_hash, load_samples, role_hashes

    path = Path(run).expanduser() / _card.CARD_JSON
    record = json.loads(path.read_text())
    samples = load_samples(data)
    if data_hash(samples) != record["data"]["hash"]:
        raise ConfigError(f"{data} is not the data {path} names (its sha256 differs)")
    record["data"]["role_hashes"] = role_hashes(samples)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return dict(record["data"]["role_hashes"])


def _fingerprint_from_card(
    record: dict[str, Any], name: str, summary: dict[str, Any], run: Path | None = None
) -> str | None:
    """The fingerprint of stage dir ``name`` of an older run, from the run's card.

    The stage is matched by its name and by what its ``done`` file says (role, start,
    seed) against each method's stages; ``single`` in a GLPFT run is its global stage
    copied (same samples, seed and start), so it matches the ``single`` method. Each
    stage of the chain is fingerprinted under the mixed precision its ``done`` file in
    ``run`` names (a stage reused from a run under another one), else the card's.
    """
    try:
        config = TrainConfig.from_dict(record["config"])
        digest = record["data"]["hash"]
        role_digests = record["data"].get("role_hashes") or {}
        device = record["hardware"]["device"]
        base_revision = record["base"]["revision"]
    except (KeyError, TypeError, ConfigError):
        return None
    card_autocast = (record.get("precision") or {}).get("autocast")
    for method in METHODS:
        variant = replace(config, method=method)
        stages = stages_for(method)
        if not any(
            stage.name == name and _matches(stage, index, variant, summary)
            for index, stage in enumerate(stages)
        ):
            continue
        own = {stage.name: a for stage in stages if (a := _stage_autocast(run, stage.name))}
        try:
            found = fingerprints(
                variant,
                digest,
                device,
                base_revision,
                autocast=card_autocast,
                role_digests=role_digests,
                stage_autocasts=own,
            )
        except ConfigError:  # a continued stage's adapter is no longer there
            return None
        return found[name]
    return None


def _stage_autocast(run: Path | None, name: str) -> str | None:
    """The mixed precision a finished stage's ``done`` file names (``global`` may be
    shipped as ``single``), if any."""
    if run is None:
        return None
    for folder in (name, "single") if name == "global" else (name,):
        done = run / folder / DONE
        if done.is_file():
            autocast = json.loads(done.read_text()).get("autocast")
            if autocast:
                return str(autocast)
    return None


def _matches(stage: Stage, index: int, config: TrainConfig, summary: dict[str, Any]) -> bool:
    return (
        summary.get("role") == stage.role
        and summary.get("init_from") == start_name(config, stage)
        and summary.get("seed") == config.seed + index
    )


def copy_stage(source: Path, target: Path, summary_extra: dict[str, Any]) -> dict[str, Any]:
    """Copy a finished stage dir to ``target`` (``done`` written last); its new summary."""
    summary = {**json.loads((source / DONE).read_text()), **summary_extra}
    tmp = target.parent / f".{target.name}.copying"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(DONE))
    (tmp / DONE).write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return summary


def copy_metrics(source_run: Path, source_stage: str, out: Path, stage: str) -> None:
    """Append ``source_stage``'s loss records of ``source_run`` to ``out``'s as ``stage``.

    A stage dir copied under another name (the shipped ``single/`` is the run's global
    stage) has its records under the name it was trained as, ``stage``.
    """
    metrics = _card.read_metrics(source_run)
    records = [r for r in metrics if r.get("stage") == source_stage] or [
        r for r in metrics if r.get("stage") == stage
    ]
    if not records:
        return
    _card.prune_metrics(out, stage, 0)
    with (out / _card.METRICS).open("a") as fh:
        for record in records:
            fh.write(json.dumps({**record, "stage": stage}) + "\n")
