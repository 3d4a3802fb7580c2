"""No raw personal data leaves the policies: a real worker on RabbitMQ and Postgres runs
Acme tasks full of personal data, then prompts, logs and every database row are searched.

The worker is the real ``umiq worker`` process; only its role model is a plug-in
(``UMIQ_ROLE_MODEL``): the deterministic scripted model of ``tests.support.scripted``,
which records every prompt and acts on the tokens it sees, or the real shipped role
models with a recording wrapper. Raw values must be sealed, not lost: ``umiq keys
decrypt`` gives them back, and the mail server receives the real addresses.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import POSTGRES_SERVER
from tests.support.cli import umiq
from tests.support.leaks import (
    Leak,
    acme_people,
    acme_personal_values,
    database_rows,
    search,
    texts,
)
from tests.support.required import unavailable
from worker.process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: One field a policy shows the model raw: the ERP vendor's accounts-receivable contact.
ALLOW_RAW = {"erp:get_vendor": ["contact_name"]}
#: Personal data that only the task queries hold (not seeded in any system).
QUERY_ONLY = {"audit@acme.invalid": "query e-mail (a .invalid domain the mail server refuses)"}


def call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool": tool, "arguments": arguments}


#: name → (department, query with raw personal data, script, extra context)
TASKS: dict[str, tuple[str, str, list[dict[str, Any]], dict[str, Any]]] = {
    "hr-employee": (
        "hr",
        "What are the contact details of Ahmed El Amrani (E-1009), and who is his manager?",
        [call("get_employee", employee_id="E-1009"), call("get_manager", employee_id="E-1009")],
        {"ticket": "raised by fleur.smit@acme-corp.nl"},
    ),
    "hr-find": (
        "hr",
        "Find Lotte Meijer in the staff directory and list her leave requests.",
        [call("find_employee", name="$NAME"),
         call("list_leave_requests", employee_id="E-1010")],
        {},
    ),
    "hr-team": (
        "hr",
        "Show the direct reports of E-1008 and E-1001 and the leave balance of E-1022, "
        "reject her request LR-0004, then list pending leave requests and LR-0001.",
        [call("list_direct_reports", manager_id="E-1008"),
         call("list_direct_reports", manager_id="E-1001"),
         call("get_leave_balance", employee_id="E-1022"),
         call("reject_leave_request", request_id="LR-0004",
              reason="Only 3 days of leave remain for 5 days asked."),
         call("list_leave_requests", status="pending"),
         call("get_leave_request", request_id="LR-0001")],
        {},
    ),
    "hr-approve": (
        "hr",
        "Approve leave request LR-0002 for Lotte Meijer and tell her by e-mail.",
        [call("get_leave_request", request_id="LR-0002"),
         call("approve_leave_request", request_id="LR-0002", note="Approved for $NAME."),
         call("get_employee", employee_id="E-1010"),
         call("send_email", to="$EMAIL", subject="Leave request LR-0002 approved",
              body="Dear $NAME, your leave request LR-0002 is approved.")],
        {},
    ),
    "hr-ids": (
        "hr",
        "The employee with phone +31652309965 and BSN 925040344, paid into "
        "NL91INGB6213354431, is E-1011: show the record and the manager.",
        [call("get_employee", employee_id="E-1011"), call("get_manager", employee_id="E-1011")],
        {},
    ),
    "hr-mail": (
        "hr",
        "Send pieter.jansen@acme-corp.nl a reminder that leave request LR-0013 is still "
        "pending.",
        [call("get_leave_request", request_id="LR-0013"),
         call("send_email", to="$EMAIL", subject="Reminder: leave request LR-0013",
              body="Leave request LR-0013 is still pending.")],
        {},
    ),
    "hr-errors": (
        "hr",
        "Look up the employee with e-mail sophie.devries@acme-corp.nl and send the record "
        "to audit@acme.invalid.",
        [call("get_employee", employee_id="$EMAIL"),  # fails the schema, quoting the value
         call("find_employee", name="Sophie"),
         call("send_email", to="$EMAIL[1]", subject="Employee record",
              body="The record of $NAME.")],  # the mail server refuses .invalid: 550
        {},
    ),
    "fin-vendor": (
        "finance",
        "Who is the contact at vendor V-0042, and what are the details of V-0017?",
        [call("get_vendor", vendor_id="V-0042"), call("get_vendor", vendor_id="V-0017")],
        {},
    ),
    "fin-iban": (
        "finance",
        "Which vendor is paid into IBAN NL38RABO1393328711? Its contact is Femke Visser.",
        [call("list_vendors"), call("list_vendors", country="NL")],
        {},
    ),
    "fin-mail": (
        "finance",
        "Vendor contact marco.ferraro@ferraro-componenti.it asked about invoice INV-1004; "
        "e-mail him its status.",
        [call("get_invoice", invoice_id="INV-1004"),
         call("send_email", to="$EMAIL", subject="Invoice INV-1004",
              body="Invoice INV-1004 is open and will be paid on its due date.")],
        {},
    ),
    "fin-name-search": (
        "finance",
        "Which vendor has Femke Visser as its contact?",
        [call("list_vendors", name="$NAME")],  # a name in a URL query (a model might)
        {},
    ),
}  # fmt: skip
#: The task whose name search puts a raw name in a URL, which the worker logs (a finding:
#: see test_url_query_parameters_stay_out_of_the_logs).
URL_TASK = "fin-name-search"
#: The task whose ``get_vendor`` results the model sees with ``contact_name`` raw.
ALLOWED_TASK = "fin-vendor"
ALLOWED_VENDORS = ("V-0042", "V-0017")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new Postgres database for a module of tests, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    name = f"umiq_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        unavailable(f"Postgres is not reachable at {POSTGRES_SERVER}: {exc.orig}")
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Run:
    """What one worker run left behind."""

    env: dict[str, str]
    task_ids: dict[str, str]
    results: dict[str, dict[str, Any]]
    prompts: list[dict[str, Any]]
    log_text: str
    rows: list[tuple[str, str]]
    messages: list[dict[str, Any]]
    raw: dict[str, str]

    def owner(self, text: str) -> str:
        """The id of the task whose record ``text`` is, or "?" when it names none."""
        decoded = "\n".join(texts(text))
        return next((t for t in self.task_ids.values() if f'"{t}"'.casefold() in decoded), "?")

    def leaks(self, where: str) -> list[Leak]:
        """The raw values found in the prompts, logs, database rows or task results."""
        haystack = {
            "prompts": [(f"prompt of task {p['task_id']} ({p['role']})", json.dumps(p))
                        for p in self.prompts],
            "logs": [(f"worker log line {n} of task {self.owner(line)}", line)
                     for n, line in enumerate(self.log_text.splitlines(), 1)],
            "database": [(f"table {table} row of task {self.owner(row)}", row)
                         for table, row in self.rows],
            "results": [(f"result of task {self.task_ids[name]}", json.dumps(r))
                        for name, r in self.results.items()],
        }[where]  # fmt: skip
        return search(self.raw, haystack)


def run_worker(
    base: Path,
    amqp_url: str,
    database_url: str,
    acme: Any,
    tasks: dict[str, tuple[str, str, list[dict[str, Any]], dict[str, Any]]],
    *,
    role_model: str,
    extra_env: dict[str, str],
    timeout: float,
    worker_args: tuple[str, ...] = (),
) -> Run:
    """Start ``umiq worker``, send ``tasks`` through RabbitMQ, stop it, collect the traces."""
    from worker.celery_app import TASK_NAME, create_app
    from worker.settings import Settings

    tag = uuid.uuid4().hex[:8]
    names_file = base / "known-names.txt"
    names_file.write_text("\n".join(acme_people(acme.data_dir)) + "\n", encoding="utf-8")
    prompt_log = base / "prompts.jsonl"
    log_path = base / "worker.log"
    env = dict(os.environ)
    env.update({
        "UMIQ_DATA_DIR": str(base / "data"),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": database_url,
        "UMIQ_QUEUE": f"umiq.test.{tag}",
        "UMIQ_DEAD_LETTER_QUEUE": f"umiq.test.{tag}.dead",
        "UMIQ_CONNECTORS": json.dumps(acme.connectors_config()),
        "UMIQ_ROLE_MODEL": role_model,
        "UMIQ_TEST_PROMPT_LOG": str(prompt_log),
        "UMIQ_PII_KNOWN_NAMES_FILE": str(names_file),
        "UMIQ_LOG_FORMAT": "json",
        **extra_env,
    })  # fmt: skip
    done = umiq(env, "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr

    task_ids = {name: f"leak-{tag}-{name}" for name in tasks}
    settings = Settings(
        data_dir=base / "client",
        broker_url=amqp_url,
        database_url=database_url,
        queue=env["UMIQ_QUEUE"],
        dead_letter_queue=env["UMIQ_DEAD_LETTER_QUEUE"],
    )
    app = create_app(settings)
    results: dict[str, dict[str, Any]] = {}
    try:
        with WorkerProcess(env, log_path, worker_args, cwd=REPO, ready_timeout=180):
            pending = {}
            for name, (department, query, script, context) in tasks.items():
                envelope = {
                    "task_id": task_ids[name],
                    "department": department,
                    "query": query,
                    "requested_by": "leak-test",
                    "context": {"script": script, **context},
                }
                pending[name] = app.send_task(TASK_NAME, args=[envelope])
            deadline = time.monotonic() + timeout
            for name, async_result in pending.items():
                results[name] = async_result.get(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        app.close()
    lines = prompt_log.read_text(encoding="utf-8").splitlines() if prompt_log.exists() else []
    return Run(
        env=env,
        task_ids=task_ids,
        results=results,
        prompts=[json.loads(line) for line in lines],
        log_text=log_path.read_text(encoding="utf-8", errors="replace"),
        rows=database_rows(database_url),
        messages=acme.messages(),
        raw={**acme_personal_values(acme.data_dir), **QUERY_ONLY},
    )


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory, amqp_url: str) -> Iterator[Run]:
    """Every task of TASKS run once by a real worker with the scripted role model."""
    from examples.acme.serve import start_acme

    base = tmp_path_factory.mktemp("leak")
    with fresh_database() as url, start_acme(base / "acme") as acme:
        yield run_worker(
            base, amqp_url, url, acme, TASKS,
            role_model="tests.support.scripted:factory",
            extra_env={
                "UMIQ_PII_ALLOW_RAW": json.dumps(ALLOW_RAW),
                "UMIQ_MAX_STEPS": "12",
                "UMIQ_DEPARTMENTS": _departments_mailing_acme_invalid(),
            },
            timeout=300,
        )  # fmt: skip


def _departments_mailing_acme_invalid() -> str:
    """The default departments, hr's mail also allowed to acme.invalid: hr-errors needs
    the mail server's refusal (by default an outside recipient waits for approval)."""
    from examples.acme.defaults import COMPANY_DOMAINS, outbound_mail_rules
    from worker.settings import world_departments

    departments = {name: d.model_dump() for name, d in world_departments("acme").items()}
    departments["hr"]["approvals"] = outbound_mail_rules([*COMPANY_DOMAINS, "acme.invalid"])
    return json.dumps(departments)


def allowed_values(run: Run) -> dict[str, str]:
    """The raw values the ALLOW_RAW policy shows the model: the contacts of ALLOWED_VENDORS."""
    return {
        value: what
        for value, what in run.raw.items()
        if what in {f"vendor {v} contact_name" for v in ALLOWED_VENDORS}
    }


def not_allowed(leaks: list[Leak], run: Run) -> list[str]:
    """The leaks that are not an allowed raw value in a record of the allowed task."""
    allowed = allowed_values(run)
    owner = f"task {run.task_ids[ALLOWED_TASK]}"
    return [str(leak) for leak in leaks if leak.value not in allowed or owner not in leak.where]


def test_every_task_ends_answered(scripted: Run) -> None:
    """Each scripted task runs to the summarizer's answer through the real worker."""
    outcomes = {name: r["outcome"] for name, r in scripted.results.items()}
    assert outcomes == dict.fromkeys(TASKS, "answered"), {
        name: r["reason"] for name, r in scripted.results.items()
    }


def test_the_scripted_calls_reach_the_tools(scripted: Run) -> None:
    """Each task's caller made the script's calls, in order, through the real worker."""
    for name, (_, _, script, _) in TASKS.items():
        task = scripted.task_ids[name]
        callers = [p for p in scripted.prompts if p["task_id"] == task and p["role"] == "caller"]
        assert [p["text"].split("\n", 1)[0] for p in callers] == [
            f"Action: {c['tool']}" for c in script
        ]


def test_no_raw_personal_data_in_prompts(scripted: Run) -> None:
    """No prompt holds a raw personal value, except the allowed field in its own task."""
    assert not_allowed(scripted.leaks("prompts"), scripted) == []


def test_allowed_raw_field_reaches_the_model_in_its_task(scripted: Run) -> None:
    """The contact names that UMIQ_PII_ALLOW_RAW allows are shown raw to that task's model."""
    owner = f"task {scripted.task_ids[ALLOWED_TASK]}"
    shown = {leak.value for leak in scripted.leaks("prompts") if owner in leak.where}
    assert shown == set(allowed_values(scripted))


def test_no_raw_personal_data_in_worker_logs(scripted: Run) -> None:
    """The worker's log output holds no raw personal value, not even an allowed one."""
    assert "ready" in scripted.log_text
    assert "<NAME>" in scripted.log_text  # the redactor masked the names in task results
    url_task = f"task {scripted.task_ids[URL_TASK]}"
    assert [str(leak) for leak in scripted.leaks("logs") if url_task not in leak.where] == []


def test_url_query_parameters_stay_out_of_the_logs(scripted: Run) -> None:
    """A raw name the connector sends as a URL query parameter is not in the worker's log."""
    url_task = f"task {scripted.task_ids[URL_TASK]}"
    assert [str(leak) for leak in scripted.leaks("logs") if url_task in leak.where] == []


def test_no_raw_personal_data_in_the_database(scripted: Run) -> None:
    """No row of any table holds a raw personal value, except the allowed field in its task."""
    tables = {table for table, _ in scripted.rows}
    assert {"task", "step", "tool_call", "sealed_key", "celery_taskmeta"} <= tables
    assert not_allowed(scripted.leaks("database"), scripted) == []


def test_no_raw_personal_data_in_task_results(scripted: Run) -> None:
    """The results the producer gets back hold tokens, except the allowed field in its task."""
    assert not_allowed(scripted.leaks("results"), scripted) == []


def test_leak_search_sees_inside_every_store(scripted: Run) -> None:
    """The search is not blind: it finds the allowed values in step rows and binary results."""
    allowed = allowed_values(scripted)
    tables = {
        leak.where.split(" row ")[0] for leak in scripted.leaks("database") if leak.value in allowed
    }
    assert {"table step", "table celery_taskmeta"} <= tables


def test_mail_server_receives_the_real_addresses(scripted: Run) -> None:
    """send_email to a token delivers to the raw address the token stands for."""
    delivered = {tuple(m["to"]): m for m in scripted.messages}
    assert set(delivered) == {
        ("lotte.meijer@acme-corp.nl",),
        ("pieter.jansen@acme-corp.nl",),
        ("marco.ferraro@ferraro-componenti.it",),
    }
    assert delivered[("lotte.meijer@acme-corp.nl",)]["body"] == (
        "Dear Lotte Meijer, your leave request LR-0002 is approved."
    )


def test_refused_recipient_error_reaches_the_model_tokenized(scripted: Run) -> None:
    """The mail server's refusal quoting the raw address reaches the planner as a token."""
    task = scripted.task_ids["hr-errors"]
    last_planner = [p for p in scripted.prompts if p["task_id"] == task and p["role"] == "planner"]
    assert "the mail server refused recipient <EMAIL_2>" in last_planner[-1]["prompt"]
    # The schema error quotes the raw address it refused: it arrives as a token too.
    assert re.search(r"employee_id: '?<EMAIL_\d+>'? does not match", last_planner[-1]["prompt"])


def decrypt(run: Run, name: str) -> str:
    done = umiq(run.env, "keys", "decrypt", run.task_ids[name])
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("hr-employee", ["Ahmed El Amrani", "ahmed.elamrani@acme-corp.nl", "+31692899913",
                         "NL17RABO7531555728", "256349885", "fleur.smit@acme-corp.nl"]),
        ("hr-mail", ["pieter.jansen@acme-corp.nl", "Pieter Jansen"]),
        ("hr-ids", ["+31652309965", "925040344", "NL91INGB6213354431"]),
        ("fin-iban", ["NL38RABO1393328711", "Femke Visser", "PL95841972076984564280715084"]),
    ],
)  # fmt: skip
def test_sealed_records_give_back_the_raw_values(
    scripted: Run, name: str, values: list[str]
) -> None:
    """`umiq keys decrypt` opens the task's sealed query, token map and tool calls."""
    opened = decrypt(scripted, name)
    assert [v for v in values if v not in opened] == []


def test_audit_chain_verifies(scripted: Run) -> None:
    """`umiq audit verify` passes over everything the worker wrote."""
    done = umiq(scripted.env, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr


REAL_TASKS = {
    "real-email": (
        "hr",
        "What is the e-mail address of Ahmed El Amrani?",
        [],
        {},
    ),
    "real-balance": (
        "hr",
        "How many days of leave does Iris van Dijk (E-1022) have left?",
        [],
        {},
    ),
}


@pytest.mark.real_model
def test_real_role_models_see_and_leave_no_raw_personal_data(
    tmp_path: Path, amqp_url: str, model_dir: Path
) -> None:
    """With the shipped role models, no raw personal value lands in prompts, logs or rows."""
    from examples.acme.serve import start_acme

    with fresh_database() as url, start_acme(tmp_path / "acme") as acme:
        run = run_worker(
            tmp_path, amqp_url, url, acme, REAL_TASKS,
            role_model="tests.support.scripted:recording_factory",
            extra_env={"UMIQ_MODEL_DIR": str(model_dir), "UMIQ_MAX_STEPS": "3",
                       "UMIQ_MAX_NEW_TOKENS": "32"},
            timeout=900,
            # Two episodes at once, as a busy worker runs them.
            worker_args=("--concurrency", "2"),
        )  # fmt: skip
        verify = umiq(run.env, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ended = {"answered", "held", "gave_up", "step_limit"}
    assert {r["outcome"] for r in run.results.values()} <= ended
    assert {p["task_id"] for p in run.prompts} == set(run.task_ids.values())
    leaks = [str(leak) for where in ("prompts", "logs", "database") for leak in run.leaks(where)]
    assert leaks == []
