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
    "released": ("releas", "pay", "schedul"),
}

#: The verbs of an announcement ("I approve LR-0007", "I will schedule the payment"),
#: each with the change word whose evidence backs it.
ANNOUNCED: dict[str, str] = {
    "schedul": "scheduled",
    "pay": "paid",
    "approv": "approved",
    "reject": "rejected",
    "declin": "declined",
    "creat": "created",
    "send": "sent",
    "email": "emailed",
    "mail": "mailed",
    "disput": "disputed",
    "cancel": "cancelled",
    "credit": "credited",
    "book": "booked",
    "submit": "submitted",
    "issu": "issued",
    "refund": "refunded",
    "transfer": "transferred",
    "releas": "released",
}
#: "I", "we", then helpers ("will", "'ll", "am going to", "hereby", …) before the verb.
_ANNOUNCEMENT = re.compile(
    r"\b(?:i|we)(?:'ll|'m|'re|'ve)?\s+"
    r"((?:(?:will|shall|am|are|have|has|now|hereby|also|then|just|can|going|to|be|"
    r"immediately|today|proceed|proceeding|with)\s+)*)([a-z]+)",
    re.IGNORECASE,
)

#: Words of a response that state a change under another name: a payment whose status
#: is ``executed`` says the invoice was paid. Every change word is also stated by itself.
STATED_AS: dict[str, tuple[str, ...]] = {
    "paid": ("executed",),
}

_WORD = re.compile(r"[A-Za-z0-9_']+")
#: JSON field names that date an event ("issue_date", "submitted_on", "created_at").
_BOOKKEEPING = frozenset({"created", "updated", "modified", "inserted"})
_DATED_FIELD = re.compile(r'"([a-z]+)_(?:date|on|at)"\s*:\s*"\d')
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
            for word in announced(clause):
                if word not in seen:
                    seen.add(word)
                    claims.append(Claim(word, sentence.strip()))
    return claims


def announced(clause: str) -> list[str]:
    """The changes a clause announces in the first person ("I approve LR-0007", "we'll
    schedule it"), as change words; a negated announcement ("I will not pay") claims
    nothing. An announcement is a claim too: the requester reads it as done."""
    words: list[str] = []
    for match in _ANNOUNCEMENT.finditer(clause):
        helpers, verb = match.group(1).lower().split(), match.group(2).lower()
        before = [w.lower() for w in _WORD.findall(clause[: match.start()])]
        if any(w in _NEGATIONS or w.endswith("n't") for w in [*before, *helpers, verb]):
            continue
        stem = next((s for s in ANNOUNCED if verb.startswith(s)), None)
        if stem is not None and not verb.endswith(("able", "ment", "ments")):
            words.append(ANNOUNCED[stem])
    return words


def check_claims(answer: str, *, writes: Iterable[str], responses: Iterable[str]) -> Decision:
    """Allowed when every change the answer states is backed by the task's calls.

    ``writes`` are the tool names of the task's successful write calls; ``responses``
    the texts of its successful responses as the model saw them.
    """
    tools = [name.lower() for name in writes]
    seen = " ".join(responses).lower()
    # A field that dates a change states that it happened: an invoice's "issue_date"
    # backs "issued", a leave request's "submitted_on" backs "submitted".
    # Bookkeeping stamps every record has (created_at, updated_at) state nothing.
    dated = [key for key in _DATED_FIELD.findall(seen) if key not in _BOOKKEEPING]

    def backed(claim: Claim) -> bool:
        if any(stem in tool for tool in tools for stem in CHANGE_WORDS[claim.word]):
            return True
        if any(
            len(stem) >= 4 and key.startswith(stem)
            for key in dated
            for stem in CHANGE_WORDS[claim.word]
        ):
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


#: The same word (or number) four times or more in a row, ignoring punctuation between.
_STUTTER = re.compile(r"\b(\w+)\b(?:\W+\1\b){3,}", re.IGNORECASE)
#: A number no system writes: a decimal point followed by thousands groups (258.2,000).
_BROKEN_NUMBER = re.compile(r"\d\.\d+,\d{3}")


def check_form(answer: str) -> Decision:
    """Allowed unless the answer is degenerate: a word repeated on and on ("No, no, no:
    no: no"), a sentence said three times or more, or a malformed number. Such text is
    a model failing, not an answer; the task ends held for a human instead. (Decided
    under the ``claims`` policy: what the answer says, read before it is delivered.)"""
    problems: list[str] = []
    stutter = _STUTTER.search(answer)
    if stutter:
        problems.append(f"the answer repeats {stutter.group(1)!r} over and over")
    sentences = [
        " ".join(s.lower().split()) for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if s.strip()
    ]
    repeated = {s for s in sentences if len(s) > 3 and sentences.count(s) >= 3}
    if repeated:
        problems.append(
            f"the answer says {sorted(repeated)[0]!r} {sentences.count(sorted(repeated)[0])} times"
        )
    broken = _BROKEN_NUMBER.search(answer)
    if broken:
        problems.append(f"the answer has a malformed number near {broken.group(0)!r}")
    if not problems:
        return Decision(True, "claims", ("the answer is well formed",))
    return Decision(False, "claims", tuple(problems))
