"""Pseudonymization: stable per-task tokens out, raw values back in, invented tokens caught."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Detector, Pseudonymizer

NAMES = ("Marieke van den Berg", "Pieter Jansen", "Jan-Willem de Boer", "Ahmed El Amrani")
DETECTOR = Detector(known_names=NAMES)


def fresh() -> Pseudonymizer:
    return Pseudonymizer(DETECTOR)


def test_same_raw_value_gets_the_same_token() -> None:
    """A value seen twice, in one call or two, gets one token."""
    p = fresh()
    first = p.tokenize("mail jan@example.org and jan@example.org")
    second = p.tokenize({"to": "jan@example.org"})
    assert first == "mail <EMAIL_1> and <EMAIL_1>"
    assert second == {"to": "<EMAIL_1>"}


def test_tokens_are_numbered_per_kind() -> None:
    """Each kind counts its own tokens from 1 in order of first sight."""
    p = fresh()
    text = p.tokenize("a@x.nl b@x.nl NL91ABNA0417164300 c@x.nl DE89370400440532013000")
    assert text == "<EMAIL_1> <EMAIL_2> <IBAN_1> <EMAIL_3> <IBAN_2>"


def test_tokenize_walks_json_like_values() -> None:
    """Strings nested in dicts and lists are tokenized; other scalars and keys are kept."""
    p = fresh()
    response = {
        "id": "E-1002",
        "name": "Pieter Jansen",
        "contact": {"phones": ["+31612345678", "none"]},
        "salary": 98000,
        "rate": 1.5,
        "active": True,
        "manager": None,
    }
    assert p.tokenize(response) == {
        "id": "E-1002",
        "name": "<NAME_1>",
        "contact": {"phones": ["<PHONE_1>", "none"]},
        "salary": 98000,
        "rate": 1.5,
        "active": True,
        "manager": None,
    }


def test_dict_keys_are_untouched() -> None:
    """Keys stay as they are, even when they hold personal data."""
    assert fresh().tokenize({"jan@example.org": 1}) == {"jan@example.org": 1}


def test_tuples_are_walked_as_lists() -> None:
    """A tuple is tokenized like a list and comes back as a list."""
    assert fresh().tokenize(("jan@example.org",)) == ["<EMAIL_1>"]


def test_integers_that_are_card_numbers_or_bsns_are_tokenized() -> None:
    """An integer card number or BSN becomes its token; other integers stay."""
    p = fresh()
    assert p.tokenize([4111111111111111, 123456782, 125000, True]) == [
        "<CARD_1>",
        "<NATIONAL_ID_1>",
        125000,
        True,
    ]


def test_tokenized_integer_comes_back_as_digits() -> None:
    """A tokenized integer resolves to its digit string (tokens carry no type)."""
    p = fresh()
    assert p.detokenize(p.tokenize({"card": 4111111111111111})) == {"card": "4111111111111111"}


def test_existing_tokens_are_left_as_they_are() -> None:
    """Tokenizing text that already holds tokens keeps them and counts nothing for them."""
    p = fresh()
    once = p.tokenize("pay NL91ABNA0417164300")
    twice, counts = p.tokenize_counted(f"{once} or <IBAN_7>, mail a@x.nl")
    assert twice == "pay <IBAN_1> or <IBAN_7>, mail <EMAIL_1>"
    assert counts == {"EMAIL": 1}


def test_counts_are_per_kind_in_kind_order() -> None:
    """tokenize_counted reports how many values of each kind it replaced."""
    _, counts = fresh().tokenize_counted(["Pieter Jansen", "a@x.nl", "a@x.nl"])
    assert counts == {"EMAIL": 2, "NAME": 1}
    assert list(counts) == ["EMAIL", "NAME"]


def test_allow_raw_paths_are_not_tokenized() -> None:
    """Values under allow_raw paths are copied raw; the rest is tokenized."""
    p = fresh()
    response = [{"name": "Pieter Jansen", "email": "pieter@x.nl", "bank": {"iban": "x"}}]
    assert p.tokenize(response, allow_raw=("[].name",)) == [
        {"name": "Pieter Jansen", "email": "<EMAIL_1>", "bank": {"iban": "x"}}
    ]


def test_allow_raw_dict_path_keeps_its_subtree_raw() -> None:
    """An allow_raw path naming a dict keeps everything under it raw."""
    vendor = {"contact": "a@x.nl", "iban": "NL91ABNA0417164300"}
    assert fresh().tokenize({"vendor": vendor}, allow_raw=("vendor",)) == {"vendor": vendor}


def test_tokenize_does_not_modify_its_input() -> None:
    """tokenize returns a copy and leaves the input as it was."""
    value = {"a": ["jan@example.org", {"b": "NL91ABNA0417164300"}]}
    before = copy.deepcopy(value)
    fresh().tokenize(value)
    assert value == before


def test_detokenize_replaces_whole_and_embedded_tokens() -> None:
    """Known tokens are resolved whether they are a whole string or inside one."""
    p = fresh()
    p.tokenize("jan@example.org NL91ABNA0417164300")
    arguments = {"to": "<EMAIL_1>", "body": "Paid to <IBAN_1>.", "n": 2, "cc": ["<EMAIL_1>"]}
    assert p.detokenize(arguments) == {
        "to": "jan@example.org",
        "body": "Paid to NL91ABNA0417164300.",
        "n": 2,
        "cc": ["jan@example.org"],
    }


def test_detokenize_leaves_unknown_tokens() -> None:
    """An unknown token is left as text by detokenize (callers check unknown_tokens)."""
    assert fresh().detokenize("to <EMAIL_3>") == "to <EMAIL_3>"


def test_unknown_tokens_are_listed_once() -> None:
    """unknown_tokens lists every token-shaped string the map lacks, once, in order."""
    p = fresh()
    p.tokenize("NL91ABNA0417164300")
    arguments = {"iban": "<IBAN_7>", "also": ["<IBAN_1>", "<EMAIL_2> <IBAN_7>"]}
    assert p.unknown_tokens(arguments) == ["<IBAN_7>", "<EMAIL_2>"]


def test_known_tokens_are_not_unknown() -> None:
    """Tokens this task handed out are not reported."""
    p = fresh()
    visible = p.tokenize({"email": "a@x.nl"})
    assert p.unknown_tokens(visible) == []


def test_mapping_is_token_to_raw() -> None:
    """mapping gives every token with its raw value."""
    p = fresh()
    p.tokenize("a@x.nl NL91ABNA0417164300")
    assert p.mapping() == {"<EMAIL_1>": "a@x.nl", "<IBAN_1>": "NL91ABNA0417164300"}


def test_from_mapping_restores_tokens_and_numbering() -> None:
    """A pseudonymizer restored from a map resolves old tokens and numbers new ones after."""
    p = fresh()
    p.tokenize("a@x.nl b@x.nl")
    restored = Pseudonymizer.from_mapping(DETECTOR, p.mapping())
    assert restored.tokenize("b@x.nl c@x.nl") == "<EMAIL_2> <EMAIL_3>"
    assert restored.detokenize("<EMAIL_1>") == "a@x.nl"


@pytest.mark.parametrize(
    "mapping",
    [
        {"EMAIL_1": "a@x.nl"},
        {"<PASSPORT_1>": "x"},
        {"<EMAIL_1>": 5},
        {"<EMAIL_1>": "a", "<EMAIL_2>": "a"},
    ],
)
def test_from_mapping_refuses_a_malformed_map(mapping: dict[str, Any]) -> None:
    """A map that no pseudonymizer could have produced is refused."""
    with pytest.raises(ValueError, match="token map"):
        Pseudonymizer.from_mapping(DETECTOR, mapping)


def test_unsupported_types_are_refused() -> None:
    """A value that is not JSON-like is refused with a reason, not passed through."""
    with pytest.raises(TypeError, match="must be JSON-like"):
        fresh().tokenize({"when": object()})


# --- properties -----------------------------------------------------------------------


def _iban(country: str, bban: str) -> str:
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def _luhn_complete(body: str) -> str:
    total = 0
    for index, ch in enumerate(reversed(body)):
        digit = int(ch)
        if index % 2 == 0:  # doubled: the check digit will be appended to the right
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return body + str((10 - total % 10) % 10)


def _grouped(value: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(value[i : i + size] for i in range(0, len(value), size))


DIGITS = "0123456789"
EMAILS = st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?@[a-z]{2,8}\.(nl|com|de)", fullmatch=True)
NL_IBANS = st.builds(
    lambda bank, digits, spaced: (_grouped if spaced else str)(_iban("NL", bank + digits)),
    st.sampled_from(["ABNA", "INGB", "RABO", "TRIO"]),
    st.text(DIGITS, min_size=10, max_size=10),
    st.booleans(),
)
DE_IBANS = st.text(DIGITS, min_size=18, max_size=18).map(lambda bban: _iban("DE", bban))
CARDS = st.builds(
    lambda body, style: {
        "plain": body,
        "spaces": _grouped(body),
        "dashes": _grouped(body, sep="-"),
    }[style],
    st.builds(_luhn_complete, st.from_regex(r"[45][0-9]{14}", fullmatch=True)),
    st.sampled_from(["plain", "spaces", "dashes"]),
)
PHONES = st.one_of(
    st.text(DIGITS, min_size=8, max_size=8).map(lambda d: f"+316{d}"),
    st.text(DIGITS, min_size=8, max_size=8).map(lambda d: f"+31 6 {d[:4]} {d[4:]}"),
    st.text(DIGITS, min_size=9, max_size=9).map(lambda d: f"+4915{d}"),
)
SEEDED_NAMES = st.builds(
    lambda name, case: getattr(name, case)(),
    st.sampled_from(NAMES),
    st.sampled_from(["strip", "upper", "lower"]),
)
PII = st.one_of(EMAILS, NL_IBANS, DE_IBANS, CARDS, PHONES, SEEDED_NAMES)
WORDS = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@st.composite
def seeded_values(draw: st.DrawFn) -> tuple[Any, list[str]]:
    """A JSON-like value whose strings embed personal data in random words, and the data."""
    seeds = draw(st.lists(PII, min_size=1, max_size=5))
    # a word before each seed keeps seeds apart, as separators do in real text
    texts = st.lists(st.tuples(WORDS, st.none() | st.sampled_from(seeds)), max_size=4).map(
        lambda parts: " ".join(w if s is None else f"{w} {s}" for w, s in parts)
    )
    leaves = (
        texts
        | st.sampled_from(seeds)
        | st.none()
        | st.booleans()
        | st.integers(-(10**6), 10**6)
        | st.floats(allow_nan=False)
    )
    value = draw(
        st.recursive(
            leaves,
            lambda children: (
                st.lists(children, max_size=3) | st.dictionaries(WORDS, children, max_size=3)
            ),
            max_leaves=12,
        )
    )
    return value, seeds


@settings(max_examples=150, deadline=None)
@given(seeded_values())
def test_detokenize_undoes_tokenize(case: tuple[Any, list[str]]) -> None:
    """detokenize(tokenize(x)) == x for JSON-like values without tokenizable integers."""
    value, _ = case
    p = fresh()
    assert p.detokenize(p.tokenize(value)) == value


@settings(max_examples=150, deadline=None)
@given(seeded_values())
def test_no_seeded_value_survives_tokenization(case: tuple[Any, list[str]]) -> None:
    """No embedded e-mail, IBAN, card, phone or known name is left in the tokenized value."""
    value, seeds = case
    dump = json.dumps(fresh().tokenize(value), ensure_ascii=False)
    for seed in seeds:
        assert seed not in dump


@settings(max_examples=100, deadline=None)
@given(seeded_values())
def test_restored_map_detokenizes_the_same(case: tuple[Any, list[str]]) -> None:
    """A pseudonymizer restored from the map resolves tokenized values the same way."""
    value, _ = case
    p = fresh()
    visible = p.tokenize(value)
    restored = Pseudonymizer.from_mapping(DETECTOR, p.mapping())
    assert restored.detokenize(visible) == value
    assert restored.unknown_tokens(visible) == []
