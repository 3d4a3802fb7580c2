"""The review page's rollout tab over a real SQLite audit log, driven with TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from worker.audit import AuditLog, ensure_schema
from worker.audit.keyring import generate_keyring
from worker.audit.sealing import Sealer
from worker.review import create_app
from worker.rollout import record_human, record_verdict, store_for
from worker.settings import Settings

USER = ("dave", "dave-plain-pw")
TOKEN = "read-only-token-0123456789"
DISPUTE = {"invoice_id": "INV-1001", "reason": "wrong amount"}


def shadow_task(audit: AuditLog, task_id: str) -> None:
    """A finance task the agent ran in shadow: one dry-run write, answered, then people."""
    audit.append_task(task_id=task_id, department="finance", query="Dispute INV-1001",
                      requested_by="ana", context={"rollout": {"mode": "shadow"}})  # fmt: skip
    audit.append_tool_call(task_id=task_id, step=1, idempotency_key=f"{task_id}:1",
                           tool="dispute_invoice", effect="write", request=DISPUTE,
                           response={"dry_run": True, "sent": False}, ok=True)  # fmt: skip
    answered = {"outcome": "answered", "reason": "the summarizer answered"}
    audit.append_step(task_id=task_id, index=2, kind="outcome", output="INV-1001 disputed.",
                      details=answered)  # fmt: skip
    audit.append_step(task_id=task_id, index=3, kind="outcome",
                      details={"outcome": "not_automated", "mode": "shadow"})  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, review_users=dict([USER]), review_token=TOKEN)


@pytest.fixture
def audit(tmp_path: Path, settings: Settings) -> Iterator[AuditLog]:
    """finance in shadow: two tasks compared with people (one agrees), an auto task with a
    failing checker verdict and a refusal named with markup."""
    ensure_schema(url := f"sqlite:///{tmp_path / 'audit.sqlite'}")
    log = AuditLog.from_url(url, sealer=Sealer(generate_keyring()))
    store_for(log, settings).set("finance", {"mode": "shadow"}, by="head", reason="trial")
    for task_id in ("s-1", "s-2"):
        shadow_task(log, task_id)
    record_human(log, "s-1", by="bob", outcome="answered", writes=[("dispute_invoice", DISPUTE)])
    record_human(log, "s-2", by="bob", outcome="gave_up")
    log.append_task(task_id="a-1", department="finance", query="Pay INV-1002",
                    requested_by="ana", context={"rollout": {"mode": "auto"}})  # fmt: skip
    denied = {"policy": "<img src=x>", "allowed": False, "reasons": ["no"]}
    log.append_step(task_id="a-1", index=1, kind="policy", output="denied", details=denied)
    log.append_step(task_id="a-1", index=2, kind="outcome",
                    details={"outcome": "refused", "reason": "denied"})  # fmt: skip
    record_verdict(log, "a-1", passed=False, by="acme-checker", source="checker")
    yield log
    log.close()


@pytest.fixture
def client(settings: Settings, audit: AuditLog) -> Iterator[TestClient]:
    with TestClient(create_app(settings, audit=audit), follow_redirects=False) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/rollout", "/rollout/finance", "/rollout/finance/plot.png"])
def test_rollout_pages_need_a_login(client: TestClient, page: str) -> None:
    """Without credentials the rollout pages answer 401 and show nothing."""
    response = client.get(page)
    assert response.status_code == 401 and "finance" not in response.text


def test_index_lists_each_department_with_its_live_mode(client: TestClient) -> None:
    """The rollout tab lists the departments, their mode and who changed it last."""
    page = client.get("/rollout", auth=USER)
    assert page.status_code == 200
    assert 'href="/rollout/finance"' in page.text and 'href="/rollout/hr"' in page.text
    row = page.text.split('href="/rollout/finance">finance</a>')[1].split("</tr>")[0]
    assert "<td>shadow</td>" in row and "head" in row


def test_department_page_shows_the_promotion_report(client: TestClient) -> None:
    """The department's page shows mode, outcome, pass rate, agreement and gates."""
    page = client.get("/rollout/finance", auth=USER)
    assert page.status_code == 200, page.text
    text = page.text
    assert "3 tasks." in text
    by_mode = text.split('id="by-mode"')[1].split("</table>")[0]
    shadow = by_mode.split("<td>shadow</td>")[1].split("</tr>")[0]
    assert "handled_by_human</span> 2" in shadow and "50% (1/2)" in shadow
    auto = by_mode.split("<td>auto</td>")[1].split("</tr>")[0]
    assert "0% (0/1)" in auto
    facts = text.split('id="figures"')[1].split("</dl>")[0]
    assert "1 of 3 tasks with a verdict (33%)" in facts
    assert "checker 0/1" in facts and "shadow agreement 1/2" in facts
    assert "1 of 2 (50%): same outcome 1, same writes 1" in facts
    assert "1 made" not in facts and "2 dry-run" in facts
    assert 'src="/rollout/finance/plot.png"' in text


def test_department_page_escapes_what_the_log_holds(client: TestClient) -> None:
    """A policy name with markup is shown as text, never as HTML."""
    text = client.get("/rollout/finance", auth=USER).text
    assert "<img src=x>" not in text and "&lt;img src=x&gt; 1" in text


def test_plot_is_a_png_the_read_only_token_may_see(client: TestClient) -> None:
    """The plot is served as a PNG from the page's origin, to the read-only token too."""
    response = client.get("/rollout/finance/plot.png", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_since_narrows_the_report_and_a_bad_since_is_refused(client: TestClient) -> None:
    """since keeps the tasks received from then on; a value that is not a date is a 400."""
    later = client.get("/rollout/finance", params={"since": "2999-01-01"}, auth=USER)
    assert later.status_code == 200 and "0 tasks since 2999-01-01" in later.text
    assert 'plot.png?since=2999-01-01"' in later.text
    bad = client.get("/rollout/finance", params={"since": "<b>soon</b>"}, auth=USER)
    assert bad.status_code == 400 and "<b>soon</b>" not in bad.text


def test_unknown_department_is_404(client: TestClient) -> None:
    """A department nobody configured or changed has no page."""
    assert client.get("/rollout/sales", auth=USER).status_code == 404
    assert client.get("/rollout/sales/plot.png", auth=USER).status_code == 404
