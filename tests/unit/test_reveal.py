"""Revealing an answer: the model answers in tokens, the requester and checkers read raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import ToolCall, ToolResult, ToolSpec
from connectors.testing import FunctionConnector
from policies._crypto import KeyRing, new_key
from tests.support.scripted import ScriptedRoleModel
from worker.agent.episode import Episode
from worker.agent.guard import Guard, restore_tokens, reveal
from worker.audit import AuditLog, ensure_schema
from worker.audit.sealing import Sealer
from worker.envelope import Envelope
from worker.settings import DepartmentSettings, Settings
from worker.toolbox import Toolbox

CONTACT = "anna.jansen@example.org"
PHONE = "+31 20 555 0134"


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    ensure_schema(url)
    return AuditLog.from_url(url, sealer=Sealer(KeyRing({"k1": new_key()}, "k1")))


def run_episode(audit: AuditLog, tmp_path: Path) -> str:
    spec = ToolSpec(
        "get_vendor",
        "Get a vendor.",
        {"type": "object", "properties": {"vendor_id": {"type": "string"}}},
        connector="erp",
    )

    def erp(call: ToolCall, key: str) -> ToolResult:
        return ToolResult(ok=True, data={"id": "V-1", "email": CONTACT, "phone": PHONE})

    settings = Settings(
        data_dir=tmp_path,
        departments={"finance": DepartmentSettings(tools=["erp:*"])},
        minimization={"*": None},  # keep every field (minimization denies by default)
    )
    envelope = Envelope(
        task_id="t-reveal", department="finance", query="Who is V-1's contact?", requested_by="a"
    )
    script = [{"tool": "get_vendor", "arguments": {"vendor_id": "V-1"}}]
    result = Episode(
        envelope,
        model=ScriptedRoleModel(lambda: script),
        toolbox=Toolbox([FunctionConnector("erp", [spec], erp)]),
        guard=Guard.for_department(settings, "finance"),
        audit=audit,
        max_steps=4,
    ).run()
    assert result.outcome == "answered"
    return result.answer


def test_reveal_gives_the_raw_values_of_the_tokens_in_an_answer(audit, tmp_path):
    """The answer holds tokens only; reveal() restores the raw values from the sealed map."""
    answer = run_episode(audit, tmp_path)
    assert CONTACT not in answer and "<EMAIL_1>" in answer
    revealed = reveal(audit, "t-reveal", answer)
    assert CONTACT in revealed and "<EMAIL_1>" not in revealed
    assert restore_tokens(audit, "t-reveal")["<EMAIL_1>"] == CONTACT


def test_reveal_leaves_text_of_a_task_without_tokens_alone(audit):
    """A task that never sealed a token map (or unknown) keeps its text as it is."""
    assert reveal(audit, "no-such-task", "status <EMAIL_9> open") == "status <EMAIL_9> open"


def test_reveal_needs_the_key_ring(audit, tmp_path):
    """Without the key ring the sealed map cannot be opened: an error, not the tokens."""
    answer = run_episode(audit, tmp_path)
    unsealed = AuditLog(audit.engine)
    with pytest.raises(Exception, match=r"(?i)seal|key"):
        reveal(unsealed, "t-reveal", answer)
