"""How real requesters write: the same task in other spellings and wrappers.

A family's templates say *what* is asked; a style says *how* someone typed it: ids in
lower case (``inv-1008``) or without the dash (``INV1008``), a ticket number in front,
a polite mail around it, a hurried all-lower-case line, a typo, extra context. Styles
compose (a polite mail with lower-case ids), apply to any family, and never touch the
slots: the expert still calls ``get_invoice`` with ``INV-1008``, so the role models
learn to read a request's ids however they are spelled.

Each style's wording variants are split like templates: the last variant is test's,
the one before dev's, the rest train's; so no test request is ever wrapped in words a
training request was wrapped in (``style_split``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

#: Record ids as they appear in requests (INV-1008, PO-4501, V-0042, E-1003, LR-0007).
_ID = re.compile(r"\b([A-Z]{1,3})-(\d{4})\b")


def _lower_ids(text: str, _: str) -> str:
    return _ID.sub(lambda m: f"{m.group(1).lower()}-{m.group(2)}", text)


def _undashed_ids(text: str, _: str) -> str:
    return _ID.sub(lambda m: f"{m.group(1)}{m.group(2)}", text)


def _hurried(text: str, salt: str) -> str:
    """Lower-case ids and first letter, no closing punctuation (names keep their case)."""
    text = _lower_ids(text, salt).rstrip(".?! ")
    return text[:1].lower() + text[1:]


def _typo(text: str, salt: str) -> str:
    """Two neighbouring letters swapped in one plain lower-case word of six or more."""
    rng = random.Random(salt)
    words = [m for m in re.finditer(r"\b[a-z]{6,}\b", text)]
    if not words:
        return text
    word = rng.choice(words)
    i = word.start() + rng.randrange(1, len(word.group()) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


@dataclass(frozen=True)
class Style:
    """One way of writing a request. ``variants`` are its wordings (split by index)."""

    name: str
    variants: tuple[str, ...]

    def apply(self, text: str, variant: int, salt: str) -> str:
        """``text`` written in variant ``variant`` of this style."""
        template = self.variants[variant]
        if template in _TRANSFORMS:
            return _TRANSFORMS[template](text, salt)
        return template.format(text=text)


_TRANSFORMS: dict[str, Callable[[str, str], str]] = {
    "<lower ids>": _lower_ids,
    "<undashed ids>": _undashed_ids,
    "<hurried>": _hurried,
    "<typo>": _typo,
}

#: Styles and their wordings. Transform styles list one transform per split, so train,
#: dev and test share the *kind* (lower-case ids everywhere) but never a wrapper's words.
STYLES: tuple[Style, ...] = (
    Style("ids", ("<lower ids>", "<lower ids>", "<undashed ids>", "<lower ids>", "<undashed ids>")),
    Style(
        "ticket",
        (
            "Ticket #48213: {text}",
            "[REQ 7731] {text}",
            "Re: ticket 5521 - {text}",
            "Case 90412 / {text}",
            "Service desk #3318 — {text}",
        ),
    ),
    Style(
        "mail",
        (
            "Hi team,\n\n{text}\n\nThanks a lot,\nAccounts desk",
            "Hello,\n\ncould you help with this: {text}\n\nBest regards",
            "Good morning! {text} Many thanks in advance.",
            "Dear colleagues, {text} Kind regards, the office",
            "Hi there, quick one. {text} Cheers!",
        ),
    ),
    Style(
        "urgent",
        (
            "URGENT: {text}",
            "{text} Please handle today.",
            "Asap please - {text}",
            "{text} (needed before end of day)",
            "High priority: {text}",
        ),
    ),
    Style(
        "context",
        (
            "The vendor called about this yesterday. {text}",
            "Following up on this morning's meeting: {text}",
            "For the month-end close: {text}",
            "Our controller asked me to check. {text}",
            "As discussed on the phone, {text}",
        ),
    ),
    Style("hurried", ("<hurried>", "<hurried>", "<hurried>", "<hurried>", "<hurried>")),
    Style("typo", ("<typo>", "<typo>", "<typo>", "<typo>", "<typo>")),
)


def style_split(index: int, count: int) -> str:
    """Which split wording ``index`` of ``count`` belongs to (as ``Family.template_split``)."""
    if index == count - 1:
        return "test"
    if index == count - 2:
        return "dev"
    return "train"


def restyle(text: str, split: str, rng: random.Random, *, plain_share: float = 0.35) -> str:
    """``text`` as a requester might write it: unchanged with probability
    ``plain_share``, else one or two styles with wordings of ``split`` only."""
    if rng.random() < plain_share:
        return text
    chosen = rng.sample(STYLES, k=1 if rng.random() < 0.6 else 2)
    # transforms of the words first, wrappers after, so a wrapper's words stay as written
    chosen.sort(key=lambda s: 0 if s.variants[0].startswith("<") else 1)
    for style in chosen:
        variants = [
            i for i in range(len(style.variants)) if style_split(i, len(style.variants)) == split
        ]
        text = style.apply(text, rng.choice(variants), f"{text}:{style.name}")
    return text
