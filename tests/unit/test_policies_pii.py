"""Personal data detection: each detector on valid and invalid values, overlaps, HR records."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import Detector, PiiKind, Span

DETECTOR = Detector(known_names=("Pieter Jansen", "Jan-Willem de Boer", "Anna", "Jan"))


def found(text: str, detector: Detector = DETECTOR) -> list[tuple[str, str]]:
    return [(span.kind.value, span.value) for span in detector.find(text)]


# --- e-mail ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["pieter.jansen@acme-corp.nl", "a+tag@mail.example.co.uk", "x_y-z@sub.domain.de"]
)
def test_email_is_found(email: str) -> None:
    """An e-mail address inside text is found whole."""
    assert found(f"write to {email}, please") == [("EMAIL", email)]


def test_email_spans_are_positions_in_the_text() -> None:
    """A span's start and end slice its value out of the text."""
    text = "mail: jan@example.org."
    (span,) = DETECTOR.find(text)
    assert text[span.start : span.end] == span.value == "jan@example.org"


@pytest.mark.parametrize("text", ["user at example dot com", "@handle", "a@b", "x@.com"])
def test_non_email_is_not_found(text: str) -> None:
    """Text that only resembles an address is not an e-mail."""
    assert found(text) == []


# --- phone ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+31 6 1234 5678",
        "+31612345678",
        "+31 (0)20 123 4567",
        "+49 151 23456789",
        "+32 470 12 34 56",
        "+1 (415) 555-2671",
        "+31670152896",  # an unassigned range, still a phone number in international form
    ],
)
def test_international_phone_is_found(phone: str) -> None:
    """A phone number in international form is found, with its separators."""
    assert found(f"call {phone} today") == [("PHONE", phone)]


@pytest.mark.parametrize("phone", ["06-12345678", "06 1234 5678", "020 123 4567", "(020) 555 1234"])
def test_dutch_national_phone_is_found(phone: str) -> None:
    """A valid Dutch number in national format is found."""
    assert found(f"bel {phone} maar") == [("PHONE", phone)]


@pytest.mark.parametrize("text", ["tel:0612345678", "bel 0612345678.", "0612345678, bel"])
def test_a_phone_between_punctuation_is_found(text: str) -> None:
    """Punctuation around a number does not glue it to a word: it is still a phone."""
    assert found(text) == [("PHONE", "0612345678")]


def test_us_national_phone_is_found() -> None:
    """A valid US number in national format is found (US is among the default regions)."""
    assert found("call (415) 555-2671 now") == [("PHONE", "(415) 555-2671")]


def test_national_formats_follow_the_configured_regions() -> None:
    """Without the US among its regions a detector leaves US national numbers alone."""
    dutch_only = Detector(phone_regions=("NL",))
    assert found("call (415) 555-2671 now", dutch_only) == []
    assert found("call +1 415 555 2671 now", dutch_only) == [("PHONE", "+1 415 555 2671")]


@pytest.mark.parametrize(
    "text",
    [
        "invoice INV-1001 for PO-4501, 1,250.00 EUR",
        "due 2025-03-17, paid 2025-03-17T10:00:00Z",
        "amount 123456782.00 and 0612345678.00",
        "12:30 on 17/03/2025, 125000 units",
        "call 12345",
        # digits inside an identifier: a login role, a ticket, a job name
        "connected as umiq_login_08953074",
        "see TCK-0612345678 and job_0612345678_done",
    ],
)
def test_ids_amounts_and_dates_are_not_phones(text: str) -> None:
    """Document ids, amounts, dates and short numbers are not mistaken for phones."""
    assert found(text) == []


# --- IBAN -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "NL91ABNA0417164300",
        "NL91 ABNA 0417 1643 00",
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "BE68539007547034",
        "nl91abna0417164300",
    ],
)
def test_valid_iban_is_found(iban: str) -> None:
    """An IBAN with a valid mod-97 checksum is found, with or without spaces."""
    assert found(f"pay to {iban} today") == [("IBAN", iban)]


@pytest.mark.parametrize(
    "iban",
    [
        "NL91ABNA04171643",  # too short for NL
        "XX91ABNA0417164300",  # no such country
        "NL91ABNAB417164301",  # fails mod-97 and is not account-shaped (letters in it)
    ],
)
def test_invalid_iban_is_not_found(iban: str) -> None:
    """A string of the wrong length, or failing the checksum without an account's shape,
    is not an IBAN."""
    assert ("IBAN", iban) not in found(f"pay to {iban} today")


@pytest.mark.parametrize(
    "iban",
    [
        "NL91ABNA0417164301",  # one digit changed
        "NL92ABNA0417164300",  # check digits changed
        "DE89370400440532013001",
        "NL91 ABNA 0417 1643 01",  # mistyped and spaced
    ],
)
def test_mistyped_iban_is_still_found(iban: str) -> None:
    """An IBAN with a typo (the country's length, check digits, an account number of
    digits, failing mod-97) is still someone's account: found."""
    assert ("IBAN", iban) in found(f"pay to {iban} today")


def test_iban_stops_at_its_country_length() -> None:
    """Text after a spaced IBAN is not swallowed into it."""
    assert found("NL91 ABNA 0417 1643 00 INV1 paid") == [("IBAN", "NL91 ABNA 0417 1643 00")]


def test_iban_glued_to_more_characters_is_not_found() -> None:
    """An IBAN followed directly by more letters or digits is not taken apart."""
    assert found("NL91ABNA04171643001") == []


def test_iban_after_a_failed_candidate_is_found() -> None:
    """A candidate that fails the checksum does not hide a valid IBAN right after it."""
    assert found("DE12 NL91ABNA0417164300") == [("IBAN", "NL91ABNA0417164300")]


# --- payment cards --------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5500000000000004",
        "3782 822463 10005",  # Amex grouping 4-6-5
        "378282246310005",
        "6011111111111117",
        "4222222222222",  # 13 digits
    ],
)
def test_luhn_valid_card_is_found(card: str) -> None:
    """A 13–19 digit number passing Luhn is a card number, with spaces or dashes."""
    assert found(f"card {card} expires") == [("CARD", card)]


@pytest.mark.parametrize(
    "card", ["4111111111111112", "4111 1111 1111 1112", "5500000000000005", "0000000000000000"]
)
def test_luhn_invalid_card_is_not_found(card: str) -> None:
    """A card-shaped number failing Luhn (or all zeros) is not a card number."""
    assert ("CARD", card) not in found(f"card {card} expires")


def test_card_with_mixed_separators_is_found() -> None:
    """Digits grouped with mixed separators are still one card number (issue 21: a
    requester's or a record's spelling must not let a card through)."""
    assert found("ref 4111 1111-1111 1111") == [("CARD", "4111 1111-1111 1111")]


def test_card_number_inside_an_id_is_not_found() -> None:
    """A Luhn-valid digit run that is part of an id is left alone."""
    assert found("order ORD-4111111111111111") == []


# --- national ids ---------------------------------------------------------------------


@pytest.mark.parametrize("bsn", ["111222333", "123456782", "433165261"])
def test_bsn_passing_the_11_test_is_found(bsn: str) -> None:
    """Nine digits passing the 11-test are a Dutch BSN."""
    assert found(f"BSN {bsn}.") == [("NATIONAL_ID", bsn)]


@pytest.mark.parametrize("number", ["123456789", "111222334", "000000000"])
def test_bsn_failing_the_11_test_is_not_found(number: str) -> None:
    """Nine digits failing the 11-test (or all zeros) are not a BSN."""
    assert found(f"BSN {number}.") == []


def test_bsn_inside_an_id_or_amount_is_not_found() -> None:
    """A valid BSN digit run that is part of an id or an amount is left alone."""
    assert found("INV-123456782 costs 123456782.50 EUR") == []


def test_ssn_is_found() -> None:
    """A US SSN in ``123-45-6789`` form is a national id."""
    assert found("SSN 123-45-6789 on file") == [("NATIONAL_ID", "123-45-6789")]


@pytest.mark.parametrize(
    "number", ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567",
               "123-45-0000"],
)  # fmt: skip
def test_ssn_with_invalid_parts_is_not_found(number: str) -> None:
    """SSNs with area 000, 666 or 9xx, group 00 or serial 0000 are not national ids."""
    assert found(f"SSN {number} on file") == []


# --- names ----------------------------------------------------------------------------


def test_known_name_is_found_case_insensitively() -> None:
    """A known full name is found in any letter case."""
    assert found("ask PIETER JANSEN or pieter jansen") == [
        ("NAME", "PIETER JANSEN"),
        ("NAME", "pieter jansen"),
    ]


def test_name_needs_word_boundaries() -> None:
    """A known name inside a longer word is not a name (the given-name gazetteer, which
    knows Anneke, is off here)."""
    records_only = Detector(known_names=("Pieter Jansen", "Anna", "Jan"), given_names=False)
    assert found("Janssen and Anneke and Janna", records_only) == []


def test_longest_known_name_wins() -> None:
    """Where known names overlap the longest one is taken."""
    assert found("Jan-Willem de Boer signed") == [("NAME", "Jan-Willem de Boer")]


def test_name_matches_across_whitespace_runs() -> None:
    """A known name broken over several spaces or a line break is still found."""
    assert found("Pieter \n Jansen") == [("NAME", "Pieter \n Jansen")]


def test_unknown_names_are_not_found() -> None:
    """With the given-name gazetteer off, only names from the records are found; with it
    (the default) a name in no record is found by its given name."""
    records_only = Detector(known_names=("Pieter Jansen",), given_names=False)
    assert found("Maria Schmidt called", records_only) == []
    assert found("Maria Schmidt called") == [("NAME", "Maria Schmidt")]


def test_blank_known_names_are_ignored() -> None:
    """Empty or blank known names do not match everything."""
    assert Detector(known_names=("", "  ")).find("some text") == []


# --- overlaps and numbers -------------------------------------------------------------


def test_longer_span_wins_over_a_name_inside_it() -> None:
    """A known name inside an e-mail address gives way to the e-mail."""
    assert found("anna@example.org") == [("EMAIL", "anna@example.org")]


def test_iban_wins_over_digits_inside_it() -> None:
    """Digit runs inside an IBAN are not reported as phones, cards or BSNs."""
    assert found("IBAN DE89370400440532013000") == [("IBAN", "DE89370400440532013000")]


def test_spans_come_in_order_of_position() -> None:
    """find returns spans sorted by position, whatever the detectors' order."""
    text = "Anna: NL91ABNA0417164300, anna@example.org, +31612345678, 111222333"
    spans = DETECTOR.find(text)
    assert [s.kind for s in spans] == [
        PiiKind.NAME,
        PiiKind.IBAN,
        PiiKind.EMAIL,
        PiiKind.PHONE,
        PiiKind.NATIONAL_ID,
    ]
    assert [s.start for s in spans] == sorted(s.start for s in spans)


def test_find_is_deterministic() -> None:
    """The same text gives the same spans every time."""
    text = "Jan Jan-Willem de Boer 4111 1111 1111 1111 +31 6 1234 5678"
    assert DETECTOR.find(text) == DETECTOR.find(text)


def test_kinds_are_ordered_most_specific_first() -> None:
    """PiiKind lists checksummed kinds before phones and names: the tie-break order."""
    assert list(PiiKind) == [
        PiiKind.EMAIL,
        PiiKind.IBAN,
        PiiKind.CARD,
        PiiKind.NATIONAL_ID,
        PiiKind.BIRTH_DATE,
        PiiKind.PHONE,
        PiiKind.NAME,
    ]


def test_span_is_a_value() -> None:
    """Spans compare by value."""
    assert Span(PiiKind.EMAIL, 0, 3, "a@b") == Span(PiiKind.EMAIL, 0, 3, "a@b")


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        (4111111111111111, PiiKind.CARD),
        (123456782, PiiKind.NATIONAL_ID),
        (123456789, None),
        (4111111111111112, None),
        (125000, None),
        (True, None),
        (-123456782, None),
    ],
)
def test_classify_number(number: int, kind: PiiKind | None) -> None:
    """An integer is a card number or BSN written out exactly when its digits pass."""
    assert DETECTOR.classify_number(number) == kind


def test_empty_text_has_no_spans() -> None:
    """Empty text gives no spans."""
    assert DETECTOR.find("") == []


# --- the sample HR database -----------------------------------------------------------

KIND_OF_COLUMN = {
    "name": PiiKind.NAME,
    "email": PiiKind.EMAIL,
    "phone": PiiKind.PHONE,
    "iban": PiiKind.IBAN,
    "national_id": PiiKind.NATIONAL_ID,
}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_detector_finds_all_personal_data_of_the_hr_records(tmp_path: Path, seed: int) -> None:
    """Every name, e-mail, E.164 phone, IBAN and BSN in the sample HR database is found."""
    from examples.acme.hr.db import HrDatabase

    database = HrDatabase(tmp_path / "hr.sqlite3", seed=seed)
    employees = database.rows("SELECT name, email, phone, iban, national_id FROM employee")
    detector = Detector(known_names=[row["name"] for row in employees])
    for row in employees:
        text = (
            f"Employee {row['name']} ({row['email']}, tel. {row['phone']}) is paid into "
            f"{row['iban']}; BSN {row['national_id']}."
        )
        expected = [(KIND_OF_COLUMN[column], row[column]) for column in KIND_OF_COLUMN]
        assert [(span.kind, span.value) for span in detector.find(text)] == expected


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("BSN 111.222.333 on file", "NATIONAL_ID", "111.222.333"),
        ("BSN 111 222 333 on file", "NATIONAL_ID", "111 222 333"),
        ("BSN 1112.22.333 on file", "NATIONAL_ID", "1112.22.333"),
        ("card 4111.1111.1111.1111 ok", "CARD", "4111.1111.1111.1111"),
        ("card 4111-1111 1111.1111 ok", "CARD", "4111-1111 1111.1111"),
        ("ibanNL91ABNA0417164300 ok", "IBAN", "NL91ABNA0417164300"),
    ],
)
def test_common_spellings_are_detected(text: str, kind: str, value: str) -> None:
    """BSNs in groups, cards with dots or mixed separators and IBANs glued to a word are
    found (checksums still decide)."""
    assert [(s.kind.value, s.value) for s in Detector().find(text)] == [(kind, value)]
