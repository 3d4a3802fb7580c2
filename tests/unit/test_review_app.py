"""The review web page over a real SQLite audit log, driven with FastAPI's TestClient."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from worker.audit import AuditLog, decisions, ensure_schema
from worker.audit.keyring import generate_keyring
from worker.audit.sealing import Sealer
from worker.errors import ConfigError
from worker.gates.calls import pending
from worker.review import create_app, hash_password, verify_password
from worker.settings import Settings

from .test_approvals import waiting
from .test_episode import erp

CAROL = ("carol", "carol-secret-pw")  # an auditor, password stored as a scrypt hash
DAVE = ("dave", "dave-plain-pw")  # a reviewer, password stored in plain text (a trial)
TOKEN = "read-only-token-0123456789"
RAW_EMAIL = "j.devries@example.nl"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

Sent = list[tuple[str, str]]


@pytest.fixture(scope="module")
def carol_hash() -> str:
    return hash_password(CAROL[1])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.sqlite"


@pytest.fixture
def audit(path: Path) -> Iterator[AuditLog]:
    """A sealed audit log: t-1 waits for approval, t-2 (hr) answered, t-3 hit the limit."""
    url = f"sqlite:///{path}"
    ensure_schema(url)
    log = AuditLog.from_url(url, sealer=Sealer(generate_keyring()))
    waiting(log, erp())  # t-1, finance: schedule_payment 12500 > 10000 waits
    log.append_task(
        task_id="t-2", department="hr", query="Mail <EMAIL_1> her start date", requested_by="ana"
    )
    log.append_step(
        task_id="t-2",
        index=1,
        kind="policy",
        output="allowed",
        details={"policy": "minimization", "allowed": True, "reasons": ["pseudonymized"]},
        sealed={"tokens": {"<EMAIL_1>": RAW_EMAIL}},
    )
    log.append_tool_call(
        task_id="t-2",
        step=2,
        idempotency_key="t-2:2",
        tool="send_mail",
        effect="write",
        request={"to": RAW_EMAIL},
        response={"sent": True},
        ok=True,
    )
    log.append_step(
        task_id="t-2",
        index=3,
        kind="outcome",
        output="Mailed.",
        details={"outcome": "answered", "reason": "the summarizer answered"},
    )
    log.append_task(
        task_id="t-3",
        department="finance",
        query="<script>alert(1)</script>",
        requested_by="bob",
    )
    log.append_step(
        task_id="t-3",
        index=1,
        kind="outcome",
        details={"outcome": "step_limit", "reason": "no conclusion within 2 steps"},
    )
    yield log
    log.close()


@pytest.fixture
def settings(tmp_path: Path, carol_hash: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        review_users={CAROL[0]: carol_hash, DAVE[0]: DAVE[1]},
        review_auditors=[CAROL[0]],
        review_token=TOKEN,
    )


@pytest.fixture
def sent() -> Sent:
    return []


@pytest.fixture
def client(settings: Settings, audit: AuditLog, sent: Sent) -> Iterator[TestClient]:
    app = create_app(settings, audit=audit, enqueue=lambda t, k: sent.append((t, k)))
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


def csrf_of(client: TestClient, auth: tuple[str, str] = CAROL) -> str:
    page = client.get("/approvals", auth=auth)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None, "the approvals page has no CSRF field"
    return match.group(1)


def post_decision(
    client: TestClient, verdict: str, reason: str, *, csrf: str | None, **extra: str
) -> object:
    form = {"verdict": verdict, "reason": reason, **extra}
    if csrf is not None:
        form["csrf"] = csrf
    return client.post("/approvals/t-1", data=form, auth=CAROL)


# -- logins -------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/", "/tasks/t-1", "/chain", "/approvals"])
def test_pages_need_a_login(client: TestClient, page: str) -> None:
    """Without credentials every page answers 401 and asks for basic auth."""
    response = client.get(page)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert "t-1" not in response.text


def test_wrong_password_is_refused(client: TestClient) -> None:
    """A known user with a wrong password, or an unknown user, gets 401."""
    assert client.get("/", auth=(CAROL[0], "wrong")).status_code == 401
    assert client.get("/", auth=("mallory", CAROL[1])).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong-token"}).status_code == 401


def test_hashed_and_plain_passwords_log_in(client: TestClient) -> None:
    """A user with a scrypt hash and one with a plain password both get the page."""
    assert client.get("/", auth=CAROL).status_code == 200
    assert client.get("/", auth=DAVE).status_code == 200


def test_bearer_token_reads_but_cannot_decide(client: TestClient, audit: AuditLog) -> None:
    """The bearer token opens the pages read-only: a decision with it is refused."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    page = client.get("/approvals", headers=bearer)
    assert page.status_code == 200 and "read-only" in page.text
    refused = client.post("/approvals/t-1", data={"verdict": "approved"}, headers=bearer)
    assert refused.status_code == 403
    assert len(pending(audit)) == 1


def test_no_credentials_refuses_to_start(tmp_path: Path, audit: AuditLog) -> None:
    """With no users and no token configured, create_app refuses with a clear message."""
    with pytest.raises(ConfigError, match="without credentials"):
        create_app(Settings(data_dir=tmp_path), audit=audit)


def test_malformed_hash_refuses_to_start(tmp_path: Path, audit: AuditLog) -> None:
    """A stored hash that cannot be read stops the server at start, naming the user."""
    settings = Settings(data_dir=tmp_path, review_users={"erin": "scrypt$15$8$1$bad"})
    with pytest.raises(ConfigError, match="'erin'"):
        create_app(settings, audit=audit)


def test_password_hash_round_trip(carol_hash: str) -> None:
    """A hash from hash_password verifies its password and no other."""
    assert carol_hash.startswith("scrypt$")
    assert verify_password(CAROL[1], carol_hash)
    assert not verify_password("carol-secret-pW", carol_hash)


def test_pages_carry_security_headers(client: TestClient) -> None:
    """Pages forbid scripts, framing and caching."""
    response = client.get("/", auth=CAROL)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


# -- the task list -----------------------------------------------------------------------


def task_ids(html: str) -> list[str]:
    return re.findall(r'<a href="/tasks/([^"]+)">', html)


def test_task_list_is_newest_first(client: TestClient) -> None:
    """All tasks are listed, newest first, with their outcome."""
    page = client.get("/", auth=CAROL)
    assert task_ids(page.text) == ["t-3", "t-2", "t-1"]
    assert "awaiting_approval" in page.text and "step_limit" in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("department=hr", ["t-2"]),
        ("department=finance", ["t-3", "t-1"]),
        ("outcome=awaiting_approval", ["t-1"]),
        ("outcome=answered", ["t-2"]),
        ("department=hr&outcome=step_limit", []),
        ("q=T-3", ["t-3"]),
    ],
)
def test_task_list_filters(client: TestClient, query: str, expected: list[str]) -> None:
    """Department, outcome and task-id filters narrow the list."""
    assert task_ids(client.get(f"/?{query}", auth=CAROL).text) == expected


def test_pages_escape_what_the_log_holds(client: TestClient) -> None:
    """Text from the log is escaped, never rendered as markup."""
    page = client.get("/tasks/t-3", auth=CAROL)
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# -- a task's trace ----------------------------------------------------------------------


def test_trace_shows_policy_decisions_with_reasons(client: TestClient) -> None:
    """The trace of a waiting task shows each policy decision, its reasons, and the request."""
    page = client.get("/tasks/t-1", auth=CAROL)
    assert page.status_code == 200
    assert "policy approval" in page.text
    assert "amount &gt; 10000" in page.text
    assert "approval requested for call <code>t-1:2</code>" in page.text
    assert "Is INV-1 open?" in page.text


def test_trace_shows_sealed_fields_as_sealed(client: TestClient) -> None:
    """Sealed tool-call fields and tokens show as «sealed», never their values."""
    page = client.get("/tasks/t-2", auth=DAVE)
    assert page.text.count("«sealed»") >= 3
    assert RAW_EMAIL not in page.text
    assert "open sealed fields" not in page.text  # dave is no auditor


def test_auditor_opens_sealed_fields(client: TestClient) -> None:
    """An auditor's ?open=1 opens the sealed fields with the key ring."""
    page = client.get("/tasks/t-2?open=1", auth=CAROL)
    assert page.status_code == 200
    assert RAW_EMAIL in page.text
    assert "Sealed fields are open" in page.text


def test_only_auditors_open_sealed_fields(client: TestClient) -> None:
    """A review user who is no auditor gets 403 for ?open=1."""
    page = client.get("/tasks/t-2?open=1", auth=DAVE)
    assert page.status_code == 403
    assert RAW_EMAIL not in page.text


def test_unknown_task_is_404(client: TestClient) -> None:
    """A task the log does not hold is a 404 that says so."""
    page = client.get("/tasks/nope", auth=CAROL)
    assert page.status_code == 404 and "no task" in page.text


# -- approvals ---------------------------------------------------------------------------


def test_approvals_page_shows_the_waiting_call(client: TestClient) -> None:
    """The pending call is shown with its tool, arguments, reasons and both buttons."""
    page = client.get("/approvals", auth=CAROL)
    assert "schedule_payment" in page.text
    assert "&#34;amount&#34;: 12500" in page.text  # the arguments as JSON, escaped
    assert "amount &gt; 10000" in page.text
    assert 'value="approved"' in page.text and 'value="rejected"' in page.text


def test_approve_records_the_logged_in_user_and_enqueues(
    client: TestClient, audit: AuditLog, sent: Sent, settings: Settings
) -> None:
    """Approve records the authenticated user (not a form field) and enqueues the resume;
    with no decision key set, the page signs with the data dir's, which the worker's
    check accepts."""
    token = csrf_of(client)
    response = post_decision(client, "approved", "PO checked", csrf=token, by="mallory")
    assert response.status_code == 303 and response.headers["location"] == "/approvals"
    assert sent == [("t-1", "t-1:2")]
    decision = next(s for s in audit.steps("t-1") if s.details.get("status") == "approved")
    assert decision.details["by"] == "carol"
    assert decision.details["reasons"] == ["approved by carol: PO checked"]
    after = client.get("/approvals", auth=CAROL)
    assert "t-1:2 approved by carol" in after.text
    assert "No calls are waiting" in after.text
    trace = client.get("/tasks/t-1", auth=CAROL)
    assert "approved by carol" in trace.text and "PO checked" in trace.text
    found = decisions.check_log(audit.engine, decisions.verifier(settings))
    assert (found.checked, found.unsigned, found.bad) == (1, 0, [])


def test_post_without_csrf_token_is_refused(
    client: TestClient, audit: AuditLog, sent: Sent
) -> None:
    """A POST without the CSRF field is 403 and records nothing."""
    csrf_of(client)  # the cookie alone is not enough
    response = post_decision(client, "approved", "looks fine", csrf=None)
    assert response.status_code == 403
    assert sent == [] and len(pending(audit)) == 1


def test_csrf_token_of_another_user_is_refused(
    client: TestClient, audit: AuditLog, sent: Sent
) -> None:
    """A token made for dave does not pass for carol."""
    token = csrf_of(client, auth=DAVE)
    response = post_decision(client, "approved", "looks fine", csrf=token)
    assert response.status_code == 403
    assert sent == [] and len(pending(audit)) == 1


def test_post_from_another_origin_is_refused(client: TestClient, sent: Sent) -> None:
    """A decision posted with a foreign Origin header is 403."""
    token = csrf_of(client)
    response = client.post(
        "/approvals/t-1",
        data={"verdict": "approved", "reason": "x", "csrf": token},
        auth=CAROL,
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403 and sent == []


def test_reject_records_the_reason(client: TestClient, audit: AuditLog, sent: Sent) -> None:
    """Reject ends the task as rejected with who and why; nothing is enqueued."""
    response = post_decision(client, "rejected", "duplicate invoice", csrf=csrf_of(client))
    assert response.status_code == 303
    assert sent == []
    outcome = audit.outcome("t-1")
    assert outcome is not None and outcome["outcome"] == "rejected"
    assert outcome["reason"] == "schedule_payment rejected by carol: duplicate invoice"
    assert "rejected by carol" in client.get("/approvals", auth=CAROL).text


def test_decision_without_reason_records_nothing(
    client: TestClient, audit: AuditLog, sent: Sent
) -> None:
    """An empty reason is refused with a message; the call stays pending."""
    response = post_decision(client, "approved", "   ", csrf=csrf_of(client))
    assert response.status_code == 303
    assert sent == [] and len(pending(audit)) == 1
    assert "needs a reason" in client.get("/approvals", auth=CAROL).text


def test_decision_for_another_call_than_shown_records_nothing(
    client: TestClient, audit: AuditLog, sent: Sent
) -> None:
    """A form naming another call key than the one pending is refused."""
    response = post_decision(client, "approved", "ok", csrf=csrf_of(client), key="t-1:9")
    assert response.status_code == 303
    assert sent == [] and len(pending(audit)) == 1
    assert "another call" in client.get("/approvals", auth=CAROL).text


def test_deciding_twice_says_it_is_decided(client: TestClient, sent: Sent) -> None:
    """A second decision on the same task is refused with the reason, not an error page."""
    token = csrf_of(client)
    post_decision(client, "approved", "ok", csrf=token)
    post_decision(client, "rejected", "no", csrf=token)
    assert sent == [("t-1", "t-1:2")]
    assert "no call waiting for approval" in client.get("/approvals", auth=CAROL).text


# -- the chain ---------------------------------------------------------------------------


def test_chain_page_shows_ok_and_the_head(client: TestClient, audit: AuditLog) -> None:
    """An untouched chain is OK, with its row count and head."""
    page = client.get("/chain", auth=CAROL)
    seq, head_hash = audit.head()
    assert f"OK: {seq} rows verified" in page.text
    assert head_hash in page.text


def test_chain_page_names_the_first_broken_row(
    client: TestClient, audit: AuditLog, path: Path
) -> None:
    """After a step is edited in the database file, the page names that row."""
    broken = audit.steps("t-2")[0].seq
    with sqlite3.connect(path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f"DROP TRIGGER {name}")
        db.execute("UPDATE step SET output = 'denied' WHERE seq = ?", (broken,))
    page = client.get("/chain", auth=CAROL)
    assert "BROKEN" in page.text
    assert f"step seq={broken}" in page.text
    assert "hash mismatch" in page.text


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from worker.settings import get_settings

    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    for name in ("UMIQ_REVIEW_USERS", "UMIQ_REVIEW_TOKEN", "UMIQ_REVIEW_AUDITORS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_serve_without_credentials_does_not_start(cli_env: None) -> None:
    """`umiq review serve` with no users and no token exits 2 and says what to set."""
    from typer.testing import CliRunner

    from worker.cli import app

    result = CliRunner().invoke(app, ["review", "serve", "--port", "1"])
    assert result.exit_code == 2
    assert "without credentials" in result.output and "UMIQ_REVIEW_USERS" in result.output


def test_hash_password_command_prints_a_usable_hash(cli_env: None) -> None:
    """`umiq review hash-password` prints a scrypt hash of the password typed twice."""
    from typer.testing import CliRunner

    from worker.cli import app

    result = CliRunner().invoke(app, ["review", "hash-password"], input="s3cret-pw\ns3cret-pw\n")
    assert result.exit_code == 0, result.output
    stored = result.output.strip().splitlines()[-1]
    assert verify_password("s3cret-pw", stored) and not verify_password("other", stored)


# -- a shared signing secret --------------------------------------------------------------


def test_processes_sharing_the_review_secret_accept_each_others_forms(
    settings: Settings, audit: AuditLog, sent: Sent
) -> None:
    """With UMIQ_REVIEW_SECRET, a form from one review process is accepted by another
    (two instances behind one address, or one restarted); without it, it is not."""
    shared = settings.model_copy(update={"review_secret": "s" * 40})

    def app_of(s: Settings) -> TestClient:
        return TestClient(create_app(s, audit=audit, enqueue=lambda t, k: sent.append((t, k))),
                          follow_redirects=False)  # fmt: skip

    with app_of(shared) as first, app_of(settings) as unshared:
        token = csrf_of(first)
        unshared.cookies.set("umiq_csrf", token)
        assert post_decision(unshared, "approved", "ok", csrf=token).status_code == 403
        assert sent == [] and len(pending(audit)) == 1
    with app_of(shared) as second:
        second.cookies.set("umiq_csrf", token)
        response = post_decision(second, "approved", "PO checked", csrf=token)
        assert response.status_code == 303, response.text
    assert sent and pending(audit) == []


def test_a_short_review_secret_refuses_to_start(settings: Settings, audit: AuditLog) -> None:
    """A guessable signing secret is a configuration error, not a weak page."""
    short = settings.model_copy(update={"review_secret": "hunter2"})
    with pytest.raises(ConfigError, match="UMIQ_REVIEW_SECRET has 7 characters"):
        create_app(short, audit=audit)


# -- held answers -------------------------------------------------------------------------

HELD = "INV-7 is scheduled for <b>2025-03-17</b>."


def hold(audit: AuditLog) -> None:
    """t-4: the summarizer said INV-7 is scheduled after a read; the claims policy held it."""
    audit.append_task(
        task_id="t-4", department="finance", query="Is INV-7 paid?", requested_by="bob"
    )
    audit.append_step(
        task_id="t-4",
        index=1,
        kind="outcome",
        output=HELD,
        details={"outcome": "held", "reason": "the answer says 'scheduled' (…), unbacked"},
    )


def post_held(
    client: TestClient, verdict: str, reason: str, *, csrf: str | None, auth=CAROL, **extra: str
) -> Any:
    form = {"verdict": verdict, "reason": reason, **extra}
    if csrf is not None:
        form["csrf"] = csrf
    return client.post("/held/t-4", data=form, auth=auth)


def test_approvals_page_shows_the_held_answer_escaped(client: TestClient, audit: AuditLog) -> None:
    assert "No answers are held for review" in client.get("/approvals", auth=CAROL).text
    hold(audit)
    page = client.get("/approvals", auth=CAROL).text
    assert "INV-7 is scheduled for &lt;b&gt;2025-03-17&lt;/b&gt;." in page
    assert "the answer says &#39;scheduled&#39;" in page
    assert 'action="/held/t-4"' in page and 'value="released"' in page
    assert 'action="/held/t-4"' not in client.get("/approvals", headers=BEARER).text


def test_release_records_the_user_and_ends_the_task_answered(
    client: TestClient, audit: AuditLog
) -> None:
    hold(audit)
    response = post_held(client, "released", "the payment run made it", csrf=csrf_of(client))
    assert response.status_code == 303 and response.headers["location"] == "/approvals"
    outcome = audit.outcome("t-4")
    assert outcome is not None and (outcome["outcome"], outcome["answer"]) == ("answered", HELD)
    decision = audit.steps("t-4")[-2]
    assert (decision.details["status"], decision.details["by"]) == ("released", "carol")
    after = client.get("/approvals", auth=CAROL).text
    assert "t-4: answer released by carol" in after
    assert "No answers are held for review" in after
    assert audit.verify().ok


def test_reject_of_a_held_answer_ends_the_task_rejected(
    client: TestClient, audit: AuditLog
) -> None:
    hold(audit)
    post_held(client, "rejected", "nothing was scheduled", csrf=csrf_of(client))
    outcome = audit.outcome("t-4")
    assert outcome is not None and (outcome["outcome"], outcome["answer"]) == ("rejected", "")


@pytest.mark.parametrize(
    ("verdict", "reason", "extra", "status", "says"),
    [
        ("released", "  ", {}, 303, "needs a reason"),
        ("released", "ok", {"seq": "999999"}, 303, "another answer"),
        ("approved", "ok", {}, 400, None),
    ],
)
def test_a_held_answer_decision_that_cannot_stand_records_nothing(
    client: TestClient,
    audit: AuditLog,
    verdict: str,
    reason: str,
    extra: dict[str, str],
    status: int,
    says: str | None,
) -> None:
    hold(audit)
    response = post_held(client, verdict, reason, csrf=csrf_of(client), **extra)
    assert response.status_code == status
    assert audit.outcome("t-4")["outcome"] == "held"  # type: ignore[index]
    if says:
        assert says in client.get("/approvals", auth=CAROL).text


def test_a_held_answer_needs_a_user_and_the_form_token(client: TestClient, audit: AuditLog) -> None:
    hold(audit)
    csrf_of(client)
    assert post_held(client, "released", "ok", csrf=None).status_code == 403
    bearer = client.post("/held/t-4", data={"verdict": "released", "reason": "ok"}, headers=BEARER)
    assert bearer.status_code == 403
    assert audit.outcome("t-4")["outcome"] == "held"  # type: ignore[index]


# -- security hardening (issue 21) --------------------------------------------------------


def test_the_requester_cannot_approve_on_the_review_page(
    settings: Settings, tmp_path: Path, sent: Sent
) -> None:
    """Four eyes on the review page: carol's own request is refused with the reason and
    stays pending; dave may approve it."""
    from policies import AccessRule, ApprovalPolicy, approval_rules
    from worker.agent.episode import Episode
    from worker.agent.guard import Guard
    from worker.toolbox import Toolbox

    from .test_approvals import PAY
    from .test_episode import ENV, Scripted

    url = f"sqlite:///{tmp_path / 'own.sqlite'}"
    ensure_schema(url)
    log = AuditLog.from_url(url, sealer=Sealer(generate_keyring()))
    env = ENV.model_copy(update={"requested_by": "carol"})
    log.append_task(task_id="t-1", department="finance", query=env.query, requested_by="carol")
    guard = Guard.permissive_minimization(AccessRule("finance", tools=("*",), may_write=True))
    guard.approval = ApprovalPolicy(
        approval_rules([{"tool": "schedule_payment", "when": [["amount", ">", 10000]]}])
    )
    model = Scripted(planner=["Pay it.\n Next: caller."], caller=[PAY])
    Episode(env, model=model, toolbox=Toolbox([erp()]), guard=guard, audit=log).run()
    app = create_app(settings, audit=log, enqueue=lambda t, k: sent.append((t, k)))
    with TestClient(app, follow_redirects=False) as client:
        response = post_decision(client, "approved", "mine", csrf=csrf_of(client))
        assert response.status_code == 303
        page = client.get("/approvals", auth=CAROL)
        assert "cannot approve its own call" in page.text
        assert sent == [] and len(pending(log)) == 1
        token = csrf_of(client, auth=DAVE)
        form = {"verdict": "approved", "reason": "ok", "csrf": token}
        assert client.post("/approvals/t-1", data=form, auth=DAVE).status_code == 303
        assert sent == [("t-1", "t-1:2")]
    log.close()


@pytest.mark.parametrize("cookie", ["é.é", "x.\u2028", "nonce.ü"])
def test_a_non_ascii_csrf_cookie_is_refused_not_a_500(
    client: TestClient, sent: Sent, cookie: str
) -> None:
    """A forged cookie with non-ASCII characters is a 403, never a server error."""
    raw = f"umiq_csrf={cookie}".encode()
    # the field equals the cookie as the server reads it, so the signature check runs
    form = {"verdict": "approved", "reason": "x", "csrf": cookie.encode().decode("latin-1")}
    response = client.post("/approvals/t-1", data=form, auth=CAROL, headers={"cookie": raw})
    assert response.status_code == 403
    assert sent == []


def test_a_trailing_slash_does_not_redirect_to_the_host_header(client: TestClient) -> None:
    """``/chain/`` with a forged Host header is no redirect to that host."""
    response = client.get("/chain/", headers={"host": "evil.example"})
    assert response.status_code in (401, 404)
    assert "evil.example" not in response.headers.get("location", "")


def test_logins_are_throttled_after_repeated_failures(client: TestClient) -> None:
    """After five wrong passwords for a name even the right one is refused for a while;
    other users are not affected."""
    for _ in range(5):
        assert client.get("/", auth=("dave", "wrong")).status_code == 401
    assert client.get("/", auth=DAVE).status_code == 401
    assert client.get("/", auth=CAROL).status_code == 200


def test_the_throttle_lifts_after_its_window() -> None:
    """Failures older than the window no longer count."""
    from worker.review._auth import LOGIN_FAILURES, LOGIN_WINDOW, Authenticator

    now = [0.0]
    auth = Authenticator({"dave": "dave-plain-pw"}, None, [], clock=lambda: now[0])
    for _ in range(LOGIN_FAILURES):
        assert auth.basic("dave", "wrong") is None
    assert auth.basic("dave", "dave-plain-pw") is None
    now[0] += LOGIN_WINDOW + 1
    assert auth.basic("dave", "dave-plain-pw") is not None
