"""Names in no record and after no title, found by their given name (issue 21, item 4):
the built-in gazetteer and the directory's given names start a name; common words,
months and companies do not."""

from __future__ import annotations

import pytest

from policies import Detector

DIRECTORY = ["Lotte Meijer", "Iris van Dijk", "Ahmed El Amrani", "Marco Bianchi"]
DETECTOR = Detector(DIRECTORY)

#: text → the name in it (in no record of DIRECTORY, no title before it)
NAMES = {
    "send it to jan de vries": "jan de vries",
    "Send it to Jan de Vries.": "Jan de Vries",
    "Wilhelmina called about the invoice": "Wilhelmina",
    "please ask Thomas Verbeek about it": "Thomas Verbeek",
    "cc sanne kuipers on the reply": "sanne kuipers",
    "Mark van der Berg approved it": "Mark van der Berg",
    "per Mehmet Yilmaz: pay it": "Mehmet Yilmaz",
    "mail jürgen schäfer today": "jürgen schäfer",
    "Approve Fatima Benali's leave": "Fatima Benali",
    "ask Marco Rossi": "Marco Rossi",  # "Marco": a given name of the directory
}

#: texts with no person's name in them
NOT_NAMES = [
    "mark the invoice as paid",
    "Mark INV-1001 as paid",
    "due 15 Jan 2025",
    "Will you pay INV-1001?",
    "ik wil de factuur betalen",
    "ik ben de eigenaar",
    "pay Van Dijk Logistics B.V. today",
    "Sophie Bakker Logistics sent an invoice",
    "What is the status of invoice INV-1001?",
    "the payment of May 3 is late",
]


@pytest.mark.parametrize("text", NAMES)
def test_a_name_in_no_record_is_found_by_its_given_name(text: str) -> None:
    """The whole name (given name, particles, surname) is one NAME span."""
    assert ("NAME", NAMES[text]) in [(s.kind.value, s.value) for s in DETECTOR.find(text)]


@pytest.mark.parametrize("text", NOT_NAMES)
def test_words_months_and_companies_are_no_names(text: str) -> None:
    """A given name that is a word or a month, or a company's name, is not a NAME."""
    assert [s.value for s in DETECTOR.find(text) if s.kind.value == "NAME"] == []


def test_the_mechanism_can_be_switched_off() -> None:
    """given_names=False finds no name outside the records (as before the gazetteer)."""
    off = Detector(DIRECTORY, given_names=False)
    assert [s for s in off.find("send it to jan de vries") if s.kind.value == "NAME"] == []


def test_a_possessive_is_not_part_of_the_name() -> None:
    """``Fatima Benali's`` gives the span ``Fatima Benali``, as the records' names do."""
    [span] = [s for s in DETECTOR.find("Approve Fatima Benali's leave") if s.kind.value == "NAME"]
    assert span.value == "Fatima Benali"
