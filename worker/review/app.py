"""The review web page: tasks, traces, the chain, and the calls waiting for a human.

Server-rendered (FastAPI + Jinja2, autoescaped), no JavaScript, nothing fetched from
elsewhere. Every page needs a login: HTTP basic auth as one of ``review_users``, or the
read-only ``review_token`` as a bearer token. A decision is recorded under the name the
user logged in with, never a name typed into a form, and its POST carries a CSRF token
(``worker.review._signing``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.audit import AuditLog, decisions, ensure_schema
from worker.audit.requester import pseudonym_key
from worker.audit.review import SEALED, conceal, list_tasks, load_trace, open_trace, trace_as_dict
from worker.errors import ApprovalError, AuditError, HeldAnswerError, UmiqError
from worker.gates import decide, decide_answer, held_for, pending_for, tab
from worker.review._auth import Authenticator, Principal
from worker.review._rollout import add_rollout_routes
from worker.review._signing import CSRF_COOKIE, CSRF_FIELD, FLASH_COOKIE, Signer, signing_key
from worker.review._views import OUTCOMES, TaskFilter, pretty, trace_view, when
from worker.settings import Settings

log = structlog.get_logger("umiq.review")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STYLESHEET = HERE / "static" / "review.css"

Enqueue = Callable[[str, str], None]
"""Sends the resume of an approved call: ``enqueue(task_id, key)``."""

REALM = 'Basic realm="umiq review", charset="UTF-8"'
_SCAN = 2000  # tasks read when the list is filtered by outcome or text
_MAX_FORM = 16 * 1024

SECURITY_HEADERS = {
    # no scripts at all; styles only from here; forms only post here; never in a frame
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # not no-referrer: under it Chromium sends "Origin: null" with the form's POST
    "Referrer-Policy": "same-origin",
    # traces hold personal data (tokenized or opened): keep them out of caches
    "Cache-Control": "no-store",
}


def _sealer(settings: Settings) -> Any:
    """The sealer of the configured key ring, or None where there is none to read.

    Like ``umiq audit show --open``, reading never creates a key ring: a new one could
    open nothing.
    """
    from worker.audit.keyring import keyring_source, load_keyring
    from worker.audit.sealing import Sealer

    source = keyring_source(settings)
    if source.kind == "default" and source.path is not None and not source.path.exists():
        return None
    return Sealer(load_keyring(settings))


def open_audit_log(settings: Settings) -> AuditLog:
    """The audit log of ``settings``, able to open sealed fields when a key ring is set."""
    url = settings.resolved_database_url
    if settings.embedded:
        settings.ensure_dirs()
    ensure_schema(url)
    return AuditLog.from_url(url, sealer=_sealer(settings))


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty"] = pretty
    env.filters["quote"] = lambda value: urllib.parse.quote(str(value), safe="")
    env.globals["SEALED"] = SEALED
    return env


def create_app(
    settings: Settings,
    *,
    audit: AuditLog | None = None,
    enqueue: Enqueue | None = None,
) -> FastAPI:
    """The review app over the audit log of ``settings``.

    ``audit`` replaces the log built from the settings; ``enqueue(task_id, key)`` sends
    the resume of an approved call (default ``worker.gates.send_resume``, on the task's
    department's queue). Raises
    ConfigError when no credentials are configured: the page is never open by default.
    """
    auth = Authenticator(settings.review_users, settings.review_token, settings.review_auditors)
    if auth.plain_users:
        log.warning(
            "review.plain_passwords",
            users=auth.plain_users,
            hint="store hashes from `umiq review hash-password` in UMIQ_REVIEW_USERS",
        )
    audit_log = audit if audit is not None else open_audit_log(settings)
    send = enqueue  # None: the gates' own, which routes to the department's queue
    signer = Signer(signing_key(settings.review_secret))
    # Each decision is signed with the decision key (the worker holds only its public half).
    # Unset, both default to files in the data dir (created on first use), as the worker's.
    decision_key = decisions.signer(settings)
    pseudonym_secret = pseudonym_key(settings)
    env = _templates()
    stylesheet = STYLESHEET.read_text(encoding="utf-8")

    app = FastAPI(title="umiq review", docs_url=None, redoc_url=None, openapi_url=None)
    # No trailing-slash redirects: their Location is built from the Host header, which
    # an unauthenticated caller controls (/chain/ would send a browser elsewhere).
    app.router.redirect_slashes = False
    app.state.audit = audit_log
    app.state.settings = settings

    def render(
        request: Request, name: str, user: Principal | None, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = env.get_template(name).render(
            user=user, path=request.url.path, title=context.pop("title", "umiq review"), **context
        )
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        response = render(
            request,
            "error.html",
            None,
            status=exc.status_code,
            title=f"{exc.status_code}",
            status_code=exc.status_code,
            detail=str(exc.detail),
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    def principal(request: Request) -> Principal:
        who = auth.from_header(request.headers.get("authorization"))
        if who is None:
            raise HTTPException(401, "log in as a review user", headers={"WWW-Authenticate": REALM})
        return who

    User = Depends(principal)

    @app.get("/static/review.css", include_in_schema=False)
    def css() -> Response:
        return Response(stylesheet, media_type="text/css")

    @app.get("/", response_class=HTMLResponse)
    def tasks_page(
        request: Request,
        department: str = "",
        outcome: str = "",
        q: str = "",
        limit: int = 100,
        user: Principal = User,
    ) -> HTMLResponse:
        limit = max(1, min(limit, 1000))
        wanted = TaskFilter(department.strip(), outcome.strip(), q.strip(), limit)
        summaries = list_tasks(
            audit_log.engine,
            department=wanted.department or None,
            limit=_SCAN if wanted.narrows else wanted.limit,
        )
        departments = sorted(set(settings.departments) | {s.department for s in summaries})
        return render(
            request,
            "tasks.html",
            user,
            title="tasks",
            tasks=wanted.apply(summaries),
            filters=wanted,
            departments=departments,
            outcomes=OUTCOMES,
            scanned=_SCAN if wanted.narrows else None,
        )

    @app.get("/tasks/{task_id:path}", response_class=HTMLResponse)
    def trace_page(
        request: Request,
        task_id: str,
        open_sealed: int = Query(0, alias="open"),
        user: Principal = User,
    ) -> HTMLResponse:
        try:
            trace = load_trace(audit_log, task_id)
        except AuditError as exc:
            raise HTTPException(404, str(exc)) from exc
        opened = bool(open_sealed)
        if opened:
            if not user.auditor:
                raise HTTPException(
                    403,
                    f"{user.name} may not open sealed fields: only review auditors "
                    "(UMIQ_REVIEW_AUDITORS) may",
                )
            if audit_log.sealer is None:
                raise HTTPException(
                    409,
                    "this server has no audit key ring to open sealed fields with: set "
                    "UMIQ_KEYRING_FILE or UMIQ_KEYRING to the ring they were sealed with",
                )
            try:
                trace = open_trace(trace, audit_log.unseal)
            except UmiqError as exc:
                raise HTTPException(409, f"cannot open the sealed fields: {exc}") from exc
            # who looked at personal data is worth a line in the service's log
            log.info("review.sealed_opened", task_id=task_id, user=user.name)
        data = trace_as_dict(trace, conceal)
        return render(
            request,
            "trace.html",
            user,
            title=f"task {task_id}",
            trace=trace_view(data),
            opened=opened,
        )

    add_rollout_routes(app, audit_log, settings, render, User)

    @app.get("/chain", response_class=HTMLResponse)
    def chain_page(request: Request, user: Principal = User) -> HTMLResponse:
        problem = None
        report = head = None
        try:
            report = audit_log.verify()
            head = audit_log.head()
        except AuditError as exc:
            problem = str(exc)
        return render(
            request,
            "chain.html",
            user,
            title="audit chain",
            report=report,
            head=head,
            problem=problem,
            chain=audit_log.chain,
        )

    @app.get("/approvals", response_class=HTMLResponse)
    def approvals_page(request: Request, user: Principal = User) -> HTMLResponse:
        token = request.cookies.get(CSRF_COOKIE)
        fresh = not signer.csrf_valid(user.name, token)
        if fresh:
            token = signer.csrf_token(user.name)
        flash = signer.read_flash(request.cookies.get(FLASH_COOKIE))
        # One pass over the recent tasks' steps finds both kinds of waiting work.
        waits = tab(audit_log)
        response = render(
            request,
            "approvals.html",
            user,
            title="approvals",
            items=waits.calls,
            held_items=waits.answers,
            csrf=token,
            csrf_field=CSRF_FIELD,
            flash=flash,
        )
        secure = request.url.scheme == "https"
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, token or "", httponly=True, samesite="strict", secure=secure
            )
        if request.cookies.get(FLASH_COOKIE) is not None:
            response.delete_cookie(FLASH_COOKIE, httponly=True, samesite="strict", secure=secure)
        return response

    async def decision_form(request: Request, user: Principal) -> dict[str, str]:
        """The posted form of a decision, once the user may decide and the form is theirs."""
        if not user.can_decide:
            raise HTTPException(
                403, "the review token is read-only: log in as a review user to decide"
            )
        form = await _form(request)
        token = form.get(CSRF_FIELD, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (token and cookie and token == cookie and signer.csrf_valid(user.name, token)):
            raise HTTPException(
                403,
                "the form's CSRF token is missing or stale: reload the approvals page and "
                "decide again",
            )
        origin = request.headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, f"refusing a decision posted from {origin}")
        return form

    def back_to_approvals(request: Request, message: tuple[str, str]) -> Response:
        response = RedirectResponse("/approvals", status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            signer.flash(*message),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/approvals/{task_id:path}")
    async def decide_call(request: Request, task_id: str, user: Principal = User) -> Response:
        form = await decision_form(request, user)
        verdict = form.get("verdict", "")
        if verdict not in ("approved", "rejected"):
            raise HTTPException(400, "verdict must be 'approved' or 'rejected'")
        reason = form.get("reason", "").strip()
        message = await run_in_threadpool(
            _decide,
            audit_log,
            task_id,
            verdict,
            user.name,
            reason,
            form.get("key", ""),
            send,
            decision_key,
            pseudonym_secret,
        )
        return back_to_approvals(request, message)

    @app.post("/held/{task_id:path}")
    async def decide_held(request: Request, task_id: str, user: Principal = User) -> Response:
        form = await decision_form(request, user)
        verdict = form.get("verdict", "")
        if verdict not in ("released", "rejected"):
            raise HTTPException(400, "verdict must be 'released' or 'rejected'")
        reason = form.get("reason", "").strip()
        message = await run_in_threadpool(
            _decide_held,
            audit_log,
            task_id,
            verdict,
            user.name,
            reason,
            form.get("seq", ""),
            decision_key,
        )
        return back_to_approvals(request, message)

    return app


def _decide(
    audit: AuditLog,
    task_id: str,
    verdict: str,
    by: str,
    reason: str,
    key: str,
    send: Enqueue | None,
    decision_key: Ed25519PrivateKey | None = None,
    pseudonym_key: str | None = None,
) -> tuple[str, str]:
    """Record the decision; the flash message: (``ok`` or ``error``, text)."""
    if not reason:
        return "error", f"{task_id}: a decision needs a reason; nothing was recorded"
    try:
        if key and pending_for(audit, task_id).key != key:
            return "error", (
                f"{task_id} now waits for another call than the one shown; nothing was "
                "recorded: look again"
            )
        decision = decide(
            audit,
            task_id,
            verdict=verdict,  # type: ignore[arg-type]
            by=by,
            reason=reason,
            enqueue=send,
            signer=decision_key,
            pseudonym_key=pseudonym_key,
        )
    except ApprovalError as exc:
        return "error", str(exc)
    log.info("review.decided", task_id=task_id, key=decision.key, verdict=verdict, by=by)
    follow = "the task resumes on the worker" if verdict == "approved" else "the task ends"
    return "ok", f"{task_id}: {decision.key} {verdict} by {by}; {follow}"


def _decide_held(
    audit: AuditLog,
    task_id: str,
    verdict: str,
    by: str,
    reason: str,
    seq: str,
    decision_key: Ed25519PrivateKey | None = None,
) -> tuple[str, str]:
    """Record the decision on a held answer; the flash message."""
    if not reason:
        return "error", f"{task_id}: a decision needs a reason; nothing was recorded"
    try:
        if seq and str(held_for(audit, task_id).held_seq) != seq:
            return "error", (
                f"{task_id} now holds another answer than the one shown; nothing was "
                "recorded: look again"
            )
        decision = decide_answer(
            audit,
            task_id,
            verdict=verdict,  # type: ignore[arg-type]
            by=by,
            reason=reason,
            signer=decision_key,
        )
    except HeldAnswerError as exc:
        return "error", str(exc)
    log.info("review.answer_decided", task_id=task_id, verdict=verdict, by=by)
    ends = "answered" if verdict == "released" else "rejected"
    return "ok", f"{task_id}: answer {decision.verdict} by {by}; the task ends {ends}"


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body as a dict (first value of each field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise HTTPException(413, f"the form is larger than {_MAX_FORM} bytes")
    try:
        fields = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "the form is not UTF-8") from exc
    return {name: values[0] for name, values in fields.items()}
