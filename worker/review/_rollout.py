"""The review page's rollout tab: one page per department with its promotion report.

``/rollout`` lists the departments with their live mode and kill switch; ``/rollout/
<dept>`` shows the report ``umiq rollout report`` prints (tasks by mode and outcome, pass
rate, shadow agreement, approvals, held answers, refusals, writes, latency) and its plot,
served as ``/rollout/<dept>/plot.png`` (an image from this origin: the page's CSP allows
``img-src 'self'`` only). Read-only: any logged-in user (the read-only token too) may
look; nothing here changes a setting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from worker.rollout.config import GLOBAL
from worker.rollout.report import png, report
from worker.rollout.store import store_for

if TYPE_CHECKING:
    from worker.audit.log import AuditLog

Render = Callable[..., HTMLResponse]


def parse_since(text: str) -> datetime | None:
    """The ``since`` query value (ISO date or time, UTC when it names no zone), or None."""
    text = text.strip()
    if not text:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(
            400, f"since must be an ISO date or time (2026-12-01 or 2026-12-01T08:00), got {text!r}"
        ) from exc
    return since if since.tzinfo is not None else since.replace(tzinfo=UTC)


def add_rollout_routes(
    app: FastAPI, audit: AuditLog, settings: Any, render: Render, user_dependency: Any
) -> None:
    """Add the rollout tab's pages to the review ``app``."""

    def departments() -> dict[str, Any]:
        return {k: v for k, v in store_for(audit, settings).all().items() if k != GLOBAL}

    def known(department: str) -> None:
        if department not in departments():
            raise HTTPException(404, f"no department {department!r} is configured or was changed")

    @app.get("/rollout", response_class=HTMLResponse)
    def rollout_index(request: Request, user: Any = user_dependency) -> HTMLResponse:
        lives = store_for(audit, settings).all()
        glob = lives.pop(GLOBAL, None)
        killed = bool(glob and glob.settings and glob.settings.kill_switch)
        return render(
            request, "rollout.html", user, title="rollout", lives=lives, global_kill=killed,
            department=None, figures=None, since="",
        )  # fmt: skip

    @app.get("/rollout/{department}", response_class=HTMLResponse)
    def rollout_page(
        request: Request, department: str, since: str = "", user: Any = user_dependency
    ) -> HTMLResponse:
        known(department)
        figures = report(audit, department, parse_since(since))
        return render(
            request, "rollout.html", user, title=f"rollout · {department}",
            lives=departments(), global_kill=False, department=department, figures=figures,
            since=since.strip(),
        )  # fmt: skip

    @app.get("/rollout/{department}/plot.png")
    def rollout_plot(department: str, since: str = "", user: Any = user_dependency) -> Response:
        known(department)
        figures = report(audit, department, parse_since(since))
        return Response(png(figures), media_type="image/png")
