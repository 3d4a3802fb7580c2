"""Typed audit events: one payload type per step kind, exact both ways."""

from __future__ import annotations

from worker.agent.episode import APPROVAL_REQUESTED as EPISODE_REQUESTED
from worker.audit import STEP_KINDS
from worker.audit.events import (
    APPROVAL_REQUESTED,
    DETAILS,
    STEP_KIND_NAMES,
    OutcomeDetails,
    PolicyDetails,
    details_of,
)


def test_every_step_kind_has_its_payload_type() -> None:
    """The event kinds are the table's step kinds, each with a details type."""
    assert tuple(STEP_KINDS) == STEP_KIND_NAMES
    assert set(DETAILS) == set(STEP_KINDS)


def test_the_episode_asks_for_approval_with_the_events_status() -> None:
    """The episode's approval request status is the one the readers look for."""
    assert EPISODE_REQUESTED == APPROVAL_REQUESTED


def test_a_built_payload_writes_only_what_it_was_given() -> None:
    """Fields left None are not written; a key read as null is written back as null."""
    assert OutcomeDetails(outcome="held", reason="r").to_details() == {
        "outcome": "held",
        "reason": "r",
    }
    read = {"policy": "claims", "allowed": True, "tool": None, "reasons": []}
    assert PolicyDetails.from_details(read).to_details() == read


def test_unnamed_keys_ride_along() -> None:
    """A key the type does not name (a sealed entry) is kept as it is."""
    details = {"policy": "minimization", "query": {"$sealed": {"v": 1}}}
    event = details_of({"kind": "policy", "details": details})
    assert isinstance(event, PolicyDetails)
    assert event.extra == {"query": {"$sealed": {"v": 1}}}
    assert event.to_details() == details


def test_details_that_are_not_a_mapping_read_as_empty() -> None:
    """A details value sealed or concealed whole reads as an empty payload."""
    assert details_of({"kind": "outcome", "details": "[sealed]"}).to_details() == {}
