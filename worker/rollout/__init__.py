"""Gradual rollout per department (DESIGN §8): the one place that decides a task's mode.

``decide`` (pure) turns a department's live settings and a task key into a ``Rollout``;
``begin`` does it once per task from the live copy (``RolloutStore``, the audit log's
``rollout_change`` rows) and records it on the task; ``GatedToolbox`` stops writes under a
kill switch and dry-runs them in shadow; ``for_humans`` and ``record_human`` hand tasks
to people and store what they did, ``record_verdict`` whether a result was right
(``record_checked`` a world's checker's, with ``make_shadow_writes`` to check a shadow run
as if its writes were made); ``report`` gives the figures that decide a promotion.
"""

from worker.rollout.checked import make_shadow_writes, record_checked, shadow_result
from worker.rollout.config import (
    FILE_VERSION,
    GLOBAL,
    RolloutFile,
    RolloutFileError,
    load_file,
    parse,
    validate_department,
)
from worker.rollout.decide import MODES, Mode, Rollout, bucket, decide, task_key
from worker.rollout.gate import GatedToolbox
from worker.rollout.human import (
    HANDLED_BY_HUMAN,
    NOT_AUTOMATED,
    HumanOutcomeError,
    agreement,
    record_human,
)
from worker.rollout.store import Live, RolloutStore, store_for
from worker.rollout.task import CONTEXT_KEY, TaskRollout, begin, for_humans
from worker.rollout.verdict import record_verdict

__all__ = [
    "CONTEXT_KEY",
    "FILE_VERSION",
    "GLOBAL",
    "HANDLED_BY_HUMAN",
    "MODES",
    "NOT_AUTOMATED",
    "GatedToolbox",
    "HumanOutcomeError",
    "Live",
    "Mode",
    "Rollout",
    "RolloutFile",
    "RolloutFileError",
    "RolloutStore",
    "TaskRollout",
    "agreement",
    "begin",
    "bucket",
    "decide",
    "for_humans",
    "load_file",
    "make_shadow_writes",
    "parse",
    "record_checked",
    "record_human",
    "record_verdict",
    "shadow_result",
    "store_for",
    "task_key",
    "validate_department",
]
