"""The role-model plug-in: ``settings.role_model`` names a ``module:factory``, loaded lazily."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from worker.agent.roles import Generation, GenerationRequest, RoleModel
from worker.errors import ConfigError
from worker.models import load_role_model
from worker.settings import Settings

HERE = "tests.unit.test_models_plugin"


class EchoModel:
    """A minimal RoleModel that remembers the settings it was built with."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [Generation(r.prompt, model="echo") for r in requests]

    def describe(self) -> dict[str, Any]:
        return {"base": "echo"}


def make_echo(settings: Any) -> EchoModel:
    return EchoModel(settings)


class Builders:
    @staticmethod
    def build(settings: Any) -> EchoModel:
        return EchoModel(settings)


def make_half(settings: Any) -> object:
    class Half:
        def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
            return []

    return Half()


def make_nothing(settings: Any) -> object:
    return object()


NOT_CALLABLE = 42


def settings(role_model: str | None, tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path, role_model=role_model)


def test_plugin_factory_builds_the_model_from_the_settings(tmp_path: Any) -> None:
    """With role_model set, load_role_model returns what the factory makes of the settings."""
    config = settings(f"{HERE}:make_echo", tmp_path)
    model = load_role_model(config)
    assert isinstance(model, EchoModel)
    assert model.settings is config
    assert isinstance(model, RoleModel)
    assert model.generate([GenerationRequest("planner", "hi")])[0].text == "hi"


def test_plugin_factory_may_be_a_dotted_attribute(tmp_path: Any) -> None:
    """The factory may be an attribute path inside the module, such as Class.method."""
    assert isinstance(load_role_model(settings(f"{HERE}:Builders.build", tmp_path)), EchoModel)


def test_plugin_wins_over_the_backend_argument(tmp_path: Any) -> None:
    """A plug-in in the settings is used whatever backend name the caller passes."""
    model = load_role_model(settings(f"{HERE}:make_echo", tmp_path), backend="no-such-backend")
    assert isinstance(model, EchoModel)


def test_plugin_is_read_from_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UMIQ_ROLE_MODEL sets role_model."""
    monkeypatch.setenv("UMIQ_ROLE_MODEL", f"{HERE}:make_echo")
    assert Settings(data_dir=tmp_path).role_model == f"{HERE}:make_echo"


def test_plugin_is_not_imported_until_the_model_is_loaded(tmp_path: Any) -> None:
    """Settings naming a module that does not exist are valid until the model is loaded."""
    config = settings("no_such_package.backend:factory", tmp_path)
    assert config.role_model == "no_such_package.backend:factory"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon_here", "is not 'package.module:factory'"),
        (":factory", "is not 'package.module:factory'"),
        ("tests.unit.test_models_plugin:", "is not 'package.module:factory'"),
        ("no_such_package.backend:factory", "cannot import 'no_such_package.backend'"),
        (f"{HERE}:missing", "has no attribute 'missing'"),
        (f"{HERE}:NOT_CALLABLE", "is a int, not a callable"),
        (f"{HERE}:make_half", "without describe()"),
        (f"{HERE}:NOT_CALLABLE.real", "not a callable"),
    ],
    ids=["no-colon", "no-module", "no-factory", "no-module-found", "no-attribute",
         "not-callable", "no-describe", "attribute-of-int"],
)  # fmt: skip
def test_bad_plugin_raises_a_config_error_saying_what_is_wrong(
    target: str, message: str, tmp_path: Any
) -> None:
    """A plug-in that cannot be imported or does not make a RoleModel is a ConfigError."""
    with pytest.raises(ConfigError, match="role_model") as caught:
        load_role_model(settings(target, tmp_path))
    assert message in str(caught.value)


def test_factory_without_a_role_model_says_what_is_missing(tmp_path: Any) -> None:
    """A factory returning an object with neither method names both."""
    config = settings(f"{HERE}:make_nothing", tmp_path)
    with pytest.raises(ConfigError, match=r"without generate\(\) and describe\(\)"):
        load_role_model(config)


def test_scripted_plugin_loads_without_ml_libraries(tmp_path: Any) -> None:
    """The test suite's scripted plug-in loads through load_role_model without torch."""
    code = (
        "import sys\n"
        "from worker.settings import Settings\n"
        "from worker.models import load_role_model\n"
        f"m = load_role_model(Settings(data_dir={str(tmp_path)!r}, "
        "role_model='tests.support.scripted:factory'))\n"
        "print(type(m).__name__, [x for x in ('torch', 'transformers', 'peft') "
        "if x in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "ScriptedRoleModel []"
