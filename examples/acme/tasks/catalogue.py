"""The Acme task catalogue: families of back-office tasks, their phrasings and slots.

A *family* is one kind of task (look up an invoice's status, pay an invoice if it
matches its order, refuse to pay an invoice twice, …). It has at least six phrasings
(templates), a slot space drawn from the live seed data through the systems' own read
tools (``Facts.gather``), and a function that says what a correct solution yields: the
facts the answer must state, the records the systems must end with, or that the task
must be given up.

``generate`` draws instances deterministically from a seed, holding out whole
phrasings and whole slot combinations per split so that no test (or dev) instruction,
phrasing or slot combination is seen in training. Each instruction is then written the
way a requester might (``styles``: lower-case or undashed ids, a ticket number, a polite
mail, a typo, …), with the styles' wordings split the same way.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from examples.acme.tasks.styles import restyle
from examples.acme.tasks.world import World

Kind = Literal["read", "reasoning", "write", "refuse", "give_up", "not_found", "mail", "multi"]
SPLITS = ("train", "dev", "test")

#: Execution dates offered to payment tasks (all after every seeded issue date).
DATES = (
    "2025-03-14",
    "2025-03-17",
    "2025-03-21",
    "2025-03-28",
    "2025-04-01",
    "2025-04-04",
    "2025-04-11",
    "2025-04-15",
)
DISPUTE_REASONS = (
    "the invoice bills one unit more than was ordered",
    "the unit price differs from the agreed quote",
    "part of the delivery arrived damaged",
    "the delivery was incomplete",
    "it duplicates an invoice we already received",
    "the goods were never ordered",
)
UNKNOWN_VENDORS = (
    "Globex Handels GmbH",
    "Initech Services",
    "Umbrella Supplies",
    "Stark Logistics",
    "Wayne Paper Co",
    "Soylent Foods",
    "Hooli Office",
    "Vandelay Industries",
    "Blue Sun Trading",
    "Cyberdyne Systems",
    "Oceanic Freight",
    "Tyrell Components",
    "Gringotts Supplies",
    "Monarch Printing",
)
LIMITS = (500, 1000, 2500, 5000, 10000, 20000)


def money(amount: float, currency: str) -> str:
    """``1250.0 EUR``: an amount as the ERP's records hold it (JSON's form of the number)
    and its currency: how the expert's answers quote it and what the checkers expect.

    Answers quote values as the observation shows them: a 135M summarizer copies
    ``"amount": 6212.6`` reliably and garbles a reformatted ``6,212.60`` (measured: "258.2,
    000,000 PLN"). The checkers compare amounts as numbers, so an answer that writes
    ``6,212.60 EUR`` states the same fact."""
    return f"{json.dumps(round(float(amount), 2))} {currency}"


def date_text(iso: str) -> str:
    """``March 14, 2025`` for ``2025-03-14``."""
    import datetime as dt

    day = dt.date.fromisoformat(iso)
    return f"{day:%B} {day.day}, {day.year}"


def short_name(name: str) -> str:
    """The part of a vendor's name that people use (``Nordlicht`` for Nordlicht Bürobedarf)."""
    words = name.split()
    return " ".join(words[:2]) if words[0].lower() in ("van", "de", "la") else words[0]


# -- seed facts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """The seed data of a reset world, read through the systems' read tools."""

    vendors: dict[str, dict[str, Any]]
    orders: dict[str, dict[str, Any]]
    invoices: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    systems: tuple[str, ...] = ("erp",)
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    employees: dict[str, dict[str, Any]] = field(default_factory=dict)
    leave_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def gather(cls, world: World) -> Facts:
        """Read every record the catalogue draws slots from."""

        def by_id(tool: str, **arguments: Any) -> dict[str, dict[str, Any]]:
            if not world.has_tool(tool):
                return {}
            return {row["id"]: row for row in world.read(tool, **arguments)}

        employees: dict[str, dict[str, Any]] = {}
        if world.has_tool("get_employee"):
            # the HR tools look people up one at a time: walk the ids until a gap of 5
            number, misses = 1001, 0
            while misses < 5:
                result = world.invoke("get_employee", {"employee_id": f"E-{number}"})
                if result.ok:
                    employees[result.data["id"]], misses = result.data, 0
                else:
                    misses += 1
                number += 1
        balances: dict[str, dict[str, Any]] = {}
        if world.has_tool("get_leave_balance"):
            for eid in employees:
                result = world.invoke("get_leave_balance", {"employee_id": eid})
                if result.ok:
                    balances[eid] = result.data
        return cls(
            vendors=by_id("list_vendors"),
            orders=by_id("list_purchase_orders"),
            invoices=by_id("list_invoices"),
            payments=by_id("list_payments"),
            systems=world.systems,
            receipts=by_id("list_goods_receipts"),
            employees=employees,
            leave_requests=by_id("list_leave_requests"),
            balances=balances,
        )

    def invoices_where(self, **fields: Any) -> list[dict[str, Any]]:
        """Invoices whose fields equal ``fields`` (``po_id=None`` means no order)."""
        return [
            inv
            for inv in self.invoices.values()
            if all(inv.get(key) == value for key, value in fields.items())
        ]

    def payment_of(self, invoice_id: str) -> dict[str, Any] | None:
        """The payment of ``invoice_id``, if there is one."""
        return next((p for p in self.payments.values() if p["invoice_id"] == invoice_id), None)

    def received(self, po_id: str) -> dict[int, int]:
        """Units received per order line of ``po_id``, over all its goods receipts."""
        units: dict[int, int] = {}
        for receipt in self.receipts.values():
            if receipt["po_id"] == po_id:
                for line in receipt["lines"]:
                    units[line["line_no"]] = units.get(line["line_no"], 0) + line["quantity"]
        return units

    def fully_received(self, po_id: str) -> bool:
        """Whether every line of ``po_id`` was received in full."""
        got = self.received(po_id)
        return all(
            got.get(line["line_no"], 0) >= line["quantity"] for line in self.orders[po_id]["lines"]
        )

    def matches_order(self, invoice: Mapping[str, Any]) -> bool:
        """Whether the invoice bills exactly its purchase order's total."""
        order = self.orders.get(invoice.get("po_id") or "")
        return order is not None and round(order["amount"], 2) == round(invoice["amount"], 2)


# -- instances and families -------------------------------------------------------------


@dataclass(frozen=True)
class TaskInstance:
    """One task: its family, the user's instruction, the slots it was made from, and
    what a correct solution yields (``expected``, see ``Family.expect``)."""

    family: str
    instruction: str
    slots: dict[str, Any]
    expected: dict[str, Any]
    template: int = 0
    split: str = "train"
    uid: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expect(
    facts: Iterable[str] = (),
    *,
    writes: Iterable[Mapping[str, Any]] = (),
    forbid: Iterable[str] = (),
    give_up: bool = False,
    not_found: bool = False,
    **notes: Any,
) -> dict[str, Any]:
    """An ``expected`` record.

    ``facts`` must appear in the answer, ``forbid`` must not; ``writes`` are the only
    records that may change, each ``{"section", "id" (None for a new record),
    "fields"}``; ``give_up`` means the right end is giving up with nothing written;
    ``not_found`` means the right end is an answer that the record the request names
    does not exist, after a lookup that found nothing, with nothing written.
    """
    return {
        "outcome": "give_up" if give_up else "answer",
        "not_found": not_found,
        "facts": list(facts),
        "forbid": list(forbid),
        "writes": [dict(w) for w in writes],
        **notes,
    }


def write(section: str, record_id: str | None, **fields: Any) -> dict[str, Any]:
    """One expected change: record ``record_id`` of ``section`` (None: a new one)."""
    return {"section": section, "id": record_id, "fields": fields}


@dataclass(frozen=True)
class Family:
    """A kind of task: phrasings, a slot space over the seed facts, the expected result."""

    id: str
    kind: Kind
    systems: tuple[str, ...]
    summary: str
    templates: tuple[str, ...]
    slots: Callable[[Facts], list[dict[str, Any]]]
    expect: Callable[[Facts, dict[str, Any]], dict[str, Any]]
    #: Slots that identify a combination for the split (the rest only decorate it).
    key: tuple[str, ...] = ()
    needs_tools: tuple[str, ...] = field(default=())
    #: Facts only some phrasings ask for, by template index: "status and amount" needs
    #: the amount, "what is the status" does not (``expect`` lists what every one asks).
    asks: Mapping[int, Callable[[Facts, dict[str, Any]], list[str]]] = field(default_factory=dict)

    def expected(
        self, facts: Facts, slots: dict[str, Any], template: int | None = None
    ) -> dict[str, Any]:
        """What a correct solution yields for ``slots`` asked with phrasing ``template``."""
        record = self.expect(facts, slots)
        extra = self.asks.get(template) if template is not None else None
        if extra is not None:
            record = {**record, "facts": [*record["facts"], *extra(facts, slots)]}
        return record

    def template_of(self, instruction: str, slots: Mapping[str, Any]) -> int | None:
        """The index of the phrasing that gives ``instruction`` for ``slots``, if any
        (a phrasing that needs a slot ``slots`` lacks is not it)."""
        for index, template in enumerate(self.templates):
            try:
                if template.format(**slots) == instruction:
                    return index
            except (KeyError, IndexError):
                continue
        return None

    def available(self, world_tools: Callable[[str], bool]) -> bool:
        """Whether the running systems offer every tool this family needs."""
        return all(world_tools(tool) for tool in self.needs_tools)

    def template_split(self, index: int) -> str:
        """Which split phrasing ``index`` belongs to: the last is test, the one before dev."""
        if index == len(self.templates) - 1:
            return "test"
        if index == len(self.templates) - 2:
            return "dev"
        return "train"


FAMILIES: dict[str, Family] = {}


def family(**spec: Any) -> Family:
    """Register a family in ``FAMILIES``."""
    fam = Family(**spec)
    if fam.id in FAMILIES:
        raise ValueError(f"family {fam.id!r} is registered twice")
    if len(fam.templates) < 6:
        raise ValueError(f"family {fam.id!r} has {len(fam.templates)} phrasings; it needs 6")
    FAMILIES[fam.id] = fam
    return fam


# -- generation -------------------------------------------------------------------------


def split_of_combination(
    family_id: str, combos: list[dict[str, Any]], key: tuple[str, ...]
) -> dict[str, list[dict[str, Any]]]:
    """Assign each slot combination to a split by a stable hash of its key slots.

    The 15 % (at least one) that hash lowest go to test, the next 15 % to dev, the rest
    to train; combinations with equal key slots always share a split.
    """
    keys = sorted({combination_key(c, key) for c in combos}, key=lambda k: _digest(family_id + k))
    if len(keys) < 3:
        raise ValueError(f"family {family_id!r} has {len(keys)} slot combinations; it needs 3")
    n_held = max(1, round(0.15 * len(keys)))
    where = {k: "test" for k in keys[:n_held]}
    where |= {k: "dev" for k in keys[n_held : 2 * n_held]}
    where |= {k: "train" for k in keys[2 * n_held :]}
    return {
        split: [c for c in combos if where[combination_key(c, key)] == split] for split in SPLITS
    }


def combination_key(combo: Mapping[str, Any], key: tuple[str, ...]) -> str:
    """The canonical text of a combination's key slots (all slots when ``key`` is empty)."""
    chosen = {k: combo[k] for k in key} if key else dict(combo)
    return json.dumps(chosen, sort_keys=True, default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_sizes(per_family: int) -> dict[str, int]:
    """Instances per family in each split: ``per_family`` train, a fifth (≥ 2) dev and test."""
    held = max(2, per_family // 5)
    return {"train": per_family, "dev": held, "test": held}


def generate(
    facts: Facts,
    *,
    seed: int,
    per_family: int,
    families: Iterable[str] | None = None,
    splits: Mapping[str, int] | None = None,
) -> dict[str, list[TaskInstance]]:
    """Instances by split, deterministic for ``seed`` and ``facts``.

    Each split draws only its own phrasings (``Family.template_split``) and its own slot
    combinations (``split_of_combination``); instructions do not repeat within a split.
    A family whose space is smaller than asked gets as many distinct instances as it has.
    """
    sizes = dict(splits) if splits is not None else split_sizes(per_family)
    chosen = list(families) if families is not None else list(FAMILIES)
    out: dict[str, list[TaskInstance]] = {split: [] for split in sizes}
    for fam_id in chosen:
        fam = FAMILIES[fam_id]
        by_split = split_of_combination(fam.id, fam.slots(facts), fam.key)
        for split, count in sizes.items():
            out[split].extend(_draw(fam, facts, by_split[split], split, count, seed))
    return out


def _draw(
    fam: Family,
    facts: Facts,
    combos: list[dict[str, Any]],
    split: str,
    count: int,
    seed: int,
) -> list[TaskInstance]:
    rng = random.Random(f"{seed}:{fam.id}:{split}")
    templates = [i for i in range(len(fam.templates)) if fam.template_split(i) == split]
    seen: set[str] = set()
    drawn: list[TaskInstance] = []
    for _ in range(count * 40):
        if len(drawn) == count:
            break
        combo = rng.choice(combos)
        index = rng.choice(templates)
        instruction = restyle(fam.templates[index].format(**combo), split, rng)
        if instruction in seen:
            continue
        seen.add(instruction)
        drawn.append(
            TaskInstance(
                family=fam.id,
                instruction=instruction,
                slots=dict(combo),
                expected=fam.expected(facts, combo, index),
                template=index,
                split=split,
                uid=f"{fam.id}.{split}.{len(drawn):03d}",
            )
        )
    return drawn


def available_families(world: World) -> list[str]:
    """The ids of the families whose tools the running systems offer, in catalogue order."""
    return [fam.id for fam in FAMILIES.values() if fam.available(world.has_tool)]


# The families themselves live in ``families_erp`` and ``families_hr``; importing them
# registers them here.
from examples.acme.tasks import families_erp, families_hr  # noqa: E402,F401


def department_for(family: str) -> str:
    """The department that owns a family's tasks: ``hr`` on the HR system, else ``finance``."""
    return "hr" if "hr" in FAMILIES[family].systems else "finance"
