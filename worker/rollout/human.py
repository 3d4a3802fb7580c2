"""Tasks that people do: the department's human queue, and the human's outcome.

An ``off`` task, and a ``shadow`` task once the agent has run, goes to the department's
human queue (a durable queue on the broker, ``umiq.human.<dept>``) as the envelope the
producer sent plus the rollout decision; the task ends ``not_automated``. When the person
is done, ``record_human`` stores their outcome (sealed: it may hold personal data) as the
task's last ``outcome`` step, ``handled_by_human``, with the agreement between what the
agent did in shadow and what the person did: the same outcome, the same writes, the
same facts in the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kombu import Exchange, Queue

from worker.audit.events import OutcomeDetails, outcome_of
from worker.audit.protocol import AuditLogProtocol
from worker.errors import HumanOutcomeError
from worker.rollout.decide import Rollout

NOT_AUTOMATED = "not_automated"
HANDLED_BY_HUMAN = "handled_by_human"
HUMAN_EXCHANGE = "umiq.human"
HUMAN_OUTCOMES = ("answered", "gave_up")
"""What a person may report: they answered (and made the writes they list), or the task
could not or should not be done."""


def human_queue(name: str) -> Queue:
    return Queue(
        name,
        Exchange(HUMAN_EXCHANGE, type="direct", durable=True),
        routing_key=name,
        durable=True,
    )


def send_to_humans(app: Any, envelope: Mapping[str, Any], rollout: Rollout) -> str:
    """Publish the task to the department's human queue; return the queue's name."""
    name = rollout.human_queue or f"umiq.human.{rollout.department}"
    queue = human_queue(name)
    body = {**dict(envelope), "rollout": rollout.as_dict()}
    with app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            serializer="json",
            delivery_mode=2,
            retry=True,
        )
    return name


def not_automated(task_id: str, rollout: Rollout, queue: str, shadow: str | None) -> OutcomeDetails:
    """The outcome step's details, with the producer's reason."""
    what = (
        f"the agent ran in shadow (its writes dry-run, outcome {shadow}); "
        if shadow is not None
        else "no model ran; "
    )
    return OutcomeDetails(
        outcome=NOT_AUTOMATED,
        reason=f"department {rollout.department!r} is not automated (rollout mode "
        f"{rollout.mode}): {what}the task went to people on queue {queue}",
        queue=queue,
        mode=rollout.mode,
        shadow_outcome=shadow,  # left out when None
    )


# -- agreement (pure) -------------------------------------------------------------------


def _normal(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, str):
        return value.strip()
    return value


def write_key(tool: str, arguments: Mapping[str, Any]) -> str:
    """A write as compared: the tool and its arguments, numbers and spacing normalized."""
    return json.dumps([tool, _normal(dict(arguments))], sort_keys=True, ensure_ascii=False)


_FACT = re.compile(
    r"\b[A-Z]{1,5}-\d+\b"  # record ids: INV-1012, E-1001
    r"|\b\d{4}-\d{2}-\d{2}\b"  # dates
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\d[\d,]*(?:\.\d+)?"  # numbers, thousands separators allowed
)


def facts(text: str) -> set[str]:
    """The checkable facts of an answer: record ids, dates, e-mail addresses, numbers."""
    found = set()
    for match in _FACT.finditer(text or ""):
        fact = match.group().rstrip(".,")
        if fact[0].isdigit() and "-" not in fact:
            fact = fact.replace(",", "")
            if "." in fact:
                fact = fact.rstrip("0").rstrip(".")
        found.add(fact.casefold())
    return found


def agreement(
    agent_outcome: str | None,
    agent_answer: str,
    agent_writes: Sequence[tuple[str, Mapping[str, Any]]],
    human_outcome: str,
    human_answer: str,
    human_writes: Sequence[tuple[str, Mapping[str, Any]]],
) -> dict[str, Any]:
    """How the agent's shadow run compares with what the person did.

    ``outcome``: both answered, or both did not; ``writes``: the same writes (tool and
    arguments, as a set); ``answer``: every fact of the person's answer (ids, dates,
    amounts, addresses) is in the agent's (None when the person's has none or the agent
    did not run); ``agree``: all of those that could be compared.
    """
    if agent_outcome is None:  # off: nothing to compare
        return {"outcome": None, "writes": None, "answer": None, "agree": None}
    outcome = (agent_outcome == "answered") == (human_outcome == "answered")
    writes = {write_key(t, a) for t, a in agent_writes} == {
        write_key(t, a) for t, a in human_writes
    }
    wanted = facts(human_answer)
    answer = None if not wanted else wanted <= facts(agent_answer)
    parts = [p for p in (outcome, writes, answer) if p is not None]
    return {
        "outcome": outcome,
        "writes": writes,
        "answer": answer,
        "agree": all(parts),
        "missing_facts": sorted(wanted - facts(agent_answer)) if wanted else [],
    }


def parse_write(text: str) -> tuple[str, dict[str, Any]]:
    """``tool {json arguments}`` from the command line."""
    tool, _, raw = text.strip().partition(" ")
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise HumanOutcomeError(f"--write {text!r}: the arguments are not JSON ({exc})") from exc
    if not tool or not isinstance(arguments, dict):
        raise HumanOutcomeError(f"--write {text!r}: expected TOOL {{json arguments}}")
    return tool, arguments


# -- recording --------------------------------------------------------------------------


def shadow_run(audit: AuditLogProtocol, task_id: str, steps: Sequence[Any]) -> dict[str, Any]:
    """What the agent did in shadow: its outcome, answer (raw) and dry-run writes (raw)."""
    from worker.agent.guard import reveal

    outcomes = [(s, ended) for s in steps if (ended := outcome_of(s)) is not None]
    people = (NOT_AUTOMATED, HANDLED_BY_HUMAN)  # the agent's own end is before these
    agent, ended = next(
        ((s, e) for s, e in reversed(outcomes) if e.outcome not in people), (None, None)
    )
    writes = []
    for call in audit.tool_calls(task_id):
        if call.effect != "write" or not call.ok:
            continue
        opened = audit.unseal(call)
        response = opened.response if isinstance(opened.response, dict) else {}
        if response.get("dry_run"):
            writes.append((call.tool, dict(opened.request)))
    return {
        "outcome": ended.outcome if ended else None,
        "answer": reveal(audit, task_id, agent.output) if agent else "",
        "writes": writes,
    }


def record_human(
    audit: AuditLogProtocol,
    task_id: str,
    *,
    by: str,
    outcome: str,
    answer: str = "",
    writes: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> OutcomeDetails:
    """Store what a person did with a task routed to people, and the agreement; return
    the outcome step's payload (``handled_by_human``)."""
    if outcome not in HUMAN_OUTCOMES:
        raise HumanOutcomeError(f"outcome must be one of {', '.join(HUMAN_OUTCOMES)}")
    if not by.strip():
        raise HumanOutcomeError("a human outcome needs the name of who did the task (--by)")
    task = audit.task(task_id)
    if task is None:
        raise HumanOutcomeError(f"no task {task_id!r} in the audit log")
    steps = audit.steps(task_id)
    last = next((e for s in reversed(steps) if (e := outcome_of(s)) is not None), None)
    if last is None or last.outcome != NOT_AUTOMATED:
        state = last.outcome if last is not None else "still running"
        raise HumanOutcomeError(
            f"task {task_id!r} is not waiting for people (its outcome is {state}); only "
            "tasks of departments in off or shadow are"
        )
    mode = last.mode
    agent = shadow_run(audit, task_id, steps) if mode == "shadow" else None
    agreed = agreement(
        agent["outcome"] if agent else None,
        agent["answer"] if agent else "",
        agent["writes"] if agent else [],
        outcome,
        answer,
        writes,
    )
    details = OutcomeDetails(
        outcome=HANDLED_BY_HUMAN,
        reason=f"done by {by.strip()} ({outcome})",
        by=by.strip(),
        mode=mode,
        human_outcome=outcome,
        human_writes=[tool for tool, _ in writes],
        agreement=agreed,
    )
    index = max((s.index for s in steps), default=0) + 1
    audit.append_step(
        task_id=task_id,
        index=index,
        kind=OutcomeDetails.KIND,
        output="",
        details=details.to_details(),
        sealed={"human": {"answer": answer, "writes": [[t, dict(a)] for t, a in writes]}},
    )
    return details
