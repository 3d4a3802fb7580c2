"""A shadow run of Acme test tasks in finance on RabbitMQ, Postgres, the Acme systems and
a real worker, the expert playing the agent: every task agrees with the person's outcome
taken from the expert's trajectory and passes the world's checker (its writes made as
dry-run, on reset systems), and a person who did one task differently shows in the
agreement but not in the checker's pass rate."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from examples.acme.shadow import HumanOutcome, ShadowConfig, run_shadow
from tests.support.cli import umiq
from worker.audit import AuditLog
from worker.rollout import store_for
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# a read, a payment, a dispute with a mail to the vendor, and a task to give up on
FAMILIES = ["invoice_status", "schedule_payment", "dispute_and_notify_vendor", "out_of_scope"]


@pytest.fixture
def services(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, amqp_url: str, postgres_url: str
) -> str:
    for name in [k for k in os.environ if k.startswith("UMIQ_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("UMIQ_BROKER_URL", amqp_url)
    monkeypatch.setenv("UMIQ_DATABASE_URL", postgres_url)
    monkeypatch.setenv("UMIQ_ALLOW_PRIVILEGED_LOGIN", "1")  # the worker logs in as postgres
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path / "client"))
    done = umiq(dict(os.environ), "db", "upgrade")
    assert done.returncode == 0, done.stdout + done.stderr
    return postgres_url


def config(tmp_path: Path, **changes: Any) -> ShadowConfig:
    return ShadowConfig(
        out=tmp_path / "out", per_family=1, families=FAMILIES, by="head of finance",
        timeout=120, ready_timeout=180, **changes,
    )  # fmt: skip


def test_the_expert_as_agent_agrees_with_every_person(services: str, tmp_path: Path) -> None:
    """Every task ran in shadow, its writes dry-run, and agrees with the expert's outcome;
    finance is back in its mode afterwards, both changes audited."""
    audit = AuditLog.from_url(services)
    store = store_for(audit, Settings())
    mode = store.live("finance").settings.mode
    result = run_shadow(config(tmp_path), progress=lambda _: None)
    figures = result.report
    assert sorted(t.family for t in result.tasks) == sorted(FAMILIES)
    assert figures["by_mode"] == {"shadow": 4}
    assert figures["outcomes"] == {"shadow": {"handled_by_human": 4}}
    assert figures["shadow_outcomes"] == {"answered": 3, "gave_up": 1}
    # the payment, the dispute and the mail were dry-run; nothing was written
    assert figures["writes"] == {"made": 0, "dry_run": 3, "stopped": 0, "failed": 0}
    agreement = figures["shadow_agreement"]
    assert (agreement["compared"], agreement["agree"], agreement["rate"]) == (4, 4, 1.0)
    assert agreement["same_writes"] == 4 and agreement["same_answer"] == 3
    assert figures["pass_rate"]["rate"] == 1.0
    # the checker's verdicts were recorded by the run, beside the people's agreement
    by_source = figures["pass_rate"]["by_source"]
    assert by_source["checker"] == {"judged": 4, "passed": 4, "rate": 1.0}
    assert by_source["shadow agreement"] == {"judged": 4, "passed": 4, "rate": 1.0}
    assert all(t.checker["passed"] and not t.checker["reasons"] for t in result.tasks)
    made = {t.family: t.checker["writes_made"] for t in result.tasks}
    assert made == {"invoice_status": 0, "schedule_payment": 1,
                    "dispute_and_notify_vendor": 2, "out_of_scope": 0}  # fmt: skip
    assert (tmp_path / "out" / "shadow.png").read_bytes()[:4] == b"\x89PNG"

    try:
        changes = [c for c in store.history("finance") if c.changed_by == "head of finance"]
        assert mode != "shadow" and [c.after["mode"] for c in changes] == ["shadow", mode]
        assert store.live("finance").settings.mode == mode
        assert audit.verify().ok
    finally:
        audit.close()


def test_a_person_who_did_a_task_differently_lowers_the_agreement(
    services: str, tmp_path: Path
) -> None:
    """One task whose person disputed for another reason disagrees on its writes; the
    checker still passes the agent's run, so the pass rate stays whole."""

    def person(uid: str, gold: HumanOutcome) -> HumanOutcome:
        if not uid.startswith("dispute_and_notify_vendor."):
            return gold
        (tool, arguments), *rest = gold.writes
        other = {**arguments, "reason": "the vendor asked us to"}
        return replace(gold, writes=((tool, other), *rest))

    result = run_shadow(config(tmp_path, human=person), progress=lambda _: None)
    agreement = result.report["shadow_agreement"]
    assert (agreement["compared"], agreement["agree"]) == (4, 3)
    assert agreement["same_writes"] == 3 and agreement["same_outcome"] == 4
    rates = result.report["pass_rate"]
    assert rates["by_source"]["shadow agreement"] == {"judged": 4, "passed": 3, "rate": 0.75}
    assert rates["by_source"]["checker"] == {"judged": 4, "passed": 4, "rate": 1.0}
    # a checker's verdict outranks the agreement: the task counts once, as the checker says
    assert (rates["judged"], rates["passed"]) == (4, 4)
    (odd,) = [t for t in result.tasks if not t.agreement["agree"]]
    assert odd.family == "dispute_and_notify_vendor" and odd.agreement["writes"] is False
