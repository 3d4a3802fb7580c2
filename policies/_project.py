"""Allow-list projection of tool responses, and the per-tool minimization rules.

Paths name what a model may see of a response:

- ``id`` — a key; ``vendor.name`` — a key of a nested dict;
- ``lines[].amount`` — ``amount`` of every item of the list ``lines``;
- ``*`` — every key at that level (``*`` alone keeps the whole response, ``vendor.*``
  is ``vendor``; ``*.id`` keeps ``id`` of every child);
- a path that names a dict or a list (``vendor``, ``lines``) keeps it whole.

Lists are transparent: a step that meets a list applies to every item of it, so ``[]``
is optional and ``lines.amount`` means ``lines[].amount``. A response that is itself a
list is therefore projected item by item with plain paths: ``id`` and ``[].id`` both keep
the ``id`` of every item. Write the ``[]`` where a list is expected, for the reader.
Paths that the response lacks are fine (nothing to keep). A scalar where the allow-list
expects fields (``vendor.name`` when ``vendor`` is a string) is dropped, deny by default.

Dropped parts are reported as data paths in the same notation, first occurrence first,
each once: ``vendor.iban``, ``lines[].sku``, ``[].email``; ``$`` when the whole
response was dropped. Keys containing ``.``, ``[`` or ``]``, or equal to ``*``, cannot
be named by a path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from policies._access import _match

ROOT = "$"
_WILDCARD = "*"


@lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str, ...]:
    """The key steps of ``path`` (list markers dropped: lists are transparent).

    Raises ``ValueError`` saying what is wrong with a malformed path.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"field path {path!r} is empty: name a key such as 'id' or 'vendor.name'")
    steps: list[str] = []
    for index, segment in enumerate(path.split(".")):
        name = segment
        while name.endswith("[]"):
            name = name[:-2]
        if not name:
            if segment and index == 0:
                continue  # "[]" or "[][]" at the start: the response itself is a list
            raise ValueError(f"field path {path!r} has an empty segment")
        if any(ch in name for ch in "[]") or name != name.strip():
            raise ValueError(
                f"field path {path!r}: segment {segment!r} is not a key, a key followed by '[]', "
                "or '*'"
            )
        if "*" in name and name != _WILDCARD:
            raise ValueError(
                f"field path {path!r}: '*' must stand alone as a segment (no partial globs)"
            )
        steps.append(name)
    # A trailing "*" keeps everything at its level: the same as naming the level itself.
    while steps and steps[-1] == _WILDCARD:
        steps.pop()
    return tuple(steps)


@dataclass
class _Node:
    whole: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


def _trie(paths: Iterable[str]) -> _Node:
    root = _Node()
    for path in paths:
        node = root
        for step in parse_path(path):
            node = node.children.setdefault(step, _Node())
        node.whole = True
    return root


def _merge(a: _Node, b: _Node) -> _Node:
    if a.whole or b.whole:
        return _Node(whole=True)
    children = dict(a.children)
    for key, node in b.children.items():
        children[key] = _merge(children[key], node) if key in children else node
    return _Node(children=children)


def _child(node: _Node, key: str) -> _Node | None:
    named, star = node.children.get(key), node.children.get(_WILDCARD)
    if named is not None and star is not None:
        return _merge(named, star)
    return named if named is not None else star


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_DROP = object()


def _project(
    value: Any, node: _Node, path: str, dropped: dict[str, None], label: Callable[[str], str]
) -> Any:
    if node.whole:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            child = _child(node, str(key))
            if child is None:
                dropped[_key_path(path, label(str(key)))] = None
                continue
            kept = _project(item, child, _key_path(path, label(str(key))), dropped, label)
            if kept is not _DROP:
                out[key] = kept
        return out
    if isinstance(value, list | tuple):
        out_list = []
        for item in value:
            kept = _project(item, node, f"{path}[]", dropped, label)
            if kept is not _DROP:
                out_list.append(kept)
        return out_list
    dropped[path or ROOT] = None
    return _DROP


def project(
    value: Any, fields: Sequence[str], *, key_label: Callable[[str], str] | None = None
) -> tuple[Any, list[str]]:
    """Keep only the ``fields`` paths of ``value``; return the copy and the dropped paths.

    The input is not modified. A whole response that is dropped (a scalar where fields
    were expected) projects to ``None`` with ``["$"]`` dropped. ``key_label`` writes a
    key in the dropped paths (``minimize`` masks keys that are personal data).
    """
    if isinstance(fields, str):
        raise TypeError("fields must be a sequence of paths, not a single string")
    dropped: dict[str, None] = {}
    kept = _project(value, _trie(fields), "", dropped, key_label or str)
    return (None if kept is _DROP else kept), list(dropped)


def path_covers(outer: str, inner: str) -> bool:
    """Whether the allow-list path ``outer`` keeps everything that ``inner`` names."""
    outer_steps, inner_steps = parse_path(outer), parse_path(inner)
    if len(outer_steps) > len(inner_steps):
        return False
    return all(o in (_WILDCARD, i) for o, i in zip(outer_steps, inner_steps, strict=False))


@dataclass(frozen=True)
class MinimizationRule:
    """What a model may see of one tool's responses.

    ``tool`` is a tool name or glob (``get_*``), optionally qualified by connector
    (``erp:get_*``), matched as in access rules. ``fields`` is the allow-list of paths
    (see the module docstring); ``None`` keeps every field. With ``pseudonymize`` personal
    data in the kept values is replaced by stable tokens. ``allow_raw`` names the paths
    whose values the model may see raw although they may hold personal data: an explicit
    exception a policy author writes down (say, a company name that contains a person's
    name the model must match); they must lie inside ``fields``.
    """

    tool: str
    fields: tuple[str, ...] | None = None
    pseudonymize: bool = True
    allow_raw: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.tool:
            raise ValueError("a minimization rule needs a tool name or pattern")
        for name in ("fields", "allow_raw"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(
                    f"rule {self.tool!r}: {name} must be a sequence of paths, "
                    f"not the string {value!r}"
                )
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        for path in (*(self.fields or ()), *self.allow_raw):
            parse_path(path)
        if self.fields is not None:
            for path in self.allow_raw:
                if not any(path_covers(kept, path) for kept in self.fields):
                    raise ValueError(
                        f"rule {self.tool!r}: allow_raw path {path!r} is not among its fields; "
                        "add it to fields or remove it from allow_raw"
                    )

    def matches(self, tool: str, connector: str | None = None) -> bool:
        """Whether this rule applies to ``tool`` of ``connector``."""
        return _match(self.tool, tool, connector)

    def as_dict(self) -> dict[str, object]:
        """The rule as plain data, to store with every decision."""
        data = asdict(self)
        data["fields"] = None if self.fields is None else list(self.fields)
        data["allow_raw"] = list(self.allow_raw)
        return data


#: The rule for a tool no rule names: deny by default, the model sees none of its fields
#: (a policy that means to keep a tool's fields names it, or ends with a ``*`` rule).
DEFAULT_RULE = MinimizationRule(tool="*", fields=())


@dataclass(frozen=True)
class MinimizationPolicy:
    """Minimization rules in order; the first rule that matches a tool applies."""

    rules: tuple[MinimizationRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))

    def rule_for(self, tool: str, connector: str | None = None) -> MinimizationRule:
        """The first matching rule, else ``DEFAULT_RULE`` (no field: deny by default)."""
        return next((rule for rule in self.rules if rule.matches(tool, connector)), DEFAULT_RULE)

    def as_dict(self) -> dict[str, object]:
        """The policy as plain data."""
        return {"rules": [rule.as_dict() for rule in self.rules]}
