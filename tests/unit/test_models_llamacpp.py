"""The llama.cpp engine helpers: where binaries and GGUF files are, the server command,
and the build and export that do only what is not done yet."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from worker.errors import ConfigError, ModelError
from worker.models import llamacpp


def _fake_binary(folder: Path, name: str = "llama-server") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def _gguf(data_dir: Path, *names: str) -> None:
    folder = llamacpp.gguf_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.gguf").write_bytes(b"GGUF")


def test_find_binary_prefers_the_env_folder(tmp_path: Path, monkeypatch) -> None:
    """UMIQ_LLAMA_CPP_BIN wins over <home>/bin."""
    monkeypatch.delenv("UMIQ_LLAMA_CPP_BIN", raising=False)
    home = tmp_path / "llama.cpp"
    own = _fake_binary(home / "bin")
    assert llamacpp.find_binary("llama-server", home) == own
    other = _fake_binary(tmp_path / "elsewhere")
    monkeypatch.setenv("UMIQ_LLAMA_CPP_BIN", str(other.parent))
    assert llamacpp.find_binary("llama-server", home) == other
    assert llamacpp.find_binary("no-such-tool", home) is None


def test_engine_home_is_the_setting_else_under_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    """UMIQ_ENGINE_HOME names llama.cpp's home; unset, it is <data_dir>/engines/llama.cpp."""
    from worker.settings import Settings

    monkeypatch.delenv("UMIQ_ENGINE_HOME", raising=False)
    data_dir = tmp_path / "data"
    assert Settings(data_dir=data_dir).resolved_engine_home == data_dir / "engines" / "llama.cpp"
    monkeypatch.setenv("UMIQ_ENGINE_HOME", str(tmp_path / "shared"))
    assert Settings(data_dir=data_dir).resolved_engine_home == tmp_path / "shared"


def test_serve_command_loads_one_lora_per_role_unapplied(tmp_path: Path) -> None:
    """The base, --lora for each exported role in role order; requests set every scale."""
    server = _fake_binary(tmp_path / "bin")
    _gguf(tmp_path, "base", "summarizer", "planner", "caller")
    cmd = llamacpp.serve_command(
        tmp_path, binary=server, parallel=4, ctx_per_slot=1024, port=8111, threads=2
    )
    gguf = llamacpp.gguf_dir(tmp_path)
    assert cmd[:3] == [str(server), "-m", str(gguf / "base.gguf")]
    (loras,) = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--lora"]
    assert loras.split(",") == [
        str(gguf / f"{r}.gguf") for r in ("planner", "caller", "summarizer")
    ]
    assert "--lora-init-without-apply" in cmd
    # the host-memory prompt cache ignores adapters: off (each slot's own cache stays on)
    assert cmd[cmd.index("--cache-ram") + 1] == "0"
    assert cmd[cmd.index("--parallel") + 1] == "4"
    assert cmd[cmd.index("--ctx-size") + 1] == "4096"
    assert cmd[cmd.index("--port") + 1] == "8111"
    assert cmd[cmd.index("--threads") + 1] == "2"


def test_serve_command_needs_the_exported_base(tmp_path: Path) -> None:
    """Without base.gguf the command refuses and names export-gguf."""
    server = _fake_binary(tmp_path / "bin")
    with pytest.raises(ConfigError, match="export-gguf"):
        llamacpp.serve_command(tmp_path, binary=server)


def test_serve_command_needs_the_built_server(tmp_path: Path, monkeypatch) -> None:
    """Without llama-server the command refuses and names build-engine."""
    monkeypatch.delenv("UMIQ_LLAMA_CPP_BIN", raising=False)
    _gguf(tmp_path, "base")
    with pytest.raises(ConfigError, match="build-engine"):
        llamacpp.serve_command(tmp_path, home=tmp_path / "llama.cpp")


def test_vendor_tree_is_extracted_without_the_wrapper(tmp_path: Path) -> None:
    """Only <sdist>/vendor/llama.cpp is unpacked, at the top of the destination."""
    archive = tmp_path / "llama_cpp_python-0.0.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in (
            "llama_cpp_python-0.0.1/llama_cpp/__init__.py",
            "llama_cpp_python-0.0.1/vendor/llama.cpp/CMakeLists.txt",
            "llama_cpp_python-0.0.1/vendor/llama.cpp/tools/server/server.cpp",
        ):
            data = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "src"
    llamacpp._extract_vendor(archive, dest)
    found = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert found == ["CMakeLists.txt", "tools/server/server.cpp"]


def test_export_without_the_converters_says_to_build(tmp_path: Path) -> None:
    """export_gguf before build-engine refuses, naming the command that fetches the source."""
    with pytest.raises(ConfigError, match="build-engine"):
        llamacpp.export_gguf(tmp_path, tmp_path / "base", {}, home=tmp_path / "llama.cpp")


def test_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    """start_server raises ModelError with the server's own last words when it dies."""
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho 'error: unable to load model'\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(ModelError, match="unable to load model"):
        llamacpp.start_server(
            [str(script)], "http://127.0.0.1:9", timeout=20, log=tmp_path / "s.log"
        )


def test_server_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    """stop_server sends SIGKILL when the server has not exited within the timeout."""
    import subprocess

    script = tmp_path / "stubborn.sh"
    script.write_text("#!/bin/sh\ntrap '' TERM\necho ready\nwhile :; do sleep 1; done\n")
    script.chmod(0o755)
    proc = subprocess.Popen([str(script)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    llamacpp.stop_server(proc, timeout=1)
    assert proc.returncode == -9
    proc.stdout.close()


# -- build_engine: a home that is built costs nothing -------------------------------------


def _built_home(tmp_path: Path, stamp: dict[str, Any]) -> Path:
    home = tmp_path / "llama.cpp"
    for name in llamacpp.BINARIES:
        _fake_binary(home / "bin", name)
    (home / "src").mkdir()
    (home / "src" / "CMakeLists.txt").write_text("")
    (home / "engine.json").write_text(json.dumps(stamp))
    return home


def _recording_run(monkeypatch) -> list[list[str]]:
    ran: list[list[str]] = []
    monkeypatch.setattr(llamacpp, "_run", lambda cmd, progress, **_: ran.append(list(cmd)))
    monkeypatch.setattr(llamacpp.shutil, "copy2", lambda *_: None)
    return ran


def test_build_of_a_built_home_runs_nothing(tmp_path: Path, monkeypatch) -> None:
    """Both binaries of the stamped version and flags in bin/: no download, CMake or copy."""
    home = _built_home(tmp_path, {"version": llamacpp.LLAMA_CPP_PYTHON})  # no flags: umiq's
    ran = _recording_run(monkeypatch)
    said: list[str] = []
    assert llamacpp.build_engine(home, progress=said.append) == home / "bin"
    assert ran == []
    assert "up to date" in said[0]


def test_build_runs_again_when_forced_or_for_other_flags(tmp_path: Path, monkeypatch) -> None:
    """--force, or CMake flags other than the stamped ones, configure and build again."""
    flags = [*llamacpp.CMAKE_FLAGS, "-DGGML_NATIVE=OFF"]
    home = _built_home(tmp_path, {"version": llamacpp.LLAMA_CPP_PYTHON, "cmake_flags": flags})
    ran = _recording_run(monkeypatch)
    llamacpp.build_engine(home, cmake_flags=["-DGGML_NATIVE=OFF"], progress=lambda _: None)
    assert ran == []
    llamacpp.build_engine(home, progress=lambda _: None)
    llamacpp.build_engine(
        home, cmake_flags=["-DGGML_NATIVE=OFF"], force=True, progress=lambda _: None
    )
    assert [c[:2] for c in ran if c[0] == "cmake"] == [["cmake", "-S"], ["cmake", "--build"]] * 2
    assert json.loads((home / "engine.json").read_text())["cmake_flags"] == flags


def test_build_without_cmake_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    """A build that needs CMake where there is none refuses, naming the packages."""
    real_which = llamacpp.shutil.which
    monkeypatch.setattr(llamacpp.shutil, "which", lambda c: None if c == "cmake" else real_which(c))
    ran = _recording_run(monkeypatch)
    with pytest.raises(ConfigError, match=r"needs CMake.*apt-get install cmake g\+\+"):
        llamacpp.build_engine(tmp_path / "llama.cpp", progress=lambda _: None)
    assert ran == []


# -- export_gguf: only what changed is converted again -------------------------------------

ROLES = ("planner", "caller", "summarizer")


class Converter:
    """The converters' stand-in: writes the --outfile and records which file it made."""

    def __init__(self, fail: str | None = None) -> None:
        self.made: list[str] = []
        self.fail = fail

    def __call__(self, cmd: list[Any], progress: Any, **_: Any) -> None:
        out = Path(cmd[cmd.index("--outfile") + 1])
        name = out.name.removeprefix(".").removesuffix(".gguf.part")
        out.write_bytes(b"GGUF half")
        if name == self.fail:
            raise ModelError("convert_lora_to_gguf.py failed with exit status 1")
        out.write_bytes(b"GGUF " + name.encode())
        self.made.append(name)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    """llama.cpp's home with the converters, a base checkpoint and three role adapters."""
    home = tmp_path / "llama.cpp"
    (home / "src").mkdir(parents=True)
    for script in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py"):
        (home / "src" / script).write_text("")
    (home / "engine.json").write_text(json.dumps({"version": "0.3.36"}))
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "llama"}')
    (base / "model.safetensors").write_bytes(b"w" * 64)
    adapters = {}
    for role in ROLES:
        adapters[role] = tmp_path / "adapters" / role
        adapters[role].mkdir(parents=True)
        (adapters[role] / "adapter_config.json").write_text('{"r": 8}')
        (adapters[role] / "adapter_model.safetensors").write_bytes(role.encode())
    return home, base, adapters


def _export(tmp_path: Path, inputs, monkeypatch, converter=None, **kwargs) -> list[str]:
    home, base, adapters = inputs
    converter = converter or Converter()
    monkeypatch.setattr(llamacpp, "_run", converter)
    kwargs.setdefault("adapters", adapters)
    llamacpp.export_gguf(tmp_path / "data", base, home=home, progress=lambda _: None, **kwargs)
    return converter.made


def test_export_converts_once_then_says_up_to_date(tmp_path: Path, inputs, monkeypatch) -> None:
    """A second export with the same inputs converts nothing and says each file is up to date."""
    home, base, adapters = inputs
    assert _export(tmp_path, inputs, monkeypatch) == ["base", *ROLES]
    said: list[str] = []
    monkeypatch.setattr(llamacpp, "_run", Converter())
    files = llamacpp.export_gguf(tmp_path / "data", base, adapters, home=home, progress=said.append)
    assert said == [f"{name}.gguf: up to date" for name in ("base", *ROLES)]
    assert {name: path.read_bytes() for name, path in files.items()} == {
        name: b"GGUF " + name.encode() for name in ("base", *ROLES)
    }
    record = json.loads((llamacpp.gguf_dir(tmp_path / "data") / "export.json").read_text())
    assert record["files"]["caller"]["llama_cpp"] == "0.3.36"
    assert record["files"]["caller"]["base"] == record["files"]["base"]["digest"]


def test_export_converts_again_only_the_adapter_that_changed(
    tmp_path: Path, inputs, monkeypatch
) -> None:
    """New weights in one role's adapter convert that adapter and nothing else."""
    _export(tmp_path, inputs, monkeypatch)
    (inputs[2]["caller"] / "adapter_model.safetensors").write_bytes(b"retrained")
    assert _export(tmp_path, inputs, monkeypatch) == ["caller"]


@pytest.mark.parametrize("change", ["outtype", "llama.cpp"])
def test_export_converts_everything_for_another_outtype_or_llama_cpp(
    tmp_path: Path, inputs, monkeypatch, change: str
) -> None:
    """Another weight type, or another llama.cpp version, converts every file again."""
    _export(tmp_path, inputs, monkeypatch)
    kwargs = {"outtype": "f16"} if change == "outtype" else {}
    if change == "llama.cpp":
        (inputs[0] / "engine.json").write_text(json.dumps({"version": "0.3.99"}))
    assert _export(tmp_path, inputs, monkeypatch, **kwargs) == ["base", *ROLES]


def test_large_base_files_count_by_size_and_mtime(tmp_path: Path, inputs, monkeypatch) -> None:
    """The base's weights are not read: a new mtime converts the base and the adapters
    (converted against it) again, the same mtime nothing."""
    monkeypatch.setattr(llamacpp, "HASHED_UP_TO", 32)
    _export(tmp_path, inputs, monkeypatch)
    weights = inputs[1] / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"v" * 64)  # same size, other bytes, old mtime: not seen
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _export(tmp_path, inputs, monkeypatch) == []
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _export(tmp_path, inputs, monkeypatch) == ["base", *ROLES]


def test_missing_file_is_converted_again(tmp_path: Path, inputs, monkeypatch) -> None:
    """A deleted GGUF is converted again though its inputs did not change."""
    _export(tmp_path, inputs, monkeypatch)
    (llamacpp.gguf_dir(tmp_path / "data") / "planner.gguf").unlink()
    assert _export(tmp_path, inputs, monkeypatch) == ["planner"]


def test_failed_conversion_is_not_taken_for_up_to_date(tmp_path: Path, inputs, monkeypatch) -> None:
    """A conversion that fails leaves no half-written file, and the next export redoes it."""
    _export(tmp_path, inputs, monkeypatch)
    (inputs[2]["caller"] / "adapter_model.safetensors").write_bytes(b"retrained")
    with pytest.raises(ModelError):
        _export(tmp_path, inputs, monkeypatch, converter=Converter(fail="caller"))
    folder = llamacpp.gguf_dir(tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert _export(tmp_path, inputs, monkeypatch) == ["caller"]


def test_role_without_an_adapter_loses_its_gguf(tmp_path: Path, inputs, monkeypatch) -> None:
    """Exporting without a role's adapter removes that role's GGUF, so no server loads it."""
    _export(tmp_path, inputs, monkeypatch)
    fewer = {r: p for r, p in inputs[2].items() if r != "summarizer"}
    assert _export(tmp_path, inputs, monkeypatch, adapters=fewer) == []
    assert sorted(llamacpp.gguf_files(tmp_path / "data")) == ["base", "caller", "planner"]


@pytest.mark.parametrize(
    ("args", "slots"),
    [([], "12"), (["--episodes", "16"], "48"), (["--episodes", "16", "--parallel", "5"], "5")],
)
def test_serve_gives_three_slots_per_episode_unless_told_the_slots(
    tmp_path: Path, monkeypatch, args: list[str], slots: str
) -> None:
    """`umiq models serve --episodes N` starts N x 3 slots (one per role); --parallel wins."""
    import typer
    from typer.testing import CliRunner

    from worker.models.cli import register
    from worker.settings import get_settings

    server = _fake_binary(tmp_path / "bin")
    _gguf(tmp_path, "base", "planner", "caller", "summarizer")
    monkeypatch.setenv("UMIQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UMIQ_LLAMA_CPP_BIN", str(server.parent))
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    try:
        result = CliRunner().invoke(app, ["serve", "--print", *args])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    words = result.output.split()
    assert words[words.index("--parallel") + 1] == slots
    assert words[words.index("--ctx-size") + 1] == str(int(slots) * 2048)
