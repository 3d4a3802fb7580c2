"""Celery's argsrepr/kwargsrepr for umiq tasks: the task id and department only."""

from __future__ import annotations

import pytest

from worker.task_repr import redact_headers, redacted_reprs

ENVELOPE = {
    "task_id": "t-1",
    "department": "finance",
    "query": "Pay Wilhelmina Zwartkop into NL91ABNA0417164300",
    "requested_by": "Wilhelmina Zwartkop",
    "context": {"note": "+31 6 4829 1735"},
}


def test_run_task_shows_task_id_and_department() -> None:
    """A run_task call is shown as its envelope's task id and department."""
    assert redacted_reprs("umiq.run_task", [ENVELOPE], {}) == (
        "(<envelope task_id=t-1 department=finance>,)",
        "{}",
    )


def test_run_task_by_keyword_is_redacted_alike() -> None:
    """An envelope passed as the ``envelope`` keyword shows the same two fields only."""
    args, kwargs = redacted_reprs("umiq.run_task", [], {"envelope": ENVELOPE})
    assert (args, kwargs) == ("()", "{'envelope': <envelope task_id=t-1 department=finance>}")


@pytest.mark.parametrize(
    "envelope",
    [
        {**ENVELOPE, "task_id": "Wilhelmina Zwartkop", "department": "NL91ABNA0417164300"},
        {**ENVELOPE, "task_id": ["x"], "department": None},
        "Wilhelmina Zwartkop",
    ],
)
def test_malformed_fields_are_not_shown(envelope: object) -> None:
    """A task id or department not in the envelope's form is shown as '?', never quoted."""
    args, _ = redacted_reprs("umiq.run_task", [envelope], {})
    assert "Zwartkop" not in args and "NL91" not in args
    assert args in ("(<envelope task_id=? department=?>,)",)


def test_resume_task_shows_its_task_id() -> None:
    """A resume names its task only."""
    assert redacted_reprs("umiq.resume_task", ["t-1", "t-1:3"], {}) == ("(task_id=t-1,)", "{}")


def test_other_tasks_show_only_counts() -> None:
    """Any other task's arguments are counted, not shown."""
    assert redacted_reprs("celery.ping", ["secret", 2], {"a": "b"}) == (
        "<2 argument(s) redacted>",
        "<1 keyword argument(s) redacted>",
    )


def test_headers_are_rewritten_in_place() -> None:
    """A message's raw argsrepr from any producer is replaced from its body."""
    headers = {"task": "umiq.run_task", "argsrepr": repr([ENVELOPE]), "kwargsrepr": "{}"}
    redact_headers(headers, [[ENVELOPE], {}, {}])
    assert headers["argsrepr"] == "(<envelope task_id=t-1 department=finance>,)"


def test_published_messages_carry_the_redacted_reprs() -> None:
    """Publishing through umiq's Celery app puts the redacted reprs in the message headers."""
    from celery.signals import before_task_publish

    import worker.celery_app  # noqa: F401  (connects the publish hook)

    headers = {"task": "umiq.run_task", "argsrepr": repr((ENVELOPE,)), "kwargsrepr": "{}"}
    before_task_publish.send(sender="umiq.run_task", body=([ENVELOPE], {}, {}), headers=headers)
    assert headers["argsrepr"] == "(<envelope task_id=t-1 department=finance>,)"
