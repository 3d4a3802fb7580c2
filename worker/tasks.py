"""The Celery task: validate the envelope, decide the rollout mode, run the episode."""

from __future__ import annotations

from typing import Any

import structlog
from celery.exceptions import Ignore
from celery.signals import task_postrun, task_prerun

from connectors import ConnectorError
from worker import rollout, runtime, shutdown
from worker.agent.episode import Episode
from worker.agent.guard import Guard, restore_tokens
from worker.agent.replay import cut_off_after_approval
from worker.audit.log import AuditLog
from worker.audit.protocol import AuditLogProtocol
from worker.audit.requester import SEALED_FIELD, pseudonym, pseudonym_key, without_sealed
from worker.celery_app import RESUME_TASK_NAME, TASK_NAME, app
from worker.deadletter import refuse
from worker.envelope import Envelope, parse_envelope
from worker.errors import AuditError, Checkpointed, ConfigError, EnvelopeError, ModelError
from worker.lease import task_lease

log = structlog.get_logger("umiq.tasks")


@task_prerun.connect
def _bind_context(task_id: str | None = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(celery_id=task_id)


@task_postrun.connect
def _unbind_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def _episode(env: Envelope, guard: Guard, audit: AuditLogProtocol, toolbox: Any = None) -> Episode:
    """An episode of ``env`` with this process's model, toolbox and settings."""
    settings = runtime.settings()
    return Episode(
        env,
        model=runtime.role_model(),
        toolbox=toolbox if toolbox is not None else runtime.toolbox(),
        guard=guard,
        audit=audit,
        max_steps=settings.max_steps,
        max_new_tokens=settings.max_new_tokens,
        agent=settings.agent,
        view=runtime.prompt_view(),
        ground_arguments=settings.ground_arguments,
        follow_named_tool=settings.follow_named_tool,
        recap=settings.planner_recap,
        should_stop=shutdown.checker(settings.shutdown_finish_s),
    )


def _run_episode(env: Envelope, audit: AuditLog) -> dict[str, Any]:
    """How the task ended, shaped like ``EpisodeResult.as_dict()``: this run's, or the
    recorded outcome of a task that had already ended, or the hand-off to people.
    ``audit`` is the SQL log (or its metered wrapper): the lease takes its engine."""
    # One runner per task: a duplicate delivery waits here while the first one runs,
    # then finds its outcome below instead of running the task again.
    with task_lease(audit.engine, env.task_id) as waited:
        if waited > 1:
            log.info("task.lease_waited", waited_s=round(waited, 1))
        return _run_leased(env, audit)


def _run_leased(env: Envelope, audit: AuditLogProtocol) -> dict[str, Any]:
    finished = audit.outcome(env.task_id)
    if finished is not None:  # a redelivered task that already ended: never run it twice
        log.info("task.already_finished", outcome=finished["outcome"])
        return finished
    settings = runtime.settings()
    task = audit.task(env.task_id)
    # The task's mode, decided once (a redelivery reads the decision recorded on the task).
    plan = rollout.begin(
        audit,
        settings,
        department=env.department,
        task_id=env.task_id,
        context=env.context,
        recorded=task.context if task is not None else None,
    )
    structlog.contextvars.bind_contextvars(rollout_mode=plan.rollout.mode)
    guard = Guard.for_department(
        settings,
        env.department,
        mapping=restore_tokens(audit, env.task_id),
        rollout=plan.rollout,
        department_settings=plan.department,
    )
    if task is None:
        # The task row is in plain text: it holds the tokenized query and context; the
        # raw query is sealed with the episode's first policy step.
        # requested_by too: a keyed hash in the row, the name sealed (UMIQ_PSEUDONYM_KEY,
        # else <data_dir>/pseudonym.key, created on first use).
        key = pseudonym_key(settings)
        audit.append_task(
            task_id=env.task_id,
            department=env.department,
            query=guard.open_request(env.query),  # the episode's user turn: tokenized once
            requested_by=pseudonym(env.requested_by, key),
            context=plan.context(guard.tokenize(env.context)),
            sealed_context={SEALED_FIELD: env.requested_by},
        )
    if not plan.rollout.runs_model:  # off: people do it, no model runs
        return rollout.for_humans(app, audit, env.model_dump(), plan.rollout)
    dept = plan.department
    if dept is not None and dept.adapter_version:
        _check_pin(env.department, dept.adapter_version, runtime.role_model().describe())
    episode = _episode(env, guard, audit, plan.toolbox(runtime.toolbox()))
    # from its start, or by replay when a run of it was cut off (its worker died)
    recorded = audit.steps(env.task_id) if task is not None else []
    log.info("task.started", mode=plan.rollout.mode, recorded=len(recorded))
    result = episode.start(recorded)
    if plan.rollout.to_humans:  # shadow: the agent's run is recorded, people do the task
        return rollout.for_humans(
            app, audit, env.model_dump(), plan.rollout, shadow_outcome=result.outcome
        )
    log.info("task.finished", outcome=result.outcome, steps=len(result.steps))
    return result.as_dict()


def _backoff(exc: BaseException, retries: int) -> float:
    """Seconds before the next try: doubling from 1 s, and never before an open circuit
    lets a call through again (a retry sooner would fail fast again)."""
    return max(float(2**retries), float(getattr(exc, "retry_after", 0.0)))


def _send_back(task: Any, stop: Checkpointed) -> Ignore:
    """Publish this delivery again as it came (same arguments, queue and retries count:
    a shutdown is neither a retry nor a redelivery) and have Celery ack this one.

    The copy goes out before the ack: a worker killed in between leaves two messages;
    one resumes the task, the other waits for its lease and finds it finished.
    """
    task.signature_from_request(task.request, retries=task.request.retries).apply_async()
    log.info("task.sent_back", after_step=stop.after_step, retries=task.request.retries)
    return Ignore(str(stop))


def _check_pin(department: str, pin: str, described: dict[str, Any]) -> None:
    """Refuse to run a pinned department's task on a model of another version.

    A ConfigError: the task is retried (another worker, one with that version, may take
    it) and then dead-lettered with this reason, never run on the wrong model.
    """
    served = described.get("version")
    if served == pin:
        return
    adapters = ", ".join(label for label in (described.get("adapters") or {}).values() if label)
    raise ConfigError(
        f"department {department!r} is pinned to model version {pin}; this worker serves "
        f"{served or 'a model that reports no version'} (base {described.get('base')}"
        f"{'; ' + adapters if adapters else '; no adapters'}): run it on a worker with "
        "that version (`umiq models show` prints a worker's), or change the pin"
    )


@app.task(name=TASK_NAME, bind=True, max_retries=3)
def run_task(self: Any, envelope: Any) -> dict[str, Any]:
    """Run one back-office task end to end and return how it ended."""
    audit = runtime.audit_log()
    try:
        env = parse_envelope(envelope)
    except EnvelopeError as exc:
        return refuse(
            app,
            envelope,
            reason=str(exc),
            field=exc.field,
            audit=audit,
            delivery_id=self.request.id,
        )
    structlog.contextvars.bind_contextvars(task_id=env.task_id, department=env.department)
    settings = runtime.settings()
    try:
        result = _run_episode(env, audit)
    except Checkpointed as stop:  # the worker is shutting down: resume elsewhere
        raise _send_back(self, stop) from stop
    except (AuditError, ModelError, ConfigError, ConnectorError, OSError) as exc:
        # Infrastructure trouble (database, model file, a dead service): retry with
        # backoff, then dead-letter with the reason.
        if self.request.retries < min(self.max_retries, settings.max_redeliveries):
            countdown = _backoff(exc, self.request.retries)
            log.warning("task.retry", error=str(exc), retries=self.request.retries, in_s=countdown)
            raise self.retry(exc=exc, countdown=countdown) from exc
        return refuse(
            app,
            envelope,
            reason=f"failed after retries: {exc}",
            field=None,
            audit=audit,
            delivery_id=self.request.id,
            task_id=env.task_id,
            own=True,
        )
    except Exception as exc:
        # A bug must not lose the task (Celery acks a failed late-ack task): keep the
        # message in the dead-letter queue with the reason, and audit it.
        log.exception("task.crashed")
        return refuse(
            app,
            envelope,
            reason=f"unexpected {type(exc).__name__}: {exc}",
            field=None,
            audit=audit,
            delivery_id=self.request.id,
            task_id=env.task_id,
            own=True,
        )
    return result


@app.task(name=RESUME_TASK_NAME, bind=True, max_retries=3)
def resume_task(self: Any, task_id: str, key: str) -> dict[str, Any]:
    """Go on with a task after a human approved its waiting call ``key``.

    The committed steps are replayed from the audit log (nothing is generated or
    called twice); a resume that finds the task no longer waiting does nothing.
    """
    from worker.gates.calls import approved_key

    audit = runtime.audit_log()
    structlog.contextvars.bind_contextvars(task_id=task_id)
    try:
        steps = audit.steps(task_id)
        ok, why = approved_key(steps, key)
        task = audit.task(task_id)
        # a resume that had begun when its worker died: this redelivery goes on by replay
        cut_off = not ok and cut_off_after_approval(steps, key)
        if not (ok or cut_off) or task is None:
            log.info("task.resume_skipped", key=key, reason=why or "unknown task")
            return audit.outcome(task_id) or {"task_id": task_id, "outcome": None, "reason": why}
        structlog.contextvars.bind_contextvars(department=task.department)
        settings = runtime.settings()
        forged = _forged_approval(settings, steps, key)
        if forged is not None:
            return _refuse_resume(audit, task_id, steps, key, forged)
        plan = rollout.begin(
            audit,
            settings,
            department=task.department,
            task_id=task_id,
            context=task.context,
            recorded=task.context,
        )
        structlog.contextvars.bind_contextvars(rollout_mode=plan.rollout.mode)
        env = Envelope(
            task_id=task.task_id,
            department=task.department,
            query=task.query,  # tokenized; the restored token map keeps its tokens
            requested_by=task.requested_by,
            context=without_sealed(task.context),
        )
        guard = Guard.for_department(
            settings,
            task.department,
            mapping=restore_tokens(audit, task_id),
            rollout=plan.rollout,
            department_settings=plan.department,
        )
        toolbox = plan.toolbox(runtime.toolbox())
        # the approved call, or, when a resume of it was cut off, by replay
        result = _episode(env, guard, audit, toolbox).resume(steps, key)
    except Checkpointed as stop:
        raise _send_back(self, stop) from stop
    except (AuditError, ModelError, ConfigError, ConnectorError, OSError) as exc:
        if self.request.retries < self.max_retries:
            log.warning("task.resume_retry", error=str(exc), retries=self.request.retries)
            raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
        log.error("task.resume_failed", error=str(exc))
        raise
    log.info("task.resumed", outcome=result.outcome, steps=len(result.steps))
    return result.as_dict()


def _forged_approval(settings: Any, steps: Any, key: str) -> str | None:
    """Why the approval of ``key`` is not signed by the decision key, or None (it is).

    The decision public key is ``UMIQ_DECISION_PUBLIC_KEY_FILE``, else the data dir's
    (``worker.audit.decisions.verifier``, created on first use): never unchecked."""
    from worker.audit.decisions import verifier
    from worker.gates.calls import forged_approval

    return forged_approval(steps, key, verifier(settings))


def _refuse_resume(
    audit: AuditLogProtocol, task_id: str, steps: Any, key: str, why: str
) -> dict[str, Any]:
    """End the task ``refused`` with ``why`` on the chain: the held call is never made."""
    from worker.audit.events import OutcomeDetails

    log.warning("task.resume_refused", key=key, reason=why)
    audit.append_step(
        task_id=task_id,
        index=max(s.index for s in steps) + 1,
        kind="outcome",
        output="",
        details=OutcomeDetails(outcome="refused", reason=why, key=key).to_details(),
    )
    return audit.outcome(task_id) or {"task_id": task_id, "outcome": "refused", "reason": why}
