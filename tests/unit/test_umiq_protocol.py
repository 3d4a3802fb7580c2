"""umiq_protocol is the α-UMi protocol on its own; worker.agent.protocol is the same in
umiq's error tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import umiq_protocol
from worker.agent import protocol
from worker.errors import AgentError, ProtocolError, UmiqError

ROOT = Path(__file__).parents[2]
TOOLS = [{"Name": "get_invoice", "function": "One invoice.", "input": {"invoice_id": "string"}}]
TURNS = [{"from": "user", "value": "Status of INV-1004?"}]


def test_the_package_raises_its_own_error() -> None:
    """A malformed caller output raises umiq_protocol.ProtocolError, outside umiq's tree."""
    with pytest.raises(umiq_protocol.ProtocolError, match="Action") as caught:
        umiq_protocol.parse_caller("no call here")
    assert not isinstance(caught.value, UmiqError)


def test_the_products_view_raises_umiqs_error() -> None:
    """Through worker.agent.protocol the same failure is an AgentError and still the
    package's error, with the package's message."""
    with pytest.raises(ProtocolError, match="Action") as caught:
        protocol.parse_caller("no call here")
    assert isinstance(caught.value, AgentError)
    assert isinstance(caught.value, umiq_protocol.ProtocolError)
    with pytest.raises(ProtocolError, match="'system'"):
        protocol.history_string([{"from": "system", "value": "x"}])


def test_both_views_build_the_same_prompts() -> None:
    """The product's functions return byte for byte what the package's return."""
    assert protocol.planner_prompt(TOOLS, TURNS) == umiq_protocol.planner_prompt(TOOLS, TURNS)
    text = protocol.format_caller("get_invoice", {"invoice_id": "INV-1004"})
    assert protocol.parse_caller(text) == umiq_protocol.parse_caller(text)
    assert protocol.CALLER is umiq_protocol.CALLER


def test_the_package_imports_alone() -> None:
    """Importing umiq_protocol loads none of worker, connectors, policies or torch."""
    code = (
        "import sys, umiq_protocol\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('worker', 'connectors', 'policies', 'examples', 'torch'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""
