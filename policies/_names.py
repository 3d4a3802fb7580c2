"""Names in no record and after no title: found by their given name.

A person the systems do not know (``send it to jan de vries``, ``Wilhelmina called``)
has no record to match and often no title. What marks the name is its *given name*: a
gazetteer of common given names (the company's languages: Dutch, German, English,
French, and those common among Dutch residents of Turkish, Moroccan and Surinamese
descent) plus every given name of the directory the connectors expose (HR's employees,
the vendors' contacts: the first word of each known full name). A given name starts a
name; what follows it is its surname when it is one or more particles and a word (``de
vries``), or a word that is no common word (``jan Bakker``, ``jan vries``, but not ``jan
will`` nor ``Lotte about``). A given name alone is a name too (``ask Lotte``).

Given names that are also common words or months (``Will``, ``Mark``, ``May``, ``Jan``
as January, ``Rob``, ``Ben``, ``Iris``) count only before a particle and a word (``Mark
van Dijk``): alone or before a plain word they are too often the word. A name followed by
a company word or ``&`` (``Sophie Bakker Logistics``, ``Daan & Co``) is a company's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Common given names, casefolded: top names of birth years 1950-2015 in the Netherlands,
# Belgium, Germany, the UK and France, and of Dutch residents of Turkish, Moroccan and
# Surinamese descent. Names that are common words are in AMBIGUOUS instead.
_GIVEN = """
aaron abdel abdelkader abdullah abdul adam adriaan adrianus agnes ahmed aicha aisha
albert alexander alexandra alice alicia amal amina amir amira andre andrea andreas
andries angela anja anke anna anne anneke annemarie annet annette anouk anton antonius
arie arjen arjan arthur astrid ayse aziz bart bas bastiaan beatrix bernard bert bianca
bilal birgit bram brigitte bouchra carla carlos caroline catharina cees charlotte chantal
chris christian christiaan christina christine claudia cor cornelis corrie daan daniel
daniela danielle david debora dennis dewi dirk dominique edith eduard elif elisabeth
elise ella ellen els emma emre erik esra esther eva evelien fatima fatma femke finn florian
floor frans frederik freek gerard gerrit gert gijs guus hamid hanna hannah hans
hassan hatice heleen helen helena hendrik henk henri hilde hugo ibrahim ilse ingrid inge
isabel isabella ivo jaap jacob jacobus jakob jamal jan-willem janneke jannes jasper jeroen
jesse joanna johan johanna johannes jonas joost jordy jorien joris jos josef joseph julia
julian juliette jurgen jürgen karel karin katharina katrin kees kemal kevin khadija klaas
koen laila lars laura lea leon leonie lieke lisa lotte louise luca lucas luuk lynn maarten
maria marianne marieke marije marloes martijn martin maryam mathijs matthias maurits
maximilian mees mehmet meryem michael michel michiel mirjam mohamed mohammed monique
mustafa nadia naima nathalie nick niels nienke noah noor nora olga olivia omar patrick paul
paula pauline peter petra pieter pim quinten rachid rachida ramon rashid rebecca remco
renate rik rinus robert robin roel ronald rosa ruben rutger ruud sander sandra sanne
sara sarah saskia sebastiaan selin sem sergio sevda silvia simon sjoerd sofia sophie stefan
stefanie stephanie susanne suzanne sven tamara teun thijs thomas tim tineke tobias tom
tessa twan vera victor vincent wendy wilhelmina willem wim wouter xavier yasmina yasmine
yusuf youssef zeynep zoe
"""
GIVEN_NAMES: frozenset[str] = _words(_GIVEN)

# Given names that are also words or months (English, Dutch, German, French): a name only
# with a particle and a surname after them.
AMBIGUOUS: frozenset[str] = _words("""
will mark may june april august jan rob bill rose iris grant max frank dean lane
chase art sky hope joy faith amber jade lily daisy ivy holly dawn summer autumn sunny
rich young page roos ad bo fleur jet mila liv floor frans greet harm milan dick said
""")

# Words that are never a surname after a given name: function words and common verbs
# and nouns of back-office requests (English and Dutch).
STOP: frozenset[str] = _words("""
a an the and or but if of to in on at by for from with about into onto over under as is
are was were be been being has have had do does did will would shall should can could
may might must not no yes it its this that these those there here then than so too also
i me my you your he him his she her we us our they them their who whom whose which what
when where why how all any each every some none please pls thanks thank asap today
tomorrow yesterday now again still already just only about via per re fw fwd call called
calls calling ask asked asks says said say tell told mail mailed email emailed phone
phoned send sent sending pay paid paying check checked wants wanted needs needed knows
knew got get gets give gave wrote writes write approve approved approves confirm
confirmed confirms handle handles handled will would is isn't wasn't can't won't invoice
invoices payment payments vendor vendors order orders credit note notes leave request
requests employee employees status balance account amount due team list report de het
een en of van op te in met voor aan naar bij uit over om door als maar niet wel ook nog
al dan dat die dit deze er is zijn was waren wordt werd heeft hebben had kan kon zal zou
moet wil graag even morgen vandaag gisteren belt belde mailt mailde vraagt vroeg stuur
stuurt betaal betaalt factuur facturen betaling verlof over
""")

# Words after a name that make it a company's: ``Sophie Bakker Logistics``.
_COMPANY = _words("""
bv b.v. b.v nv n.v. n.v gmbh ag ltd ltd. inc inc. llc plc sa sarl srl co co. company
group groep holding holdings logistics services service consulting consultancy transport
trading international partners & en zn zonen
""")

_PARTICLE = frozenset((
    "van", "von", "de", "der", "den", "ter", "ten", "te", "el", "al", "da", "di", "du",
    "le", "la", "del", "dos", "zu", "bin", "ibn", "'t",
))  # fmt: skip
_WORD = re.compile(r"(?<![\w@.'’-])[^\W\d_][\w'’-]*?(?=['’]s\b|(?![\w'’@-]))")


def directory_given_names(known_names: Iterable[str]) -> frozenset[str]:
    """The given names (first words, two letters or more) of the directory's full names."""
    found = set()
    for name in known_names:
        words = name.split()
        if len(words) >= 2 and len(words[0]) >= 2 and words[0][0].isalpha():
            found.add(words[0].casefold())
    return frozenset(found)


def given_name_spans(text: str, given: frozenset[str]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every name in ``text`` that a given name of ``given`` starts."""
    words = list(_WORD.finditer(text))
    for i, match in enumerate(words):
        key = match.group().casefold()
        ambiguous = key in AMBIGUOUS
        if key not in given and not ambiguous:
            continue
        end = _surname_end(text, words, i, ambiguous=ambiguous)
        if end is None:
            continue
        if not _company_after(text, end):
            yield match.start(), end


def _surname_end(text: str, words: list[re.Match[str]], i: int, *, ambiguous: bool) -> int | None:
    """Where the name a given name at ``words[i]`` starts ends, or None for no name."""
    first = words[i]
    j, particles = i + 1, 0
    while j < len(words) and particles < 3 and _adjacent(text, words[j - 1], words[j]):
        if words[j].group().casefold() in _PARTICLE:
            particles, j = particles + 1, j + 1
        else:
            break
    if particles:
        if j < len(words) and _adjacent(text, words[j - 1], words[j]):
            return words[j].end()
        return None  # "jan de" and nothing after: not a name
    if ambiguous:
        return None
    if j < len(words) and _adjacent(text, first, words[j]):
        nxt = words[j].group()
        surname = nxt.casefold() not in STOP and len(nxt) >= 2
        if surname and (nxt[0].isupper() or not first.group()[0].isupper()):
            return words[j].end()
    return first.end()


def _adjacent(text: str, a: re.Match[str], b: re.Match[str]) -> bool:
    """Whether ``b`` follows ``a`` after one run of spaces (no punctuation, no line break)."""
    between = text[a.end() : b.start()]
    return bool(between) and between.strip(" ") == ""


def _company_after(text: str, end: int) -> bool:
    after = text[end:].lstrip(" ").split(" ", 1)[0] if end < len(text) else ""
    return after.casefold().rstrip(",.;:") in _COMPANY or after.startswith("&")
