"""worker.world: a back office is loaded by name from settings and gives the defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.errors import ConfigError
from worker.settings import Settings
from worker.world import WORLDS, load_world, world_settings

ROOT = Path(__file__).parents[2]


class TinyWorld:
    """The least a world is: every member of the protocol, doing almost nothing."""

    name = "tiny"
    expert_error = RuntimeError
    demo: Any = None

    def settings(self) -> dict[str, Any]:
        return {
            "departments": {"ops": {"mode": "review", "tools": ["ops:*"]}},
            "minimization": {"*": None},
            "scope": {"restart": ["restart"]},
        }

    def register_cli(self, app: Any) -> None: ...
    def start(self, data_dir: Path, **kwargs: Any) -> Any: ...
    def families(self, systems: Any = None) -> list[str]:
        return []

    def family(self, family: str) -> dict[str, Any]:
        return {}

    def department_for(self, family: str) -> str:
        return "ops"

    def draw(self, systems: Any, **kwargs: Any) -> dict[str, list[Any]]:
        return {}

    def combination(self, instance: Any) -> str:
        return ""

    def solve(self, systems: Any, instance: Any, **kwargs: Any) -> Any: ...
    def check(self, instance: Any, systems: Any, answer: str, *args: Any, **kwargs: Any) -> Any: ...


tiny = TinyWorld()
not_a_world = object()


def test_the_default_world_is_acme_by_its_alias() -> None:
    """``acme`` resolves through WORLDS to the Acme world."""
    assert WORLDS["acme"] == "examples.acme.world:world"
    assert load_world("acme").name == "acme"


def test_a_dotted_path_names_a_world() -> None:
    """``package.module:attribute`` loads the object there."""
    assert load_world("tests.unit.test_world:tiny") is tiny


def test_a_factory_is_called() -> None:
    """A class (or other factory) named by the path is called for the world."""
    assert isinstance(load_world("tests.unit.test_world:TinyWorld"), TinyWorld)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "no world is configured"),
        ("nowhere", "neither one of acme nor"),
        ("no.such.module:world", "cannot import 'no.such.module'"),
        ("tests.unit.test_world:missing", "has no 'missing'"),
        ("tests.unit.test_world:not_a_world", "it lacks name, expert_error"),
    ],
)
def test_a_bad_world_is_refused_with_a_reason(name: str, says: str) -> None:
    """Each way a world name can be wrong raises ConfigError saying which."""
    with pytest.raises(ConfigError, match=says):
        load_world(name)


def test_settings_take_the_worlds_defaults() -> None:
    """Departments, minimization and scope default to the configured world's."""
    settings = Settings(world="tests.unit.test_world:tiny")
    assert list(settings.departments) == ["ops"]
    assert settings.departments["ops"].mode == "review"
    assert settings.minimization == {"*": None}
    assert settings.scope == {"restart": ["restart"]}


def test_acme_defaults_are_finance_and_hr() -> None:
    """With the default world the departments are Acme's, as before the world protocol."""
    settings = Settings()
    assert settings.world == "acme"
    assert sorted(settings.departments) == ["finance", "hr"]
    assert settings.departments["finance"].tools == ["erp:*", "mail:*"]
    assert settings.minimization == world_settings("acme")["minimization"]


def test_explicit_settings_win_over_the_world() -> None:
    """A department set in the environment replaces the world's default ones."""
    settings = Settings(departments={"legal": {"tools": ["dms:*"]}})
    assert list(settings.departments) == ["legal"]


def test_no_world_means_no_defaults() -> None:
    """An empty world name leaves no departments and minimizes every response fully."""
    settings = Settings(world="")
    assert settings.departments == {} and settings.minimization == {} and settings.scope == {}


def test_the_world_adds_its_cli_group() -> None:
    """``umiq acme`` exists with the Acme world and not without a world."""
    cmd = [sys.executable, "-m", "worker.cli", "acme", "--help"]
    with_acme = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    assert with_acme.returncode == 0 and "serve" in with_acme.stdout
    env = {**_env(), "UMIQ_WORLD": ""}
    without = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert without.returncode != 0 and "No such command 'acme'" in without.stderr


def test_loading_the_settings_loads_no_services() -> None:
    """Reading Acme's defaults imports neither its services nor its task families."""
    code = (
        "import sys; from worker.settings import Settings; Settings()\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('examples.acme.serve',"
        " 'examples.acme.tasks', 'uvicorn', 'fastapi')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
