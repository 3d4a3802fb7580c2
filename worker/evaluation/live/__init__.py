"""Live evaluation: held-out tasks of the world (``UMIQ_WORLD``, Acme by default) end to
end through a real worker, scored on the systems' state.

``run_live`` starts the world's services (Acme: ERP over HTTP, HR database, SMTP mail,
in ``<work>/acme``; see ``worker.world``), a ``umiq worker`` subprocess consuming from
the broker (the embedded SQLite broker in ``<work>``, or ``UMIQ_BROKER_URL`` /
``UMIQ_DATABASE_URL`` from the environment), and then, one task at a time:

1. resets the systems to their seed, lets the scripted expert solve the task (its
   calls are the reference for the failure cause) and resets again;
2. sends the task as a Celery task with the normal envelope (the department the world
   names for its family: Acme's ``hr`` for tasks on the HR system, ``finance`` for the
   ERP ones);
3. waits for the result, reads the task's audit trail and scores it with the world's
   checker (``World.check``) against the systems' state;
4. classifies a failure (``worker.evaluation.causes``);
5. records the score on the task's chain as the checker's verdict (``record_score``,
   ``worker.rollout.record_checked``): ``umiq rollout report`` shows its pass rate.

Tasks run strictly one after another: the next reset would otherwise change the
systems under a running task. A task passes when its episode ended of its own
(``answered`` or ``gave_up``) and the checker passes: a give-up task whose episode hit
the step limit wrote nothing and said nothing, but did not give up.

Before the tasks, a warm-up message for a department with no tools makes the worker load
its role models (the episode refuses at once, touching no system), so the first task's
wall time is not the model's load time.

Each run gets its own queues (``umiq.eval.<run>.<n>``; on RabbitMQ they are deleted
afterwards) and, with the embedded default, its own broker and audit files in ``<work>``
(``OUT/work``), kept for inspection. On Postgres the audit schema must exist first
(``umiq db upgrade``). A task with no result within its timeout (default
``task_timeout``: 300 s + 180 s per allowed step) is recorded as ``error``; the worker is
killed and, if tasks remain, replaced by a fresh one on fresh queues.

Tasks come from the world's ``split`` (``World.draw`` with ``per_family`` instances per
family: the first ``per_family`` of what ``umiq data build --seed S`` puts in that split,
e.g. its whole ``test.json`` for ``--per-family 12``), ordered round-robin over families
so that ``limit`` N covers N families.

The package's modules, one reason to change each: ``tasks`` (which tasks, and their gold
trajectories for ``eval static``), ``harness`` (the worker, the queues and the run),
``scoring`` (one task's verdict and cause, the summary) and ``output`` (``live.json``).
"""

from worker.evaluation.live.harness import (
    TIMEOUT_BASE_S,
    TIMEOUT_PER_STEP_S,
    WARMUP_DEPARTMENT,
    Hooks,
    LiveConfig,
    run_live,
    task_timeout,
)
from worker.evaluation.live.output import FORMAT_VERSION, LIVE_FILE, LiveResult
from worker.evaluation.live.scoring import (
    PASSING_OUTCOMES,
    UNBACKED,
    LiveTask,
    record_score,
    score_task,
    summarize,
)
from worker.evaluation.live.tasks import choose_families, select_tasks, write_split_trajectories

__all__ = [
    "FORMAT_VERSION",
    "LIVE_FILE",
    "PASSING_OUTCOMES",
    "TIMEOUT_BASE_S",
    "TIMEOUT_PER_STEP_S",
    "UNBACKED",
    "WARMUP_DEPARTMENT",
    "Hooks",
    "LiveConfig",
    "LiveResult",
    "LiveTask",
    "choose_families",
    "record_score",
    "run_live",
    "score_task",
    "select_tasks",
    "summarize",
    "task_timeout",
    "write_split_trajectories",
]
