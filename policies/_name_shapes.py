"""Names in no record, of any origin: found by their shape.

A gazetteer of given names (``policies._names``) finds ``jan de vries`` but not ``Kenji
Sato``, ``Aoife Byrne`` or ``Henrik Larsson``: no list of given names covers everyone a
request may name, and a bigger list only moves the edge. What every such name has, in
whatever language, is its shape: two or more capitalized words in a row, none of them a
common word. Request text has few other runs like that, and each other kind has a mark
of its own:

- a run that holds a common word is a phrase, a product or a company (``Basal Metabolic
  Rate``, ``Hooli Office``, ``Tyrell Components``): a name here is a run of words that
  are no common word (a lexicon of ~40,000 English words, ``_words.json``), so at the
  start of a sentence the verb is left out (``Approve Kenji Sato's leave``);
- a common word that is also a name (``Baker``, ``Grace``, ``Martin``: the lexicon's
  ``also_names``) counts in a name beside a word that is no word at all (``Chloé Martin``,
  ``ask Grace Taylor``), never alone (``Will Smith`` stays unfound: both could be words),
  and not as the first word of a sentence, whose capital says nothing (``Reading Acme's
  defaults``, ``Bill Tyrell for it``);
- a run that a capitalized word or ``&`` follows, or that ``&`` or a company word
  follows or ``&`` precedes, is part of a company's or a product's name (``Globex Handels
  GmbH``, ``Lindqvist Data AB``, ``Brouwer & Peeters``);
- ids, acronyms and brands written in capitals or camel case (``INV-1001``, ``API``,
  ``KVStore``) are no name words; ``McDonald``, ``O'Brien``, ``Jan-Willem`` are.

One such word alone is a name only after a word that says a person follows (``ask
Zwartkop``, ``Dear Aoife``, ``cc Tanaka``): a lone capitalized word is as often a place
or a product. A given name of the gazetteer or the directory is always a name word.

The lexicon is SCOWL's (Kevin Atkinson's Spell Checker Oriented Word Lists, sizes 10-35,
the common English words; its permissive notice is in the file), derived once from
Debian's ``scowl`` package and shipped as package data: no download, no dependency. It
is English because the requests are; Dutch and German capitalize few words mid-sentence
and ``policies._names.STOP`` holds their function words. What the shape does not find:
a name written all lowercase or all capitals (the gazetteer still finds those it knows),
one whose every word is also a common word (``Will Smith``, ``Rose Hill``), a lone
surname after no cue word; what it flags that is no person: a run of two foreign or
invented words (a place such as ``Los Angeles``, a club, a product) with no common word
and no company word near it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import Enum
from functools import cache
from importlib import resources

from policies._names import _COMPANY, _PARTICLE, _WORD, AMBIGUOUS, STOP, _adjacent, _words


class _Kind(Enum):
    NAME = "name"  # a capitalized word that is no common word: surely a name word
    MAYBE = "maybe"  # a common word that is also a name (Baker, Grace)
    PARTICLE = "particle"  # van, de, al…: inside a name only
    OTHER = "other"


@cache
def _lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """The common words and, among them, those that are also names (``_words.json``)."""
    text = resources.files("policies").joinpath("_words.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return frozenset(data["common"]), frozenset(data["also_names"])


# Words after which a lone capitalized word names a person (``ask Zwartkop``).
CUES: frozenset[str] = _words("""
ask asked asking tell told dear hi hello hey cc bcc attn colleague colleagues employee
remind reminded vraag vraagt beste hallo collega medewerker
""")
# A company word right after a run: its legal form or trade, written in any case; ``en``
# (Dutch "and") and ``service`` are left out, they follow a person's name as often.
_COMPANY_AFTER = _COMPANY - {"en", "service", "&"}
# Legal forms, capitalized inside a company's name (``Kowalski Druk Sp. z o.o.``): no
# name word.
_LEGAL: frozenset[str] = _words("""
ab ag as bv co corp gmbh inc kft kg llc ltd nv oy plc pty sa sarl sas sl sp spa srl sro
""")
# Titles: the title rule of ``policies._pii`` finds the name after one, without it.
_TITLES: frozenset[str] = _words("""
mr mrs ms miss mx dr prof dhr mevr mevrouw meneer mw herr frau mme mlle monsieur madame sr
sra srta sig sir dame lady lord
""")
# Inside capitals that still make a name word: McDonald, MacLeod, O'Brien, D'Angelo.
_PREFIXED = re.compile(r"(?:Mc|Mac|[OD]['’])(?=[A-Z])")
# An elided particle glued to a surname: d'Ancona, l'Hermite.
_ELIDED = re.compile(r"[dl]['’][A-ZÀ-Þ]")
_MAX_WORDS = 4


def name_shape_spans(text: str, given: frozenset[str] = frozenset()) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every name in ``text`` found by its shape (see the module);
    ``given`` (casefolded given names) are name words whatever the lexicon says."""
    words = list(_WORD.finditer(text))
    kinds = [_kind(w.group(), given) for w in words]
    for k, word in enumerate(words):
        if kinds[k] is _Kind.MAYBE and _sentence_start(text, word.start()):
            kinds[k] = _Kind.OTHER
    i = 0
    while i < len(words):
        if kinds[i] not in (_Kind.NAME, _Kind.MAYBE):
            i += 1
            continue
        last, names, j = i, [i], i + 1
        while j < len(words) and _adjacent(text, words[j - 1], words[j]):
            if kinds[j] is _Kind.PARTICLE and j - last <= 3:
                j += 1
            elif kinds[j] in (_Kind.NAME, _Kind.MAYBE):
                last, j = j, j + 1
                names.append(last)
            else:
                break
        start, end = words[i].start(), words[last].end()
        end -= len(text[start:end]) - len(text[start:end].rstrip("'’-"))  # a closing quote
        if len(names) <= _MAX_WORDS and _is_name(text, words, kinds, i, names, start, end):
            yield start, end
        i = last + 1


def _is_name(
    text: str,
    words: list[re.Match[str]],
    kinds: list[_Kind],
    first: int,
    names: list[int],
    start: int,
    end: int,
) -> bool:
    """Whether a run of name words (``names``: their indices) is a person's name."""
    if _company_near(text, start, end):
        return False
    sure = any(kinds[k] is _Kind.NAME for k in names)
    cued = (
        first > 0
        and _adjacent(text, words[first - 1], words[first])
        and words[first - 1].group().casefold() in CUES
    )
    if len(names) >= 2:
        return sure or cued
    return sure and cued


def _kind(word: str, given: frozenset[str]) -> _Kind:
    key = word.casefold()
    if key in _PARTICLE:
        return _Kind.PARTICLE
    if _ELIDED.match(word):
        return _Kind.NAME
    if len(word) < 2 or not _name_cased(word):
        return _Kind.OTHER
    if key in given:
        return _Kind.NAME
    if key in _LEGAL or key in _COMPANY or key in _TITLES:
        return _Kind.OTHER
    if key in AMBIGUOUS:
        return _Kind.MAYBE
    if key in STOP:
        return _Kind.OTHER
    common, also_names = _lexicon()
    parts = [part for part in re.split(r"[-'’]", key) if part]
    if key in common or (len(parts) > 1 and all(part in common for part in parts)):
        return _Kind.MAYBE if key in also_names else _Kind.OTHER
    return _Kind.NAME


def _sentence_start(text: str, start: int) -> bool:
    """Whether a word at ``start`` begins the text, a line, a sentence or a clause."""
    before = text[:start].rstrip()
    return not before or "\n" in text[len(before) : start] or before[-1] in ".!?:;\"'([{<>-–—•*#"


def _name_cased(word: str) -> bool:
    """Whether ``word`` is written as a name: a capital, then small letters (each part of
    a hyphenated or prefixed name alike); no digit, no acronym, no camel case."""
    if not word[0].isupper() or any(ch.isdigit() for ch in word):
        return False
    parts = re.split(r"[-'’]", _PREFIXED.sub("", word))
    return all(part[1:] == part[1:].lower() for part in parts)


def _company_near(text: str, start: int, end: int) -> bool:
    """Whether the run ``text[start:end]`` is part of a company's or a product's name: a
    capitalized word, ``&`` or a company word right after it, or ``&`` right before."""
    if text[:start].rstrip(" ").endswith("&"):
        return True
    if end < len(text) and text[end] == " ":
        after = text[end:].lstrip(" ").split(" ", 1)[0]
        if after[:1].isupper() or after.startswith("&"):
            return True
        if after.casefold().rstrip(",.;:") in _COMPANY_AFTER | _LEGAL:
            return True
    return False
