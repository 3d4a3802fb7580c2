"""Department rollout settings as a versioned file (TOML), validated with errors that
name the bad key.

    version = 1                  # the file format's version

    [global]
    kill_switch = false          # on: no department writes

    [departments.finance]
    mode = "shadow"              # off | shadow | review | auto
    percent = 100                # auto only: the share of tasks in auto, the rest review
    tools = ["erp:*", "mail:*"]
    may_write = true

The file is what a team reviews and commits; ``umiq rollout apply FILE`` makes it the live
copy in the database, one audited change per department that differs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.errors import RolloutFileError
from worker.settings import DepartmentSettings

FILE_VERSION = 1
GLOBAL = "*"
"""The department name under which the global settings live."""
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class StrictDepartment(DepartmentSettings):
    """A department's settings as the file gives them: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class GlobalSettings(BaseModel):
    """Settings over every department."""

    model_config = ConfigDict(extra="forbid")

    kill_switch: bool = False
    """On: no department writes (checked before every write)."""


class RolloutFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: Literal[1]
    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    departments: dict[str, StrictDepartment] = Field(default_factory=dict)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _explain(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if p != "global_") or ("global",)
        if error["loc"] and error["loc"][0] == "global_":
            loc = ("global", *loc)
        key = _where((*((prefix,) if prefix else ()), *loc))
        got = error.get("input")
        shown = "" if error["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{key}: {message}{shown}")
    return "; ".join(lines)


def check_name(department: str) -> str:
    """``department`` if it is a valid department name (used in queue names), else raise."""
    if department == GLOBAL or _NAME.match(department):
        return department
    raise RolloutFileError(
        f"{department!r} is not a department name: lower-case letters, digits, '-' and '_', "
        "starting with a letter (or '*' for the global settings)"
    )


def parse(data: Mapping[str, Any], source: str = "rollout settings") -> RolloutFile:
    """Validate a parsed file; RolloutFileError names every bad key."""
    if "version" in data and data["version"] != FILE_VERSION:
        raise RolloutFileError(
            f"{source}: version: this umiq reads format version {FILE_VERSION} "
            f"(got {data['version']!r})"
        )
    try:
        parsed = RolloutFile.model_validate(dict(data))
    except ValidationError as exc:
        raise RolloutFileError(f"{source}: {_explain(exc)}") from None
    for name in parsed.departments:
        try:
            check_name(name)
        except RolloutFileError as exc:
            raise RolloutFileError(f"{source}: departments.{name}: {exc}") from None
    return parsed


def load_file(path: str | Path) -> RolloutFile:
    """Read and validate a rollout settings file (TOML)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RolloutFileError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RolloutFileError(f"{path}: not valid TOML: {exc}") from exc
    return parse(data, str(path))


def validate_department(department: str, data: Mapping[str, Any]) -> DepartmentSettings:
    """One department's settings, strictly validated (errors name ``department.key``)."""
    check_name(department)
    if department == GLOBAL:
        try:
            GlobalSettings.model_validate(dict(data))
        except ValidationError as exc:
            raise RolloutFileError(_explain(exc, "global")) from None
        return DepartmentSettings(kill_switch=bool(data.get("kill_switch", False)))
    try:
        strict = StrictDepartment.model_validate(dict(data))
    except ValidationError as exc:
        raise RolloutFileError(_explain(exc, f"departments.{department}")) from None
    return DepartmentSettings.model_validate(strict.model_dump())


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value read as TOML (``30``, ``true``,
    ``["erp:*"]``), else as the text itself (``mode=shadow``)."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise RolloutFileError(f"{text!r}: expected key=value (e.g. mode=shadow, percent=30)")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def as_data(settings: DepartmentSettings | None, department: str) -> dict[str, Any]:
    """The stored form of a department's settings (the global ones: the kill switch only)."""
    if settings is None:
        return {}
    if department == GLOBAL:
        return {"kill_switch": settings.kill_switch}
    return settings.model_dump(mode="json")


def dump(departments: Mapping[str, Mapping[str, Any]]) -> str:
    """The live settings as a rollout file (``umiq rollout export``)."""
    doc = tomlkit.document()
    doc.add("version", FILE_VERSION)
    glob = tomlkit.table()
    glob.add("kill_switch", bool(departments.get(GLOBAL, {}).get("kill_switch", False)))
    doc.add("global", glob)
    table = tomlkit.table(is_super_table=True)
    for name, data in sorted(departments.items()):
        if name == GLOBAL:
            continue
        table.add(name, {k: v for k, v in data.items() if v is not None})
    doc.add("departments", table)
    return tomlkit.dumps(doc)
