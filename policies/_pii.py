"""Detection of personal data in text: e-mails, phones, IBANs, cards, national ids, dates
of birth, names.

Every detector but names checks what it finds: IBANs by their country's length and the
mod-97 checksum, card numbers by Luhn, Dutch BSNs by the 11-test, US SSNs by the rules
for valid areas, groups and serials, phone numbers by the ``phonenumbers`` metadata.
Each is found in its common spellings: IBANs glued to a word, split by spaces or dashes,
or mistyped (an IBAN-shaped string of the country's length that fails mod-97 is still
someone's account); BSNs and cards in groups of any of the usual separators; e-mail
addresses with international (IDN) domains. A date is a date of birth when a birth word
(``born``, ``DOB``, ``geboren``…) comes just before it. Names are the full names the back
office's records hold, given at construction; their surnames alone (``ask Meijer``,
unless a capitalized word or ``&`` follows, as in a company's name: ``Van Dijk
Logistics``); any capitalized name after a title (``Mrs Zwartkop``, ``dhr. De Vries``);
a name in no record that a known given name starts (``jan de vries``, ``policies._names``);
and one of any origin by its shape, capitalized words none of which is a common word
(``Kenji Sato``, ``ask Zwartkop``, ``policies._name_shapes``).

Overlapping findings are resolved deterministically: the longest span wins; between
spans of equal length the more specific kind wins, in the order of ``PiiKind``
(checksummed kinds before phones, phones before names); then the earlier span.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

from policies._name_shapes import name_shape_spans
from policies._names import GIVEN_NAMES, directory_given_names, given_name_spans


class PiiKind(StrEnum):
    """Kinds of personal data, most specific first (the order breaks overlap ties)."""

    EMAIL = "EMAIL"
    IBAN = "IBAN"
    CARD = "CARD"
    NATIONAL_ID = "NATIONAL_ID"
    BIRTH_DATE = "BIRTH_DATE"
    PHONE = "PHONE"
    NAME = "NAME"


_RANK = {kind: rank for rank, kind in enumerate(PiiKind)}


@dataclass(frozen=True)
class Span:
    """One finding: ``text[start:end] == value`` is personal data of ``kind``."""

    kind: PiiKind
    start: int
    end: int
    value: str


#: Regions whose national phone formats (``06-12345678``, ``(415) 555-2671``) are
#: recognised; numbers in international format (``+31 6 1234 5678``) are found whatever
#: the regions.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("NL", "DE", "BE", "US")

# ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

_EMAIL = re.compile(
    # no apostrophe in the local part: error messages quote values ('a.b@c.nl'), and a
    # quote taken into the address would give the same address a second token
    r"(?<![\w.%+-])[\w%+-]+(?:\.[\w%+-]+)*"
    # domain labels of any script (IDN: bäckerei.de, 例え.jp), or their punycode
    r"@(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[A-Za-z0-9-]+)(?![\w-])"
)
# Letters may come right before an IBAN ("ibanNL91…", "x<IBAN_1>"): mod-97 and the
# country's length make a false start in a word vanishingly unlikely.
_IBAN_START = re.compile(r"(?<![0-9])(?=[A-Za-z]{2}\d{2})")
# No digit run around a number: not part of an id (INV-…), a longer number or a decimal.
_BEFORE = r"(?<![\w+-])(?<!\d[.,])"
_AFTER = r"(?![\w-])(?![.,]\d)"
_CARD = re.compile(
    _BEFORE
    + r"(?:\d{13,19}"
    + r"|\d{4}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{1,3})?"
    + r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5}"
    # dots, or separators mixed within one number (4111.1111-1111 1111)
    + r"|\d{4}[ .-]\d{4}[ .-]\d{4}[ .-]\d{1,4})"
    + _AFTER
)
# Nine digits, or written in groups: 123.456.782, 123 456 782, 123-456-782, 1234.56.782.
_BSN = re.compile(
    _BEFORE
    + r"(?:\d{9}|\d{3}(?P<b1>[. -])\d{3}(?P=b1)\d{3}|\d{4}(?P<b2>[. -])\d{2}(?P=b2)\d{3})"
    + _AFTER
)
_MONTHS = (
    "jan(?:uary|uari)?|feb(?:ruary|ruari)?|mar(?:ch)?|maart|apr(?:il)?|may|mei|jun(?:e|i)?"
    "|jul(?:y|i)?|aug(?:ust|ustus)?|sep(?:t|tember)?|o[ck]t(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}"
    r"|\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?,?\s+\d{{4}}"
    rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
# A birth word, then within a few words a date: only that date is the finding.
_BIRTH = re.compile(
    r"(?<!\w)(?:born|birth(?:day|date)?|d\.?o\.?b\.?|geboren|geb\.|geboortedatum|"
    r"geburtsdatum|n[ée]e?)(?!\w)"
    r"[^\d\n]{0,24}?"
    rf"(?P<date>(?<![\w-]){_DATE}(?![\w-]))",
    re.IGNORECASE,
)
_PARTICLES = r"(?:van|von|de|der|den|ter|ten|te|el|al|da|di|du|le|la|del|dos|op|in\s+'t|'t)"
# A title, then a capitalized name (a surname alone, or given name and surname).
_TITLED = re.compile(
    r"(?<!\w)(?i:mr|mrs|ms|miss|mx|dr|prof|dhr|mevr|mevrouw|meneer|mw|herr|frau|mme|mlle|"
    r"monsieur|madame|sr|sra|sig|sig\.ra)\.?\s+"
    rf"(?P<name>(?:(?i:{_PARTICLES})\s+){{0,3}}[^\W\d_][\w'’-]*"
    rf"(?:\s+(?:(?i:{_PARTICLES})\s+){{0,3}}[^\W\d_][\w'’-]*)?)"
)
_SSN = re.compile(_BEFORE + r"(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}" + _AFTER)
_DIGIT = re.compile(r"\d")
# A phone number stands on its own: digits glued to a word (a letter, digit or ``_`` right
# before or after, or ``word-`` before) are part of an identifier. phonenumbers' matcher
# rejects letters around a number but not ``_`` or an id's hyphenated prefix.
_GLUED_BEFORE = re.compile(r"(?:\w|\w-)\Z")
_GLUED_AFTER = re.compile(r"\w")
# A number with decimals is an amount, whatever phone number its digits spell.
_AMOUNT = re.compile(r"\d+[.,]\d{1,2}")
_DECIMALS = re.compile(r"[.,]\d")


def iban_is_valid(value: str) -> bool:
    """Whether ``value`` (spaces allowed) has its country's IBAN length and passes mod-97."""
    compact = value.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_shaped(compact: str) -> bool:
    """Whether ``compact`` (the country's length, no separators) looks like an IBAN with a
    typo: two check digits, then mostly digits (at least 8 of them, at most 4 letters
    before them): a mistyped account number is still someone's."""
    bban = compact[4:]
    letters = len(bban) - len(bban.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    rest = bban[letters:]
    return compact[2:4].isdigit() and letters <= 4 and rest.isdigit() and len(rest) >= 8


def luhn_is_valid(digits: str) -> bool:
    """Whether the digit string passes the Luhn check (and is not all zeros)."""
    if not digits.isdigit() or not digits.strip("0"):
        return False
    total = 0
    for index, ch in enumerate(reversed(digits)):
        digit = int(ch)
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def bsn_is_valid(digits: str) -> bool:
    """Whether ``digits`` is a Dutch citizen service number: nine digits passing the 11-test."""
    if len(digits) != 9 or not digits.isdigit() or not digits.strip("0"):
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 == 0


_PARTICLE_WORDS = frozenset((
    "van", "von", "de", "der", "den", "ter", "ten", "te", "el", "al", "da", "di", "du",
    "le", "la", "del", "dos", "op", "in", "'t",
))  # fmt: skip


def _surnames(names: Iterable[str]) -> set[str]:
    """The surname of each full name (every word after the first): ``van Dijk``, ``El
    Amrani``, ``Meijer``; too short ones (under 3 letters) are left out."""
    found = set()
    for name in names:
        words = name.split()
        if len(words) >= 2 and len("".join(words[1:])) >= 3:
            found.add(" ".join(words[1:]))
    return found


def _titled_name(name: str) -> tuple[int, int] | None:
    """Where the name after a title ends: capitalized words and particles, up to the first
    other word; ``(start, end)`` within ``name``, or None with no capitalized word."""
    end, capitalized = 0, False
    for match in re.finditer(r"\S+", name):
        word = match.group()
        if word[0].isupper():
            end, capitalized = match.end(), True
        elif word.casefold() not in _PARTICLE_WORDS:
            break
    return (0, end) if capitalized else None


def _name_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    variants = {" ".join(name.split()) for name in names if name and name.strip()}
    if not variants:
        return None
    # Longest first: at one position the alternation takes the first that matches.
    ordered = sorted(variants, key=lambda name: (-len(name), name.casefold()))
    alternatives = (r"\s+".join(map(re.escape, name.split())) for name in ordered)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _alone(text: str, start: int, end: int) -> bool:
    """Whether a surname at ``text[start:end]`` names a person: written capitalized, and
    not part of a company's name (a capitalized word or ``&`` right after it, ``&``
    right before it: ``Van Dijk Logistics``, ``Brouwer & Peeters``)."""
    found = text[start:end].split()
    if not found or not found[-1][:1].isupper():
        return False
    after = text[end:].lstrip(" ")
    if (
        end < len(text)
        and text[end] == " "
        and after[:1]
        and (after[0].isupper() or after[0] == "&")
    ):
        return False
    return not text[:start].rstrip(" ").endswith("&")


class Detector:
    """Finds personal data in text.

    ``known_names`` are full names from the systems' records, matched case-insensitively
    on word boundaries (any run of whitespace between their words). ``phone_regions``
    are the regions whose national phone formats are recognised. ``given_names`` finds
    names in no record: by their given name (a gazetteer and the known names' given names,
    ``policies._names``) and, with ``name_shapes`` too, by their shape (capitalized words
    that are no common words, ``policies._name_shapes``).
    """

    def __init__(
        self,
        known_names: Iterable[str] = (),
        *,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        given_names: bool = True,
        name_shapes: bool = True,
    ) -> None:
        self.known_names: frozenset[str] = frozenset(
            " ".join(name.split()) for name in known_names if name and name.strip()
        )
        self.phone_regions: tuple[str, ...] = tuple(phone_regions)
        self._names = _name_pattern(self.known_names)
        self._surnames = _name_pattern(_surnames(self.known_names))
        # Names in no record start with a given name (``policies._names``).
        self._given = GIVEN_NAMES | directory_given_names(self.known_names) if given_names else None
        self._shapes = given_names and name_shapes

    def find(self, text: str) -> list[Span]:
        """The personal data in ``text``, without overlaps, in order of position."""
        if not text:
            return []
        candidates = [*self._candidates(text)]
        chosen: list[Span] = []
        taken: list[tuple[int, int]] = []
        for span in sorted(candidates, key=lambda s: (s.start - s.end, _RANK[s.kind], s.start)):
            if all(span.end <= start or span.start >= end for start, end in taken):
                chosen.append(span)
                taken.append((span.start, span.end))
        return sorted(chosen, key=lambda s: s.start)

    def classify_number(self, value: int) -> PiiKind | None:
        """The kind of an integer that is personal data written out (a card number or a
        BSN), else None. Phones are not recognised in integers: their ``+`` or leading 0
        is gone, so the digits alone are too ambiguous."""
        if isinstance(value, bool) or value < 0:
            return None
        digits = str(value)
        if 13 <= len(digits) <= 19 and luhn_is_valid(digits):
            return PiiKind.CARD
        if len(digits) == 9 and bsn_is_valid(digits):
            return PiiKind.NATIONAL_ID
        return None

    def _candidates(self, text: str) -> Iterator[Span]:
        if "@" in text:
            for m in _EMAIL.finditer(text):
                yield Span(PiiKind.EMAIL, m.start(), m.end(), m.group())
        digits = len(_DIGIT.findall(text))
        if digits >= 2:
            yield from self._ibans(text)
        if digits >= 9:
            for m in _CARD.finditer(text):
                if luhn_is_valid(re.sub(r"[ .-]", "", m.group())):
                    yield Span(PiiKind.CARD, m.start(), m.end(), m.group())
            for m in _BSN.finditer(text):
                if bsn_is_valid(re.sub(r"[. -]", "", m.group())):
                    yield Span(PiiKind.NATIONAL_ID, m.start(), m.end(), m.group())
            for m in _SSN.finditer(text):
                yield Span(PiiKind.NATIONAL_ID, m.start(), m.end(), m.group())
        if digits >= 7:
            yield from self._phones(text)
        if digits >= 4 and len(text) >= 10:
            for m in _BIRTH.finditer(text):
                yield Span(PiiKind.BIRTH_DATE, m.start("date"), m.end("date"), m.group("date"))
        if self._names is not None:
            for m in self._names.finditer(text):
                yield Span(PiiKind.NAME, m.start(), m.end(), m.group())
        if self._surnames is not None:
            for m in self._surnames.finditer(text):
                if _alone(text, m.start(), m.end()):
                    yield Span(PiiKind.NAME, m.start(), m.end(), m.group())
        if self._given is not None:
            for start, end in given_name_spans(text, self._given):
                yield Span(PiiKind.NAME, start, end, text[start:end])
            if self._shapes:
                for start, end in name_shape_spans(text, self._given):
                    yield Span(PiiKind.NAME, start, end, text[start:end])
        for m in _TITLED.finditer(text):
            found = _titled_name(m.group("name"))
            if found is not None:
                start, end = m.start("name") + found[0], m.start("name") + found[1]
                yield Span(PiiKind.NAME, start, end, text[start:end])

    def _ibans(self, text: str) -> Iterator[Span]:
        for m in _IBAN_START.finditer(text):
            start = m.start()
            length = IBAN_LENGTHS.get(text[start : start + 2].upper())
            if length is None:
                continue
            # Take the country's number of characters, single spaces or dashes allowed
            # between them.
            count, end = 0, start
            while end < len(text) and count < length:
                ch = text[end]
                if ch.isascii() and ch.isalnum():
                    count, end = count + 1, end + 1
                elif ch in " -" and count and end + 1 < len(text) and text[end + 1].isalnum():
                    end += 1
                else:
                    break
            if count != length:
                continue
            value = text[start:end]
            compact = re.sub(r"[ -]", "", value)
            # more digits right after: a longer number, not an IBAN; letters right after
            # ("…4300EUR") only when the checksum holds
            glued = end < len(text) and text[end].isalnum()
            if glued and (text[end].isdigit() or not iban_is_valid(compact)):
                continue
            if iban_is_valid(compact) or _iban_shaped(compact):
                yield Span(PiiKind.IBAN, start, end, value)

    def _phones(self, text: str) -> Iterator[Span]:
        seen: set[tuple[int, int]] = set()

        def span(match: phonenumbers.PhoneNumberMatch) -> Iterator[Span]:
            if _AMOUNT.fullmatch(match.raw_string) or _DECIMALS.match(text, match.end):
                return
            if _GLUED_BEFORE.search(
                text, max(0, match.start - 2), match.start
            ) or _GLUED_AFTER.match(text, match.end):
                return  # digits inside an identifier (``umiq_login_08953074``, ``TCK-0612345678``)
            if (match.start, match.end) not in seen:
                seen.add((match.start, match.end))
                yield Span(PiiKind.PHONE, match.start, match.end, match.raw_string)

        if "+" in text:
            # International format is unambiguous: a possible length for the country is
            # enough, so numbers from ranges the metadata does not know are found too.
            region = self.phone_regions[0] if self.phone_regions else "ZZ"
            for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
                if match.raw_string.lstrip("(").startswith("+"):
                    yield from span(match)
        for region in self.phone_regions:
            for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
                yield from span(match)
