"""Settings, read from the environment with the ``UMIQ_`` prefix.

With nothing set everything runs embedded on one machine: the broker is SQLAlchemy over
SQLite, results and the audit log are SQLite files under the data dir, models run on the
CPU. ``UMIQ_BROKER_URL=amqp://…`` and ``UMIQ_DATABASE_URL=postgresql+psycopg://…`` move
to RabbitMQ and Postgres.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.world import DEFAULT_WORLD, world_settings

Mode = Literal["off", "shadow", "review", "auto"]

DEFAULT_BASE = "smollm2-135m-instruct"
#: GLPFT role adapters trained by ``umiq train --preset demo`` on the Acme split.
SHIPPED_ADAPTERS = Path(__file__).resolve().parent / "models" / "shipped" / "acme-demo"


class DepartmentSettings(BaseModel):
    """One department's rollout settings (DESIGN §8): mode, tools, queue, adapter pin.

    These are the defaults; the live copy is in the database (``umiq rollout``), read
    per task by ``worker.rollout``, the one place that decides a task's mode.
    """

    mode: Mode = "auto"
    percent: float = Field(default=100.0, ge=0, le=100)
    """In ``auto`` mode, the share of tasks that run ``auto`` (the rest ``review``), by
    sticky bucketing on a hash of the task key: raising it keeps every key already in."""
    bucket_by: str | None = None
    """The envelope context field whose value is the task key for ``percent`` (e.g.
    ``vendor_id``: one vendor's tasks share a bucket); unset: the task id."""
    kill_switch: bool = False
    """On: every write of the department is stopped (checked before each write)."""
    human_queue: str | None = None
    """Where ``off`` and ``shadow`` tasks go for people (default ``umiq.human.<dept>``)."""
    tools: list[str] = Field(default_factory=list)
    """Tool names or glob patterns the department may use; empty means none (deny)."""
    may_write: bool = False
    queue: str | None = None
    """The queue of its tasks (default ``<Settings.queue>.<department>`` when
    ``Settings.department_queues`` is on, else the one queue)."""
    paused: bool = False
    """Its queue's workers take no tasks (``umiq rollout pause``); they wait on the queue."""
    adapter_version: str | None = None
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    """Approval rules, e.g. ``{"tool": "schedule_payment", "when": [["amount", ">", 50000]],
    "reason": "…"}``: matching calls wait for a human (``review`` mode holds every write).
    A rule may name its ``approvers`` and ask for ``distinct_approvers`` (four eyes)."""
    scope: bool = True
    """Hold writes the request does not ask for (tool and key arguments traceable to the
    request or the records it names; ``Settings.scope`` has the words per tool)."""


def world_departments(world: str | None) -> dict[str, DepartmentSettings]:
    """The departments world ``world`` runs with by default (none without a world)."""
    return {
        name: DepartmentSettings.model_validate(dept)
        for name, dept in world_settings(world).get("departments", {}).items()
    }


def _world_default(key: str) -> Any:
    """A default factory of setting ``key``: the configured world's (``Settings.world``)."""

    def factory(data: dict[str, Any]) -> Any:
        return dict(world_settings(data.get("world")).get(key, {}))

    return factory


def _default_data_dir() -> Path:
    return Path.cwd() / ".umiq"


class Settings(BaseSettings):
    """umiq's settings; every field can be set as ``UMIQ_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="UMIQ_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    broker_url: str | None = None
    result_backend: str | None = None
    database_url: str | None = None
    database_role: str | None = None
    """Postgres role the audit engine takes with ``SET ROLE`` on every new connection
    (e.g. ``umiq_worker``, created by migration 0002); the login user must be a member.
    ``umiq db upgrade`` ignores it: migrations run with the login user's (owner's) rights."""
    database_pool_size: int | None = Field(default=None, ge=1)
    """Connections the audit engine keeps open to Postgres (SQLAlchemy's ``pool_size``; up
    to as many again open beside them when all are busy). Unset: the worker's
    ``--concurrency`` under ``umiq worker`` (at least 5), SQLAlchemy's 5 elsewhere. Task
    leases use connections of their own (``worker.lease``), one per running episode, so
    Postgres' ``max_connections`` must allow twice the concurrency per worker, and more."""
    allow_privileged_login: bool = False
    """Start a worker on Postgres even when its login is a superuser, may become one or may
    change audit steps (``worker.login_gate``); it logs a warning at each start. For
    development and tests against a local superuser only, like Celery's ``C_FORCE_ROOT``:
    in production the worker logs in as its own role (``umiq db login-role``)."""
    keyring: str | None = Field(default=None, repr=False)
    """The key ring that seals sensitive audit fields, as JSON
    ``{"primary": kid, "keys": {kid: base64 of 32 bytes}}`` (``UMIQ_KEYRING``). Key material:
    keep it out of repr; set this or ``keyring_file``, not both."""
    keyring_file: Path | None = None
    """A file holding the key ring as that JSON (mode 0600). With neither set, the embedded
    default ``<data_dir>/keyring.json`` is created on first use."""

    queue: str = "umiq.tasks"
    department_queues: bool = False
    """Each department's tasks on a queue of its own, ``<queue>.<department>`` (or its
    ``queue``), for ``umiq worker --departments``; off: one queue for all (the demo)."""
    dead_letter_queue: str = "umiq.dead"
    max_redeliveries: int = 3
    """How often a task message may come back after a run that did not finish (the worker
    died, lost its connection); the next delivery is dead-lettered with the reason."""
    max_message_bytes: int = Field(default=4 * 2**20, ge=1024)
    """The largest task message body the worker reads (4 MiB; an envelope is a request of
    at most 4,000 characters and its context). A larger one is refused before it is decoded,
    and its dead letter keeps only its first bytes (``worker.deadletter.KEPT_HEAD``) with the
    SHA-256 of the whole: a sealed letter is about 1.8 times the body it keeps, so bodies up
    to this limit seal below RabbitMQ's ``max_message_size`` (128 MiB before 4.0, 16 MiB
    since)."""
    queue_type: Literal["quorum", "classic"] = "quorum"
    """RabbitMQ's type for the work queue: ``quorum`` counts deliveries (``x-delivery-count``)
    and bounds them; ``classic`` for a queue declared classic before (RabbitMQ refuses to
    change a queue's type: delete it, or keep this)."""
    broker_heartbeat: float = 60.0
    """AMQP heartbeat interval in seconds (0 turns heartbeats off). The worker's consumer
    thread answers them while episodes run in the pool's threads, so a long episode on a
    CPU keeps its connection; RabbitMQ drops a peer after two missed intervals."""
    shutdown_finish_s: float = Field(default=0.0, ge=0.0)
    """After a warm shutdown began (SIGTERM), how long a running episode may go on to
    finish; past it, the episode stops before its next model step and its task goes back
    to the queue, to resume by replay (``worker.shutdown``). 0: stop at the next step."""

    model_dir: Path | None = None
    """Where fetched and converted base checkpoints live (default: ``<data_dir>/models``)."""
    base_model: str = DEFAULT_BASE
    """A name in the model store, or the path of a local Hugging Face checkpoint dir."""
    adapters_dir: Path | None = None
    """Directory with ``planner/``, ``caller/``, ``summarizer/`` LoRA adapters, if any."""
    shipped_adapters: bool = True
    """Use the adapters shipped with umiq when ``adapters_dir`` is unset and the base is
    the default one; ``UMIQ_SHIPPED_ADAPTERS=0`` runs the untuned base."""
    agent: Literal["multi", "single"] = "multi"
    """``multi``: planner, caller and summarizer (α-UMi); ``single``: one backbone model
    writes thought, call and conclusion (the single-LLM baseline; its adapter is
    ``single/`` or ``global/`` under ``adapters_dir``)."""
    role_checkpoints: dict[str, Path] | None = None
    """Three full checkpoints, one per role (the α-UMi published form)."""
    role_model: str | None = None
    """A role-model plug-in, ``"package.module:factory"``: ``factory(settings)`` returns the
    RoleModel (a remote backend, a deterministic model for tests). Imported on first use;
    when set, the base, adapter and checkpoint settings are the factory's to read."""
    model_backend: Literal["hf", "openai"] = "hf"
    """``hf``: the model runs in the worker process (transformers + peft); ``openai``: an
    inference engine serves it over its OpenAI-compatible completions API
    (``engine_url``; ``umiq models serve`` starts llama.cpp's server, see docs/serving.md)."""
    engine_url: str = "http://127.0.0.1:8080"
    """The engine's base URL (``/v1/completions`` is appended) for ``model_backend=openai``."""
    engine_dialect: Literal["llama.cpp", "vllm"] = "llama.cpp"
    """How the engine takes the role's adapter and the caller's grammar."""
    engine_timeout_s: float = Field(default=300.0, gt=0)
    """Seconds one completion may take (queued behind other requests included)."""
    engine_concurrency: int = Field(default=16, ge=1)
    """Requests this process keeps in flight to the engine (match its ``--parallel``)."""
    engine_slots: str = Field(default="all", pattern=r"^(all|off|\d+-\d+)$")
    """llama.cpp: the engine slots this process's requests take, the client picking one per
    request (``id_slot``): a slot that last served the same role, with the longest shared
    prefix, so the prompt cache survives an episode's adapter switches
    (``worker.models.slots``). ``all``: every slot (one process per engine); ``A-B``: slots
    A to B (several worker processes on one engine: give each its own range); ``off``: the
    engine places requests itself."""
    engine_home: Path | None = None
    """llama.cpp's home for ``umiq models build-engine`` / ``export-gguf`` / ``serve``: its
    source (``src/``), CMake build (``build/``), binaries (``bin/``) and ``engine.json``
    (default: ``<data_dir>/engines/llama.cpp``). One home can serve several checkouts
    (``make test`` builds into ``~/.cache/umiq/engines/llama.cpp``); the GGUF files stay
    under ``<data_dir>/engines/gguf``, as they come from the checkout's adapters."""
    model_max_batch: int = Field(default=16, ge=1)
    """Rows one in-process ``generate`` batch holds at most (``model_backend=hf``): the
    requests of the worker's concurrent episodes share batches up to this size."""
    model_batch_wait_ms: float = Field(default=5.0, ge=0)
    """How long an in-process batch waits for other episodes' requests before it runs,
    counted from its oldest request (0: run what is queued at once). Requests queued
    while a batch runs join the next batch without waiting."""
    device: str = "cpu"
    max_steps: int = 12
    max_new_tokens: int = 160
    prompt_window: int | None = None
    """Prompt tokens the role models see: the last ones, after a leading BOS, as training
    cuts a prompt longer than its ``max_length``; unset sends prompts whole."""
    prompt_view: Literal["compact", "alpha-umi"] | None = None
    """How prompts show tools: ``compact`` (the ``tool_top_k`` tools retrieved for the
    request, one short line each, what umiq's adapters are trained on) or ``alpha-umi``
    (every tool as a JSON doc, the reference form of ToolBench-trained models)."""
    tool_top_k: int | None = Field(default=None, ge=1)
    """Tools the compact view shows per step (plus any the task already called).

    Both unset (the default): the view the served adapters were trained on, as their
    training record (``umiq-train.json``) states it, else ``compact`` with 6 tools; set,
    they override it (``worker.runtime.prompt_view``)."""

    ground_arguments: bool = True
    """Whether the caller's grammar admits, for an id argument (an id-form pattern such as
    ``^INV-\\d{4}$``), only ids the task has seen in its request or in responses
    (``worker.agent.grounding``). Off (``UMIQ_GROUND_ARGUMENTS=0``) the schema's pattern
    alone applies: for measuring what grounding does."""
    follow_named_tool: bool = False
    """When the planner's thought names exactly one tool the task may call and that tool is
    offered, the caller's grammar is that tool alone; when it ends naming a tool the step
    does not offer (``I'll use search.``), the planner chooses again among the offered
    ones (``worker.agent.named``). Off by default: with the shipped v10 set it changed
    nothing on the whole Acme test split (16 of 60 either way, docs/results)."""
    planner_recap: bool = True
    """Serving a model set trained on umiq's own data (the compact prompt view), the
    planner's thought after an observation starts with that observation's recap, as every
    training thought does ("INV-1008 came back.", "That call failed.";
    ``umiq_protocol.recap_of``); the model writes the rest. ``UMIQ_PLANNER_RECAP=0`` lets
    the model write it (the α-UMi view never gets one)."""

    world: str | None = DEFAULT_WORLD
    """The back office that evaluation, data building and the demo work on, and whose
    defaults the three settings below take when unset: an alias of
    ``worker.world.WORLDS`` (``acme``) or ``"package.module:world"`` (``worker.world``).
    Empty: none (no default departments; every tool's response fully minimized)."""
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Connectors by name, e.g. ``{"erp": {"kind": "http", "base_url": "http://127.0.0.1:8701"}}``."""
    departments: dict[str, DepartmentSettings] = Field(
        default_factory=lambda data: world_departments(data.get("world"))
    )
    """Departments by name; default: the world's (Acme's finance and hr)."""
    minimization: dict[str, list[str] | None] = Field(
        default_factory=_world_default("minimization")
    )
    """Per tool (name or ``connector:glob``), the response fields the model may see; None
    keeps all. Values it sees are pseudonymized unless a path is in ``pii_allow_raw``."""
    scope: dict[str, Any] = Field(default_factory=_world_default("scope"))
    """Per write tool (name or ``connector:glob``), the words of a request that ask for it
    (``{"schedule_payment": ["pay", "schedul"]}``), or ``{"asks": [...], "keys": [...]}``
    to name its key arguments too (default: ``id``, ``*_id``, ``to``, ``cc``, ``bcc``)."""
    pii_allow_raw: dict[str, list[str]] = Field(default_factory=dict)
    """Per tool, response fields whose values the model may see raw (a policy decision
    that the audit records)."""
    pii_known_names: list[str] = Field(default_factory=list)
    """Full names of people in the systems' records, detected as personal data."""
    pii_known_names_file: Path | None = None
    """A file with one known name per line (e.g. exported from HR), read at start."""

    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (console on a terminal, JSON otherwise)."""
    log_level: str = "INFO"

    metrics_port: int | None = None
    """``umiq worker`` serves Prometheus metrics on this port at ``/metrics``; unset: off."""
    metrics_addr: str = "127.0.0.1"
    """The address the metrics endpoint binds (``0.0.0.0`` in a container)."""
    metrics_scan_s: float = 15.0
    """How often a scrape reads the audit log (approvals waiting, held answers) and the
    broker (queue depth) anew; scrapes in between answer the figures last read."""

    decision_key_file: Path | None = None
    """The private Ed25519 key (``umiq audit keygen``) with which the deciding services,
    the CLI and the review page, sign each human decision. Never give it to the worker.
    Unset: ``<data_dir>/decision.key``, created (0600, with ``decision.pub``) on first
    use: on one box the worker's data dir then holds it (health warns; trial only)."""
    decision_public_key_file: Path | None = None
    """Its public key: the worker resumes only approvals signed by it and ``umiq audit
    verify`` checks every decision against it. Unset: the public half of
    ``decision_key_file`` when that is set, else ``<data_dir>/decision.pub`` (the pair
    created on first use), so unsigned or forged approvals are refused by default."""
    pseudonym_key: str | None = Field(default=None, repr=False)
    """The secret of the keyed hash that stands for ``requested_by`` in the plain task
    row (16 characters or more); the raw name is sealed. Key material. Unset: a random
    secret in ``<data_dir>/pseudonym.key`` (0600), created on first use; the worker, the
    CLI and the review page must share it."""

    review_users: dict[str, str] = Field(default_factory=dict, repr=False)
    """Who may log in to the review page (``umiq review serve``, HTTP basic auth): user
    name → password hash from ``umiq review hash-password`` (``scrypt$…``), or a plain
    password for a trial. The user name is what the audit log records as the approver."""
    review_token: str | None = Field(default=None, repr=False)
    """A bearer token for read-only access to the review page (scripts, monitoring); it
    names no person, so it cannot approve or reject. Key material: keep it out of repr."""
    review_auditors: list[str] = Field(default_factory=list)
    """Review users who may open sealed fields on a task's trace (with the key ring)."""
    review_secret: str | None = Field(default=None, repr=False)
    """The secret that signs the review page's CSRF and flash cookies (32 characters or
    more, e.g. ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``). Set it
    when several review processes serve one page (behind a load balancer) or open forms
    should survive a restart; unset, each process draws its own. Key material."""

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"

    @property
    def resolved_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.database_url:
            return "db+" + self.database_url
        return f"db+sqlite:///{self.data_dir / 'results.sqlite'}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'audit.sqlite'}"

    @property
    def resolved_model_dir(self) -> Path:
        return (self.model_dir or self.data_dir / "models").expanduser().resolve()

    @property
    def resolved_engine_home(self) -> Path:
        """llama.cpp's home: ``engine_home``, else ``<data_dir>/engines/llama.cpp``."""
        home = self.engine_home or self.data_dir / "engines" / "llama.cpp"
        return home.expanduser().resolve()

    @property
    def resolved_adapters_dir(self) -> Path | None:
        """The adapters in use: ``adapters_dir``, else the shipped ones (default base only)."""
        if self.adapters_dir is not None:
            return self.adapters_dir
        if self.shipped_adapters and self.base_model == DEFAULT_BASE and SHIPPED_ADAPTERS.is_dir():
            return SHIPPED_ADAPTERS
        return None

    @property
    def embedded(self) -> bool:
        """True when the audit database is the embedded SQLite file."""
        return self.database_url is None

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache with ``get_settings.cache_clear()``)."""
    return Settings()
