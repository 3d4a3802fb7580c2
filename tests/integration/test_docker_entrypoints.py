"""The image's commands, run outside Docker (no engine here) as docker/compose.yaml runs
them: the migration job, the image's health check, a department's worker on its own queue,
the review page and its health check, against the real RabbitMQ and Postgres.

The compose environment is kept; only what differs on this machine is replaced: the
service URLs (loopback, the test database), the key ring path, the model store (the
image bakes it at /opt/models), and names made unique so that tests never share a queue.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import ALLOW_PRIVILEGED_LOGIN, umiq
from tests.support.required import require_engine
from worker.celery_app import TASK_NAME, create_app
from worker.process import WorkerProcess
from worker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = [{"tool": "get_invoice", "arguments": {"invoice_id": "INV-1001"}}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's runtime stage."""
    runtime = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8").split("AS runtime")[1]
    block = re.search(r"^ENV (.+?)(?=^\S)", runtime, flags=re.M | re.S)
    assert block is not None
    pairs = re.findall(r"(\w+)=(\S+)", block.group(1).replace("\\\n", " "))
    return {k: v for k, v in pairs if k != "PATH"}


def entrypoint() -> list[str]:
    text = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"^ENTRYPOINT (\[.*\])", text, flags=re.M)
    assert found is not None
    return json.loads(found.group(1))


def healthcheck_cmd() -> list[str]:
    text = (REPO / "docker" / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])", text, flags=re.M)
    assert found is not None
    return json.loads(found.group(1))


def argv(command: list[str]) -> list[str]:
    """``umiq ARGS`` as this interpreter runs it (the console script is ``worker.cli``)."""
    assert command[0] == "umiq", command
    return [sys.executable, "-m", "worker.cli", *command[1:]]


@pytest.fixture
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def deployment(
    tmp_path: Path,
    amqp_url: str,
    postgres_url: str,
    queue_names: tuple[str, str],
    model_dir: Path,
    erp: Any,
) -> dict[str, str]:
    """What replaces the compose file's values on this machine."""
    queue, dead = queue_names
    keyring = tmp_path / "secrets" / "keyring"
    keyring.parent.mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    done = umiq({**base, "UMIQ_KEYRING_FILE": str(keyring)}, "keys", "init")
    assert done.returncode == 0, done.stderr
    return {
        "UMIQ_DATA_DIR": str(tmp_path / "data"),
        "UMIQ_MODEL_DIR": str(model_dir),
        "UMIQ_BROKER_URL": amqp_url,
        "UMIQ_DATABASE_URL": postgres_url,
        "UMIQ_KEYRING_FILE": str(keyring),
        "UMIQ_DEAD_LETTER_QUEUE": dead,
        "UMIQ_METRICS_ADDR": "127.0.0.1",
        "UMIQ_METRICS_PORT": str(free_port()),
        "UMIQ_CONNECTORS": json.dumps({"erp": {"kind": "http", "base_url": erp.url}}),
        "UMIQ_ROLE_MODEL": "tests.support.scripted:factory",
        "TEST_QUEUE_PREFIX": queue,
    }


#: The variables an operator exports before `docker compose up` (see the file's header).
OPERATOR = {
    "POSTGRES_PASSWORD": "not-used-trust-auth",
    "UMIQ_WORKER_DB_PASSWORD": "not-used-trust-auth",
    "FLOWER_BASIC_AUTH": "admin:admin",
    "UMIQ_REVIEW_SECRET": "x" * 40,
    "UMIQ_REVIEW_USERS": json.dumps({"officer": "a long trial password"}),
}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        if variables.get(name):
            return variables[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def service_env(compose: dict[str, Any], name: str, here: dict[str, str]) -> dict[str, str]:
    """The process environment of service ``name``: the image's, the service's, then ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    env.update(image_env())
    service = {
        str(k): interpolate(str(v), OPERATOR)
        for k, v in compose["services"][name]["environment"].items()
    }
    env.update(service)
    for key, value in here.items():
        if key.startswith("UMIQ_") and (key in service or key in image_env() or key in (
            "UMIQ_CONNECTORS", "UMIQ_ROLE_MODEL", "UMIQ_DEAD_LETTER_QUEUE"
        )):  # fmt: skip
            env[key] = value
    if "UMIQ_QUEUE" in service:  # a queue of this test's own, named after the service's
        env["UMIQ_QUEUE"] = f"{here['TEST_QUEUE_PREFIX']}.{service['UMIQ_QUEUE']}"
    return env


def node_args(command: list[str], tag: str) -> list[str]:
    """The service's command with its node name made unique to this test."""
    out = list(command)
    if "--hostname" in out:
        at = out.index("--hostname") + 1
        out[at] = out[at].replace("@", f"-{tag}@", 1)
    return out


def test_the_image_commands_run_a_deployment(
    compose: dict[str, Any], deployment: dict[str, str], tmp_path: Path
) -> None:
    services = compose["services"]
    assert entrypoint() == ["umiq"]

    # the migration job
    migrate = service_env(compose, "migrate", deployment)
    done = subprocess.run(
        argv(["umiq", *services["migrate"]["command"]]), env=migrate, cwd=REPO,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    # the image's health check, with a department worker's environment
    finance = service_env(compose, "worker-finance", deployment)
    health = subprocess.run(
        argv(healthcheck_cmd()), env=finance, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    # Every check passes but `login`: compose's workers log in as their own role
    # (`worker-login` job), this test's database login is the local superuser, which the
    # login check rightly fails (docs/security.md, control 16).
    failing = [line for line in health.stdout.splitlines() if line.startswith("fail")]
    assert [line.split()[1] for line in failing] == ["login"], health.stdout + health.stderr
    assert "superuser" in failing[0]

    # the finance worker, as compose starts it, serves a task sent to its queue; as the
    # local superuser only with the override the login gate asks for (compose's own
    # workers need none: they log in as their own role)
    finance.update(ALLOW_PRIVILEGED_LOGIN)
    command = node_args(services["worker-finance"]["command"], deployment["TEST_QUEUE_PREFIX"][-8:])
    assert command[0] == "worker"
    client = create_app(Settings(
        data_dir=tmp_path / "client", broker_url=deployment["UMIQ_BROKER_URL"],
        database_url=deployment["UMIQ_DATABASE_URL"], queue=finance["UMIQ_QUEUE"],
        dead_letter_queue=deployment["UMIQ_DEAD_LETTER_QUEUE"],
    ))  # fmt: skip
    try:
        with WorkerProcess(finance, tmp_path / "finance.log", command[1:], cwd=REPO) as worker:
            envelope = {
                "task_id": f"compose-{deployment['TEST_QUEUE_PREFIX'][-8:]}",
                "department": "finance",
                "query": "What is the status of invoice INV-1001?",
                "requested_by": "compose-test",
                "context": {"script": SCRIPT},
            }
            result = client.send_task(TASK_NAME, args=[envelope]).get(timeout=120)
            port = finance["UMIQ_METRICS_PORT"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
                metrics = page.read().decode()
            log_text = worker.log_text()
    finally:
        client.close()
    assert result["outcome"] == "answered", (result, log_text[-3000:])
    assert 'umiq_tasks_total{department="finance",mode="auto",outcome="answered"} 1.0' in metrics
    assert "finance-" in log_text  # the node name compose gives it

    # the review page, as compose starts it, answers its own health check
    review = service_env(compose, "review", deployment)
    review_port = free_port()
    command = services["review"]["command"]
    command = [
        *command[: command.index("--host")],
        "--host",
        "127.0.0.1",
        "--port",
        str(review_port),
    ]
    review_log = (tmp_path / "review.log").open("wb")
    process = subprocess.Popen(
        argv(["umiq", *command]), env=review, cwd=REPO, stdout=review_log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        snippet = services["review"]["healthcheck"]["test"][3].replace("8700", str(review_port))
        deadline = time.monotonic() + 60
        while True:
            check = subprocess.run([sys.executable, "-c", snippet], capture_output=True, timeout=30)
            if check.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert check.returncode == 0, (tmp_path / "review.log").read_text()[-3000:]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{review_port}/", timeout=10)
        assert refused.value.code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)
        review_log.close()


def _engine_command(binary: Path, gguf: Path, port: int) -> list[str]:
    """The engine image's ENTRYPOINT + CMD with this machine's binary, files and port."""
    text = (REPO / "docker" / "engine.Dockerfile").read_text(encoding="utf-8")
    words = []
    for instruction in ("ENTRYPOINT", "CMD"):
        found = re.search(rf"^{instruction} (\[.*\])$", text, flags=re.M)
        assert found is not None, instruction
        words += json.loads(found.group(1))
    assert words[0] == "/opt/llama.cpp/bin/llama-server"
    out = [str(binary), *(w.replace("/models/", f"{gguf}/") for w in words[1:])]
    out[out.index("--port") + 1] = str(port)
    out[out.index("--host") + 1] = "127.0.0.1"
    return [*out, "--threads", "1", "--threads-batch", "1"]  # a shared machine


def test_the_engine_image_command_serves_the_role_adapters(tmp_path: Path) -> None:
    """The engine image's command, run outside Docker with the built llama-server and the
    exported GGUF files, passes the image's health check and serves one adapter per role."""
    from worker.models.llamacpp import find_binary, gguf_dir

    settings = Settings()
    data_dir, home = settings.data_dir, settings.resolved_engine_home
    require_engine(data_dir, home)  # the engine image builds its own; this runs it outside
    binary = find_binary("llama-server", home)
    assert binary is not None
    port = free_port()
    log_path = tmp_path / "engine.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["nice", "-n", "19", *_engine_command(binary, gguf_dir(data_dir), port)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        text = (REPO / "docker" / "engine.Dockerfile").read_text(encoding="utf-8")
        found = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])", text, flags=re.M)
        assert found is not None
        check = [w.replace("8080", str(port)) for w in json.loads(found.group(1))]
        assert check[0] == "python"
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            done = subprocess.run([sys.executable, *check[1:]], capture_output=True, timeout=30)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, log_path.read_text(errors="replace")[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lora-adapters", timeout=10) as page:
            adapters = json.loads(page.read())
        names = sorted(Path(a["path"]).name for a in adapters)
        assert names == ["caller.gguf", "planner.gguf", "summarizer.gguf"]
        # (no check of "scale": this llama.cpp reports, and applies, 1.0 for every adapter
        # despite --lora-init-without-apply; umiq's backend sets each scale per request)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_vllm_models_job_copies_the_base_and_one_adapter_per_role(
    compose: dict[str, Any], model_dir: Path, tmp_path: Path
) -> None:
    """The `vllm-models` job, run outside Docker with the image's environment, leaves the
    base checkpoint and each role's adapter where the vllm service's command reads them."""
    service = compose["services"]["vllm-models"]
    assert service["entrypoint"] == ["python", "-c"]
    export = tmp_path / "export"
    [script] = service["command"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UMIQ_")}
    env.update(image_env())
    env.update({"UMIQ_DATA_DIR": str(tmp_path / "data"), "UMIQ_MODEL_DIR": str(model_dir)})
    done = subprocess.run(
        [sys.executable, "-c", script.replace("/export", str(export))], env=env, cwd=REPO,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (export / "base" / "config.json").is_file()
    assert (export / "base" / "tokenizer.json").is_file()
    vllm = compose["services"]["vllm"]["command"]
    assert vllm[0] == "/models/base"
    for module in [w for w in vllm if "=/models/adapters/" in w]:
        role, path = module.split("=", 1)
        copied = export / path.removeprefix("/models/")
        shipped = Settings().resolved_adapters_dir / role
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert (copied / name).read_bytes() == (shipped / name).read_bytes(), (role, name)
