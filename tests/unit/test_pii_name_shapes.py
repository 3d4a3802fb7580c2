"""Names in no record whose given name no gazetteer holds, found by their shape (issue
21): capitalized words none of which is a common word; companies, products, phrases, ids
and the back office's own vocabulary are left alone."""

from __future__ import annotations

import pytest

from examples.acme.erp.seed import CATALOG, VENDORS
from examples.acme.hr.seed import DEPARTMENTS, EMPLOYEES
from examples.acme.tasks.catalogue import UNKNOWN_VENDORS
from examples.acme.tasks.families_hr import UNKNOWN_PEOPLE
from policies import Detector
from policies._name_shapes import name_shape_spans

DIRECTORY = ["Lotte Meijer", "Iris van Dijk", "Ahmed El Amrani", "Marco Ferraro"]
DETECTOR = Detector(DIRECTORY)

#: Names of many origins, none in the gazetteer of ``policies._names`` nor the directory.
UNSEEN = [
    "Henrik Larsson", "Ingrid Bjørnstad", "Sigrún Jónsdóttir", "Mikko Virtanen",  # Nordic
    "Aoife Byrne", "Niamh O'Sullivan", "Siobhan McCarthy",  # Irish
    "Kenji Sato", "Haruto Takahashi", "Yui Nakamura",  # Japanese
    "Priya Raghunathan", "Arjun Venkataraman", "Lakshmi Iyer",  # Indian
    "Małgorzata Wiśniewska", "Grzegorz Brzęczyszczykiewicz",  # Polish
    "Itziar Goikoetxea", "Alejandro Fernández de Córdoba", "Raúl Domínguez",  # Spanish
    "Chukwuemeka Okonkwo", "Oluwaseun Adeyemi", "Ngozi Eze",  # Nigerian
    "Wei Zhang", "Xiaoming Li", "Zhou Xinyi",  # Chinese, romanized
    "Nguyen Thi Lan", "Dimitrios Papadopoulos", "Zsófia Kovács", "Tuğba Yıldırım",
    "Kwame Mensah", "Chloé Martin",  # Martin: a surname that is also a word
]  # fmt: skip

#: Request sentences, as the catalogue and people write them.
SENTENCES = [
    "How many days of leave does {name} have left?",
    "Who is {name}'s manager?",
    "Approve {name}'s pending leave request.",
    "Send {name}'s manager a reminder about their leave.",
    "{name} called about invoice INV-1001.",
    "please ask {name} about it",
    "Which department does {name} work in?",
]


@pytest.mark.parametrize("name", [*UNSEEN, *UNKNOWN_PEOPLE])
@pytest.mark.parametrize("sentence", SENTENCES)
def test_a_name_of_any_origin_is_found_whole(name: str, sentence: str) -> None:
    """An unseen name (the catalogue's people in no record, names of many origins) in a
    request sentence is one whole NAME span."""
    text = sentence.format(name=name)
    assert ("NAME", name) in [(s.kind.value, s.value) for s in DETECTOR.find(text)]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("please ask Zwartkop about it", "Zwartkop"),
        ("Dear Aoife, the invoice is paid.", "Aoife"),
        ("cc Tanaka on the reply", "Tanaka"),
        ("Mail Sophie d'Ancona today.", "Sophie d'Ancona"),
        ("please ask Grace Taylor about it", "Grace Taylor"),
    ],
)
def test_a_lone_word_after_a_person_cue_and_an_elided_particle(text: str, name: str) -> None:
    """One unknown capitalized word after a person cue is a name, and a surname with an
    elided particle is taken whole."""
    assert ("NAME", name) in [(s.kind.value, s.value) for s in DETECTOR.find(text)]


NOT_NAMES = [
    # sentence starts, products, phrases and ids (ToolBench's queries among them)
    "Calculate the Basal Metabolic Rate and Total Metabolic Rate for a 60-year-old.",
    "I want to use the Suggestic Food & Meal Plan API to track meal plans.",
    "Provide the maintainer information of Judge0 Extra CE.",
    "Can you provide the value of the key 'user_data' in my KVStore collection?",
    "Find me companies similar to Microsoft using their website as a reference.",
    "I'm planning a family trip from Lucerne to Interlaken on 8th April 2022.",
    "Properties for sale in Brownsville, TX using the Search API.",
    "Approve LR-0013 and pay INV-1001 on Monday.",
    # a single unknown word with no cue before it: a place or a product as often
    "Ship it to Zwolle.",
    # a word that is also a name, first in a sentence: its capital says nothing
    "Reading Acme's defaults imports no service.",
    "Bill Tyrell for the repairs.",
    # titles: the title rule finds the name after them, without the title
    "Mrs Zwartkop phoned.",
    # companies: a capitalized word, a company word or & around the run
    "Kenji Sato Logistics sent an invoice.",
    "Invoice from Okonkwo & Mensah.",
    "Pay Globex Handels GmbH today.",
]


@pytest.mark.parametrize("text", NOT_NAMES)
def test_phrases_products_ids_and_companies_are_no_names(text: str) -> None:
    """Capitalized text that is no person's name gives no NAME span by its shape."""
    assert list(name_shape_spans(text)) == []


def _back_office_terms() -> list[str]:
    """The Acme systems' own capitalized vocabulary: vendors (known and unknown), job
    titles, departments, catalogue items."""
    return [
        *(name for _, name, *_ in VENDORS),
        *UNKNOWN_VENDORS,
        *(title for _, _, title, *_ in EMPLOYEES),
        *(name for _, name, _ in DEPARTMENTS),
        *(description for _, description, _ in CATALOG),
    ]


@pytest.mark.parametrize("term", _back_office_terms())
@pytest.mark.parametrize(
    "sentence",
    ["{term}", "Who is our contact at {term}?", "Pay {term} today.", "{term} sent an invoice."],
)
def test_the_back_office_vocabulary_is_no_name(term: str, sentence: str) -> None:
    """Vendor names, job titles, departments and items, alone or in a request, are not
    taken for a person's name by their shape (the agent needs them)."""
    assert list(name_shape_spans(sentence.format(term=term))) == []


def test_the_shape_rule_can_be_switched_off() -> None:
    """name_shapes=False (and given_names=False) finds names only as before the rule."""
    text = "Does Kenji Sato have leave left?"
    assert [s.value for s in Detector(DIRECTORY).find(text)] == ["Kenji Sato"]
    assert Detector(DIRECTORY, name_shapes=False).find(text) == []
    assert Detector(DIRECTORY, given_names=False).find(text) == []


def test_a_directory_given_name_is_a_name_word_even_when_a_word() -> None:
    """A given name of the gazetteer or the directory counts as a name word whatever the
    lexicon says of it."""
    text = "Does Sunday Adeyemi work here?"  # Sunday: a Nigerian given name, and a day
    assert list(name_shape_spans(text)) == []
    assert list(name_shape_spans(text, frozenset({"sunday"}))) == [(5, 19)]
