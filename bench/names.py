"""Names in no record, found by their given name and by their shape: recall on a seeded
list, and what the detector newly flags in the Acme catalogue's requests (each printed, to
judge by eye).

    python bench/names.py [--seeds 0 1] [--per-family 10]

The seeded names are in no Acme record and carry no title; half are written as a person
would type them in a hurry (all lowercase). ``held out`` names have a given name in no
gazetteer (the built-in one, nor the directory's): what the given names cannot find, and
the shape rule (``policies._name_shapes``) can when they are written capitalized. A name
counts as found when every word of it but its particles is inside a NAME span.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies import Detector

IN_GAZETTEER = [
    "Jan de Vries", "Wilhelmina Zwartkop", "Thomas Verbeek", "Sanne Kuipers",
    "Mohamed Bouzid", "Fatima Ouali", "Mehmet Yilmaz", "Zeynep Kaya", "Pieter van Leeuwen",
    "Anouk ter Horst", "Jürgen Schäfer", "Katharina Vogel", "Sophie Lambert",
    "Emma Clarke", "Daniel Hughes", "Ruud Gullit", "Femke Halsema", "Mark van der Berg",
    "Willem de Graaf", "Rachid El Idrissi", "Esther Ouwehand", "Koen Wauters", "Lisa Brouwers",
    "Hendrik Mulder", "Joost Klein", "Nadia Haddou", "Sergio Ramos", "Hanna Schulz",
    "Niels Dekker",
]  # fmt: skip
HELD_OUT = [
    "Wubbo Ockels", "Siebe Hiemstra", "Tjitske Bosma", "Eelco Brinkman", "Ype Visser",
    "Hiske Dijkstra", "Gerolf Tamminga", "Auke Zijlstra", "Marit Hoekstra", "Doutzen Kroes",
    "Julien Moreau",
]  # fmt: skip
TEMPLATES = [
    "send it to {name}",
    "{name} called about the invoice",
    "please ask {name} about it",
    "cc {name} on the reply",
    "per {name}: pay it",
]
PARTICLES = {"van", "de", "der", "den", "ter", "te", "el", "von"}


def found(detector: Detector, text: str, name: str) -> bool:
    spans = [(s.start, s.end) for s in detector.find(text) if s.kind.value == "NAME"]
    for word in re.finditer(r"\S+", name):
        if word.group().casefold() in PARTICLES:
            continue
        at = text.index(name) + word.start()
        if not any(start <= at and at + len(word.group()) <= end for start, end in spans):
            return False
    return True


def recall(detector: Detector, names: list[str]) -> tuple[int, int]:
    hits = total = 0
    for name in names:
        for written in (name, name.lower()):
            for template in TEMPLATES:
                total += 1
                hits += found(detector, template.format(name=written), written)
    return hits, total


def catalogue(seeds: list[int], per_family: int) -> tuple[list[str], list[str]]:
    """The Acme requests of ``seeds`` and the directory's full names."""
    from examples.acme.world import AcmeWorld

    world = AcmeWorld()
    texts, names = [], set()
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp, world.start(Path(tmp), seed=seed) as office:
            names.update(office.known_names())
            drawn = world.draw(office.systems, seed=seed, per_family=per_family,
                               families=world.families(office.systems))  # fmt: skip
            texts += [i.instruction for items in drawn.values() for i in items]
    return texts, sorted(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--per-family", type=int, default=10)
    args = parser.parse_args()
    texts, directory = catalogue(args.seeds, args.per_family)
    seeded = {n.casefold() for n in IN_GAZETTEER + HELD_OUT}
    clash = [n for n in directory if n.casefold() in seeded]
    print(f"directory: {len(directory)} names; seeded names in it: {clash or 'none'}")
    for label, detector in (("without given names", Detector(directory, given_names=False)),
                            ("given names only", Detector(directory, name_shapes=False)),
                            ("given names, shapes", Detector(directory))):  # fmt: skip
        for group, names in (("in gazetteer", IN_GAZETTEER), ("held out", HELD_OUT)):
            hits, total = recall(detector, names)
            print(f"recall {label:<20} {group:<13} {hits}/{total} ({hits / total:.0%})")
    before, after = Detector(directory, given_names=False), Detector(directory)
    new: Counter[str] = Counter()
    where: dict[str, str] = {}
    flagged = 0
    for text in texts:
        old = {(s.start, s.end) for s in before.find(text)}
        extra = [
            s for s in after.find(text) if s.kind.value == "NAME" and (s.start, s.end) not in old
        ]
        flagged += bool(extra)
        new.update(s.value for s in extra)
        where.update({s.value: text[max(0, s.start - 40) : s.end + 40] for s in extra})
    from examples.acme.tasks.families_hr import UNKNOWN_PEOPLE

    asked = [n for n in UNKNOWN_PEOPLE if any(n in text for text in texts)]
    shapes_off = Detector(directory, name_shapes=False)
    for label, detector in (("without given names", before), ("given names only", shapes_off),
                            ("given names, shapes", after)):  # fmt: skip
        hits = [n for n in asked if any(found(detector, t, n) for t in texts if n in t)]
        print(f"catalogue's people in no record {label:<20} {len(hits)}/{len(asked)}: {hits}")
    by_shape = sum(
        {(s.start, s.end) for s in after.find(t)} != {(s.start, s.end) for s in shapes_off.find(t)}
        for t in texts
    )
    print(f"catalogue: {len(texts)} requests ({len(set(texts))} distinct), "
          f"{flagged} with a NAME span the given names and shapes add, "
          f"{by_shape} changed by the shapes alone")  # fmt: skip
    for value, count in new.most_common():
        print(f"  {count:>4}  {value!r}  in: {where[value]!r}")


if __name__ == "__main__":
    main()
