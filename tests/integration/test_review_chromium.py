"""A compliance officer approves a payment on the review page in a real headless Chromium.

A real `umiq worker` process (embedded SQLite broker, scripted role model) runs a finance
task against the Acme ERP service; the payment is over the department's limit, so the
task waits. The review server runs in a thread; Chromium logs in with basic auth, opens
/approvals, gives a reason and clicks Approve; the worker resumes and the ERP ends up
with exactly one payment for the invoice. Screenshots go to tests/artifacts/.

Needs Playwright's Python package (no browser download: Debian's Chromium at
/usr/bin/chromium, ``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.required import unavailable
from worker.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("UMIQ_CHROMIUM", "/usr/bin/chromium"))
OFFICER = ("carol", "carol-review-pw-42")
LIMIT = 100


def _need(ok: bool, message: str) -> None:
    if not ok:
        unavailable(message)


def _wait(what: str, check: Callable[[], Any], timeout: float, worker_log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    tail = worker_log.read_text(errors="replace")[-4000:]
    raise AssertionError(f"{what} within {timeout:.0f}s; worker log:\n{tail}")


@pytest.fixture
def invoice(erp: Any) -> dict[str, Any]:
    """An open seeded invoice over the approval limit, with no payment yet."""
    invoices = httpx.get(f"{erp.url}/invoices", params={"status": "open"}).json()
    for candidate in invoices:
        payments = httpx.get(f"{erp.url}/payments", params={"invoice_id": candidate["id"]})
        if candidate["amount"] > LIMIT and payments.json() == []:
            return candidate
    raise AssertionError("the ERP seed has no open invoice over the limit without a payment")


@pytest.fixture
def settings(
    tmp_path: Path, erp: Any, invoice: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """This process's settings, and the worker's environment: the same data dir and ERP."""
    from worker import runtime
    from worker.review import hash_password
    from worker.settings import get_settings

    scripts = tmp_path / "scripts.json"
    monkeypatch.setenv("UMIQ_TEST_SCRIPTS", str(scripts))
    environment = {
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
        "UMIQ_DEPARTMENTS": json.dumps(
            {
                "finance": {
                    "mode": "auto",
                    "tools": ["erp:*"],
                    "may_write": True,
                    "approvals": [
                        {
                            "tool": "schedule_payment",
                            "when": [["amount", ">", LIMIT]],
                            "reason": f"payments above {LIMIT} need a second person",
                        }
                    ],
                }
            }
        ),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "UMIQ_MAX_STEPS": "4",
        "UMIQ_LOG_FORMAT": "json",
        "UMIQ_REVIEW_USERS": json.dumps({OFFICER[0]: hash_password(OFFICER[1])}),
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield get_settings()
    runtime.reset()


@pytest.fixture
def worker(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """A real `umiq worker` process on the embedded broker; yields its log file."""
    from worker.audit import ensure_schema

    settings.ensure_dirs()
    ensure_schema(settings.resolved_database_url)  # before the worker: one migrator at a time
    log_path = tmp_path / "worker.log"
    with WorkerProcess(dict(os.environ), log_path, cwd=REPO, ready_timeout=60):
        yield log_path


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's) driven by Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package is not installed (pip install playwright)")
    _need(CHROMIUM.exists(), f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def test_officer_approves_a_payment_in_chromium(
    settings: Any, worker: Path, erp: Any, invoice: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """Approve in the browser: the worker resumes, the ERP has one payment, the trace says who."""
    from examples.acme.serve import ServiceThread
    from worker.audit import AuditLog
    from worker.celery_app import TASK_NAME, create_app
    from worker.review import create_app as create_review_app

    task_id = f"review-{uuid.uuid4().hex[:8]}"
    call = {"invoice_id": invoice["id"], "amount": invoice["amount"], "date": invoice["issue_date"]}
    (tmp_path / "scripts.json").write_text(
        json.dumps({task_id: [{"tool": "schedule_payment", "arguments": call}]})
    )
    create_app(settings).send_task(
        TASK_NAME,
        args=[
            {
                "task_id": task_id,
                "department": "finance",
                "query": f"Schedule {invoice['id']} for payment on {invoice['issue_date']}.",
                "requested_by": "ap-clerk",
            }
        ],
    )
    audit = AuditLog.from_url(settings.resolved_database_url)
    outcome = lambda: (audit.outcome(task_id) or {}).get("outcome")  # noqa: E731
    _wait("the task waits for approval", lambda: outcome() == "awaiting_approval", 30, worker)
    assert httpx.get(f"{erp.url}/payments", params={"invoice_id": invoice["id"]}).json() == []

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {name: ARTIFACTS / f"review-{name}.png" for name in ("before", "after", "trace")}
    # the default enqueue: worker.gates.calls.send_resume, on this process's settings' broker
    with ServiceThread(create_review_app(settings)) as review:
        context = browser.new_context(
            http_credentials={"username": OFFICER[0], "password": OFFICER[1]},
            viewport={"width": 1200, "height": 900},
        )
        page = context.new_page()
        page.goto(f"{review.url}/approvals")
        card = page.locator("section.card", has_text=task_id)
        card.wait_for()
        assert "schedule_payment" in card.inner_text()
        assert invoice["id"] in card.inner_text()
        assert f"amount > {LIMIT}" in card.inner_text()
        page.screenshot(path=shots["before"], full_page=True)

        card.locator("textarea[name=reason]").fill("PO and goods receipt checked")
        with page.expect_navigation():
            card.get_by_role("button", name="Approve").click()
        assert page.url == f"{review.url}/approvals", page.url + "\n" + page.content()
        flash = page.locator(".flash.ok")
        assert f"approved by {OFFICER[0]}" in flash.inner_text()
        page.screenshot(path=shots["after"], full_page=True)

        _wait("the resumed task is answered", lambda: outcome() == "answered", 30, worker)
        payments = httpx.get(f"{erp.url}/payments", params={"invoice_id": invoice["id"]}).json()
        assert len(payments) == 1, payments
        assert payments[0]["amount"] == invoice["amount"]

        page.goto(f"{review.url}/tasks/{task_id}")
        approval = page.locator(".approval.approved")
        assert f"approved by {OFFICER[0]}" in approval.inner_text()
        assert "PO and goods receipt checked" in approval.inner_text()
        page.screenshot(path=shots["trace"], full_page=True)
        context.close()
    audit.close()
    for name, path in shots.items():
        print(f"screenshot {name}: {path}")


def test_officer_releases_a_held_answer_in_chromium(
    settings: Any, worker: Path, erp: Any, invoice: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """The summarizer says the invoice is scheduled after only reading it: the worker holds
    the answer; the officer reads why on /approvals and releases it; the task is answered."""
    from examples.acme.serve import ServiceThread
    from worker.audit import AuditLog
    from worker.celery_app import TASK_NAME, create_app
    from worker.review import create_app as create_review_app

    task_id = f"held-{uuid.uuid4().hex[:8]}"
    claim = f"{invoice['id']} is scheduled for payment."
    script = [
        {"tool": "get_invoice", "arguments": {"invoice_id": invoice["id"]}},
        {"answer": claim},
    ]
    (tmp_path / "scripts.json").write_text(json.dumps({task_id: script}))
    create_app(settings).send_task(
        TASK_NAME,
        args=[
            {
                "task_id": task_id,
                "department": "finance",
                "query": f"Is {invoice['id']} scheduled?",
                "requested_by": "ap-clerk",
            }
        ],
    )
    audit = AuditLog.from_url(settings.resolved_database_url)
    outcome = lambda: (audit.outcome(task_id) or {}).get("outcome")  # noqa: E731
    _wait("the answer is held", lambda: outcome() == "held", 30, worker)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "review-held.png"
    with ServiceThread(create_review_app(settings)) as review:
        context = browser.new_context(
            http_credentials={"username": OFFICER[0], "password": OFFICER[1]},
            viewport={"width": 1200, "height": 900},
        )
        page = context.new_page()
        page.goto(f"{review.url}/approvals")
        card = page.locator("section.card.held", has_text=task_id)
        card.wait_for()
        assert claim in card.inner_text()
        assert "'scheduled'" in card.inner_text()
        page.screenshot(path=shot, full_page=True)
        card.locator("textarea[name=reason]").fill("the payment run scheduled it by hand")
        with page.expect_navigation():
            card.get_by_role("button", name="Release the answer").click()
        assert f"answer released by {OFFICER[0]}" in page.locator(".flash.ok").inner_text()
        context.close()
    final = audit.outcome(task_id)
    assert final is not None and (final["outcome"], final["answer"]) == ("answered", claim)
    assert audit.verify().ok
    audit.close()
    print(f"screenshot held: {shot}")
