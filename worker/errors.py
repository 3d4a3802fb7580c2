"""Every error umiq raises, in one tree.

    UmiqError
    ├── ConfigError                 settings or files that cannot work
    │   └── RolloutFileError        a rollout settings file or value that does not validate
    ├── EnvelopeError               a task message that is not a valid envelope (names the field)
    ├── DeadLetterError             a dead letter that cannot be sent back as it came (truncated)
    ├── InflateError                a compressed message that inflates past the size limit
    ├── ModelError                  role models
    │   ├── ModelStoreError         the base checkpoint cannot be fetched or converted
    │   ├── AdapterError            an adapter that is corrupt or does not fit the base
    │   └── GrammarError            a tool schema the caller's GBNF grammar cannot express
    ├── AgentError                  the agent loop
    │   ├── ProtocolError           a role output that does not follow the α-UMi format
    │   └── Checkpointed            an episode stopped at a step boundary: the worker shuts down
    ├── AuditError                  the audit log
    │   └── ChainBroken             a row whose hash does not follow from its predecessor
    ├── BuildError                  a dataset build whose gold data fails its checker or leaks
    └── DecisionError               a human's decision that cannot be taken
        ├── ApprovalError           on a call waiting for approval (nothing pending, four eyes…)
        ├── HeldAnswerError         on an answer held for review (nothing held, bad verdict…)
        └── HumanOutcomeError       a person's outcome of a task that cannot be recorded

Errors of the packages below ``worker`` live in them, because those packages must not
import ``worker``: ``connectors.ConnectorError`` (``UnknownTool``, ``InvalidArguments``,
``ConnectorUnavailable``) and ``policies.SealError`` (a sealed audit value that cannot
be opened or made).
"""

from __future__ import annotations

import umiq_protocol as _protocol


class UmiqError(Exception):
    """Base class of every umiq error."""


class ConfigError(UmiqError):
    """Settings or files that cannot work as given."""


class RolloutFileError(ConfigError):
    """A rollout settings file or value that does not validate; the message names the key."""


class EnvelopeError(UmiqError):
    """A task message that is not a valid envelope; ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid envelope: {field}: {reason}")


class DeadLetterError(UmiqError):
    """A dead letter that cannot be replayed: it keeps only the first bytes of a body over
    ``UMIQ_MAX_MESSAGE_BYTES`` (``worker.deadletter``)."""


class InflateError(UmiqError, ValueError):
    """A compressed message body that inflates past ``UMIQ_MAX_MESSAGE_BYTES``, or is not
    of its compression (``worker.inflate``); kombu records it as the message's decode
    error and the consumer dead-letters the message as it came."""


class ModelError(UmiqError):
    """A role model cannot be loaded or run."""


class ModelStoreError(ModelError):
    """The base checkpoint cannot be fetched or converted."""


class AdapterError(ModelError):
    """An adapter is corrupt or does not fit the loaded base model."""


class GrammarError(ModelError, ValueError):
    """A tool schema uses something ``worker.models.gbnf`` cannot turn into GBNF (also a
    ``ValueError``, as it was before it joined the tree)."""


class AgentError(UmiqError):
    """The agent loop cannot go on."""


class ProtocolError(AgentError, _protocol.ProtocolError):
    """A role output that does not follow the α-UMi format (also the pure protocol
    package's ``umiq_protocol.ProtocolError``, which ``worker.agent.protocol`` turns into
    this one)."""


class Checkpointed(AgentError):
    """The worker is shutting down: the episode stopped before its next model step, every
    step so far committed (a ``shutdown`` policy step says where). The task goes back to
    the queue and resumes by replay on the next worker (``worker.shutdown``)."""

    def __init__(self, task_id: str, after_step: int) -> None:
        self.task_id = task_id
        self.after_step = after_step
        super().__init__(
            f"task {task_id!r} stopped after step {after_step}: the worker is shutting down"
        )


class AuditError(UmiqError):
    """The audit log cannot be written or read."""


class ChainBroken(AuditError):
    """A row of the audit chain whose hash does not follow from its predecessor."""

    def __init__(self, table: str, seq: int, reason: str) -> None:
        self.table = table
        self.seq = seq
        self.reason = reason
        super().__init__(f"audit chain broken at {table} row seq={seq}: {reason}")


class BuildError(UmiqError):
    """The data cannot be built as promised (a checker failed, a split leaks)."""


class DecisionError(UmiqError):
    """A human's decision (an approval, a held answer's release) that cannot be taken."""


class ApprovalError(DecisionError):
    """An approval decision that cannot be taken (nothing pending, already decided…)."""


class HeldAnswerError(DecisionError):
    """A decision on a held answer that cannot be taken (nothing held, already decided…)."""


class HumanOutcomeError(DecisionError):
    """A human outcome that cannot be recorded (unknown task, not routed to people…)."""
