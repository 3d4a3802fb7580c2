"""Answers that claim a change: each claim must be backed by what the task's calls did.

A small summarizer writes fluent answers, and a fluent answer can say "Invoice INV-1012
is scheduled for 2025-03-17" when no call scheduled anything. For an auditor that is
the worst kind of error: the record says the work is done. This check reads the answer
for words that state a change (*scheduled*, *paid*, *approved*, *sent*, …) and asks
for evidence of each in the task's own history: a successful write call whose tool
names it (``schedule_payment`` backs *scheduled* and *paid*), or a successful response
the model saw that states it as a word (a read that returned ``"status": "paid"``, or a
payment whose status is ``executed``). A
failed or refused call backs nothing, a read tool's name backs nothing
(``list_payments`` made no payment), and a negated claim ("was not scheduled") claims
nothing.

Pure: the episode passes the answer and the evidence; the decision carries the reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from policies._decision import Decision

#: Words that state a change, each with the stems that back it in the name of a
#: successful write call (``paid`` is backed by ``schedule_payment``).
CHANGE_WORDS: dict[str, tuple[str, ...]] = {
    "scheduled": ("schedul",),
    "paid": ("paid", "pay"),
    "approved": ("approv",),
    "rejected": ("reject",),
    "declined": ("declin", "reject"),
    "created": ("creat",),
    "sent": ("send",),
    "emailed": ("send", "mail"),
    "mailed": ("send", "mail"),
    "disputed": ("disput",),
    "cancelled": ("cancel",),
    "canceled": ("cancel",),
    "credited": ("credit",),
    "booked": ("book",),
    "submitted": ("submit",),
    "issued": ("issu",),
    "refunded": ("refund",),
    "transferred": ("transfer",),
}

#: Words of a response that state a change under another name: a payment whose status
#: is ``executed`` says the invoice was paid. Every change word is also stated by itself.
STATED_AS: dict[str, tuple[str, ...]] = {
    "paid": ("executed",),
}

_WORD = re.compile(r"[A-Za-z0-9_']+")
_NEGATIONS = frozenset(
    {"not", "never", "no", "cannot", "unable", "nothing", "neither", "nor", "without"}
)
#: Where a negation's reach ends: a clause ends at punctuation or a turn ("but").
_CLAUSE = re.compile(r"[,:;()]|\s(?:but|however|although|though|while|whereas)\s", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    """A change word of the answer and the sentence it stands in."""

    word: str
    sentence: str


def change_claims(answer: str) -> list[Claim]:
    """The change words of ``answer`` that are not negated, in order, each once.

    A negation ("not", "no", "never", "n't", …) negates every change word after it in
    its clause: "no payment is recorded or scheduled" claims nothing.
    """
    claims: list[Claim] = []
    seen: set[str] = set()
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", answer):
        for clause in _CLAUSE.split(sentence):
            negated = False
            for word in (w.lower() for w in _WORD.findall(clause)):
                if word in _NEGATIONS or word.endswith("n't"):
                    negated = True
                elif word in CHANGE_WORDS and not negated and word not in seen:
                    seen.add(word)
                    claims.append(Claim(word, sentence.strip()))
    return claims


def check_claims(answer: str, *, writes: Iterable[str], responses: Iterable[str]) -> Decision:
    """Allowed when every change the answer states is backed by the task's calls.

    ``writes`` are the tool names of the task's successful write calls; ``responses``
    the texts of its successful responses as the model saw them.
    """
    tools = [name.lower() for name in writes]
    seen = " ".join(responses).lower()

    def backed(claim: Claim) -> bool:
        if any(stem in tool for tool in tools for stem in CHANGE_WORDS[claim.word]):
            return True
        words = (claim.word, *STATED_AS.get(claim.word, ()))
        return any(re.search(rf"(?<![a-z_]){w}(?![a-z_])", seen) for w in words)

    unbacked = [c for c in change_claims(answer) if not backed(c)]
    if not unbacked:
        return Decision(True, "claims", ("every change the answer states is backed by a call",))
    return Decision(
        False,
        "claims",
        tuple(
            f"the answer says {c.word!r} ({c.sentence!r}), but no successful write call "
            "of this task made that change and no response it read states it"
            for c in unbacked
        ),
    )
