"""Grounded arguments: a record id or a date the caller passes must be one the task has seen.

A small caller copies ids it has seen in training ("E-1009" in every HR call of one
measured run, the example of a parameter's description in another) instead of the id in
the request. Every id a correct call passes comes from the request or from a response the
task observed (checked over Acme's train, dev and test trajectories: 722 of 722 id
arguments). So for each string parameter whose schema pattern is an id form
(``^INV-\\d{4}$``: letters, an optional separator, a fixed number of digits), the
caller's grammar admits only the ids of that form the task has seen, as an ``enum``:

- seen in the request in any common spelling (``inv-1008``, ``INV 1008``, ``inv1008``),
  admitted in the schema's spelling (``INV-1008``);
- seen in the responses of calls that succeeded (a purchase order's id in its invoice).

A date argument (``format: date``) admits only the dates the request states, in any
usual spelling (``March 14, 2025``, ``14 Mar 2025``), written as ISO dates: the caller
chooses the date and never converts one (all 58 date arguments of the expert's Acme
calls are dates the request states). The dates in records are facts about those
records, not instructions, so they ground nothing; a request that states no date leaves
the schema as it is.

A search text a connector marks ``"x-umiq-quoted": true`` (``find_employee(name)``,
``list_vendors(name)``) admits only quotes: a pseudonym token the request or a response
holds (``<NAME_1>``, the name as the model sees it) or a run of one to four words of
the request (``Umbrella`` of "Umbrella Supplies", ``Ines Carvalho``). A name the caller
makes up or misspells finds nothing or the wrong record; every name a correct call
searches for is one the task was given.

A list filter with no pattern of its own (``list_payments(invoice_id)``) takes the id
form another tool gives the same argument name (``get_invoice(invoice_id)``).

Planner thoughts and caller turns are not sources: the model's own words ground nothing.
A tool whose *required* id argument has no id seen yet is not offered at that step
(``get_vendor`` before any vendor id came up: no correct call of it exists yet); an
optional one (a list filter) is withheld: the call may leave it out, not make one up
(``list_leave_requests(employee_id="E-1234")`` for a manager's name, a live failure).
When no tool would be left, all stay. Narrowing only removes options: it can never
widen what a call may do, and every call still passes the policies and the connector's
validation.

Pure: no I/O, no torch.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from connectors import ToolSpec
from worker.agent import protocol
from worker.agent.protocol import Turn

# An id pattern: ^PREFIX[sep]\d{n}$ (also [0-9]{n}); the separator is one of - _ / .
_ID_PATTERN = re.compile(r"^\^([A-Za-z]{1,8})([-_/.]?)(?:\\d|\[0-9\])\{(\d{1,2})\}\$$")


@lru_cache(maxsize=256)
def id_form(pattern: str) -> tuple[str, str, re.Pattern[str]] | None:
    """``(prefix, separator, loose regex)`` of an id pattern, or None for other patterns.

    The loose regex finds the id in text in any case, with any of ``-``, ``_``, ``/``,
    ``.``, a space or nothing between prefix and digits, as a whole token."""
    match = _ID_PATTERN.match(pattern)
    if match is None:
        return None
    prefix, separator, digits = match.group(1), match.group(2), int(match.group(3))
    loose = re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}[-_/. ]?(\d{{{digits}}})(?![\d])", re.IGNORECASE
    )
    return prefix, separator, loose


def ids_in(pattern: str, texts: Iterable[str]) -> list[str]:
    """The ids of ``pattern``'s form in ``texts``, in the schema's spelling, first seen
    first, once each; empty for a pattern that is not an id form."""
    form = id_form(pattern)
    if form is None:
        return []
    prefix, separator, loose = form
    seen: list[str] = []
    for text in texts:
        for match in loose.finditer(text):
            value = f"{prefix}{separator}{match.group(1)}"
            if value not in seen:
                seen.append(value)
    return seen


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# A month by name, full or abbreviated ("March", "Mar.", "Sept"): its first three letters.
_MONTH = rf"({'|'.join(_MONTHS)})[a-z]*\.?"
_DATES = re.compile(
    r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"  # 2025-03-14
    rf"|\b{_MONTH} (\d{{1,2}})(?:st|nd|rd|th)?,? (\d{{4}})\b"  # March 14, 2025 / Mar 14 2025
    rf"|\b(\d{{1,2}})(?:st|nd|rd|th)? {_MONTH},? (\d{{4}})\b",  # 14 March 2025
    re.IGNORECASE,
)


def dates_in(texts: Iterable[str]) -> list[str]:
    """The calendar dates ``texts`` state (ISO, ``March 14, 2025``, ``14 Mar 2025``), as
    ISO dates, first seen first, once each; impossible dates (``2025-02-30``) are none."""
    seen: list[str] = []
    for text in texts:
        for m in _DATES.finditer(text):
            if m.group(1):
                year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
            else:
                name, day_, year_ = m.group(4, 5, 6) if m.group(4) else m.group(8, 7, 9)
                month = _MONTHS.index(name[:3].lower()) + 1
                year, day = int(year_), int(day_)
            try:
                value = dt.date(year, month, day).isoformat()
            except ValueError:
                continue
            if value not in seen:
                seen.append(value)
    return seen


#: The schema flag of a search text whose value must quote the request or a record.
QUOTED = "x-umiq-quoted"
#: The longest run of request words a quoted argument admits.
MAX_QUOTE_WORDS = 4
# A pseudonym token of the minimization policies (<NAME_1>, <EMAIL_2>).
_PSEUDONYM = re.compile(r"<[A-Z][A-Z_]*_\d+>")
# A word of a name: letters first, then letters, digits, inner - ' . (Jan-Willem, O'Brien).
_NAME_WORD = re.compile(r"[^\W\d_](?:[\w'’.-]*\w)?")
# Words a name search never starts or ends with.
_FILLER_WORDS = (
    "a an and are as at be by can could do does "
    "for from has have i in is it its me my need "
    "of on or our please the their them this to us was "
    "we what when where which who whose why will with would you "
    "your"
)
_FILLER = frozenset(_FILLER_WORDS.split())


def quotes_in(request: Sequence[str], responses: Sequence[str] = ()) -> list[str]:
    """What a quoted argument admits: the pseudonym tokens of ``request`` and
    ``responses``, then each run of one to :data:`MAX_QUOTE_WORDS` adjacent words of
    ``request`` (possessive ``'s`` dropped) that neither starts nor ends with a filler
    word; first seen first, once each."""
    seen: dict[str, None] = {}
    for text in [*request, *responses]:
        seen.update(dict.fromkeys(_PSEUDONYM.findall(text)))
    for text in request:
        for segment in re.split(r"<[^>]*>|[^\w\s'’.-]|\.(?:\s|$)", text):
            found = [w.removesuffix("'s").removesuffix("’s") for w in _NAME_WORD.findall(segment)]
            for start in range(len(found)):
                for end in range(start + 1, min(start + MAX_QUOTE_WORDS, len(found)) + 1):
                    run = found[start:end]
                    if run[0].lower() in _FILLER or run[-1].lower() in _FILLER:
                        continue
                    seen.setdefault(" ".join(run), None)
    return list(seen)


def evidence(turns: Sequence[Turn]) -> list[str]:
    """What grounds an id: the request and the responses of the calls that succeeded."""
    texts = [t["value"] for t in turns if t.get("from") == "user"]
    texts += [c.text for c in protocol.calls_seen(turns) if c.ok]
    return texts


def id_forms(tools: Iterable[ToolSpec]) -> dict[str, str]:
    """Argument name → id pattern, from every tool that gives an argument an id form:
    ``list_payments(invoice_id)`` has no pattern of its own, ``get_invoice(invoice_id)``
    says what an ``invoice_id`` looks like. A name given two different id forms has
    none (ambiguous)."""
    forms: dict[str, str] = {}
    clash: set[str] = set()
    for tool in tools:
        for name, schema in (tool.parameters.get("properties") or {}).items():
            pattern = schema.get("pattern") if isinstance(schema, Mapping) else None
            if not isinstance(pattern, str) or id_form(pattern) is None:
                continue
            if forms.setdefault(name, pattern) != pattern:
                clash.add(name)
    return {name: pattern for name, pattern in forms.items() if name not in clash}


def grounded_parameters(
    parameters: Mapping[str, Any],
    texts: Sequence[str],
    forms: Mapping[str, str] | None = None,
    request: Sequence[str] = (),
) -> dict[str, Any]:
    """``parameters`` with each id-form string property narrowed to the ids ``texts``
    show (an ``enum``), each date property (``format: date``) to the dates the
    ``request`` states, and each quoted property (:data:`QUOTED`) to the quotes of the
    request and of ``texts``. An optional id property of which no id was seen is left
    out (withheld); other properties with nothing seen, or of no such kind, unchanged. A
    property's id form is its own pattern or, without one, ``forms[name]``."""
    properties = dict(parameters.get("properties") or {})
    changed = False
    withheld: list[str] = []
    for name, schema in properties.items():
        if not isinstance(schema, Mapping) or schema.get("type") != "string":
            continue
        if "enum" in schema or "const" in schema:
            continue
        if schema.get("format") == "date":
            if asked := dates_in(request):
                properties[name] = {**schema, "enum": asked}
                changed = True
            continue
        if schema.get(QUOTED) is True:
            low, high = schema.get("minLength", 1), schema.get("maxLength", 10_000)
            quotes = [q for q in quotes_in(request, texts) if low <= len(q) <= high]
            if quotes:
                properties[name] = {**schema, "enum": quotes}
                changed = True
            continue
        pattern = schema.get("pattern") or (forms or {}).get(name)
        if not isinstance(pattern, str):
            continue
        values = ids_in(pattern, texts)
        if values:
            properties[name] = {**schema, "enum": values}
            changed = True
        elif id_form(pattern) is not None and name not in (parameters.get("required") or ()):
            withheld.append(name)
    for name in withheld:
        # An optional id filter with no id of its form seen: any value would be made up
        # and find nothing or the wrong record; the call may leave it out, not invent it.
        del properties[name]
        changed = True
    return {**parameters, "properties": properties} if changed else dict(parameters)


def ground(
    tools: Sequence[ToolSpec], turns: Sequence[Turn], catalogue: Sequence[ToolSpec] = ()
) -> tuple[ToolSpec, ...]:
    """``tools`` with their id arguments narrowed to the ids the task has seen; id forms
    come from ``tools`` and ``catalogue`` (the department's other tools).

    A tool with a required id argument of which the task has seen no id is left out
    (``get_purchase_order`` before any purchase order id came up): no correct call of it
    is possible yet. When that would leave no tool, every tool stays, narrowed."""
    texts = evidence(turns)
    request = [t["value"] for t in turns if t.get("from") == "user"]
    forms = id_forms([*tools, *catalogue])
    grounded = [
        replace(tool, parameters=grounded_parameters(tool.parameters, texts, forms, request))
        for tool in tools
    ]
    callable_ = [tool for tool in grounded if not _missing_ids(tool, forms)]
    return tuple(callable_ or grounded)


def _missing_ids(tool: ToolSpec, forms: Mapping[str, str]) -> list[str]:
    """The required id arguments of a grounded ``tool`` for which no id was seen."""
    properties = tool.parameters.get("properties") or {}
    missing = []
    for name in tool.parameters.get("required") or ():
        schema = properties.get(name)
        if not isinstance(schema, Mapping) or schema.get("type") != "string" or "enum" in schema:
            continue
        pattern = schema.get("pattern") or forms.get(name)
        if isinstance(pattern, str) and id_form(pattern) is not None:
            missing.append(name)
    return missing


def grounded_values(
    tools: Sequence[ToolSpec], original: Sequence[ToolSpec]
) -> dict[str, dict[str, list[str]]]:
    """Per tool and argument, the ids grounding admits where ``original`` (the same
    tools before :func:`ground`) admitted any of its form (for the audit)."""
    before = {tool.name: tool.parameters.get("properties") or {} for tool in original}
    out: dict[str, dict[str, list[str]]] = {}
    for tool in tools:
        properties = tool.parameters.get("properties") or {}
        for name, schema in properties.items():
            if not isinstance(schema, Mapping) or "enum" not in schema:
                continue
            if "enum" not in (before.get(tool.name, {}).get(name) or {}):
                out.setdefault(tool.name, {})[name] = list(schema["enum"])
        for name in before.get(tool.name, {}):
            if name not in properties:  # withheld: no id of its form seen, none admitted
                out.setdefault(tool.name, {})[name] = []
    return out


def audit_details(grounded: Sequence[ToolSpec], original: Sequence[ToolSpec]) -> dict[str, Any]:
    """What grounding did at a step, for the caller step's audit: the ids it admitted
    (``grounded``) and the tools it did not offer for want of an id (``not_offered``);
    empty when it changed nothing."""
    out: dict[str, Any] = {}
    if narrowed := grounded_values(grounded, original):
        out["grounded"] = narrowed
    names = {tool.name for tool in grounded}
    if dropped := [tool.name for tool in original if tool.name not in names]:
        out["not_offered"] = dropped
    return out
