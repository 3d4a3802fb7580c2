"""llama.cpp as umiq's CPU inference engine: build it, export GGUF, start ``llama-server``.

llama.cpp lives in one folder, its *home* (``UMIQ_ENGINE_HOME``, default
``<data_dir>/engines/llama.cpp``): ``src/``, ``build/``, ``bin/`` and ``engine.json``.

- :func:`build_engine` (``umiq models build-engine``) downloads the source distribution of
  ``llama-cpp-python`` (MIT; its ``vendor/llama.cpp`` is llama.cpp's source, MIT) from
  PyPI with pip, and builds ``llama-server`` and ``test-gbnf-validator`` with CMake into
  ``<home>/bin``. A home whose ``bin/`` holds both binaries of the version and flags
  ``engine.json`` records is left as it is, so running it again costs nothing. ``make
  test`` runs it (``make engine``, into ``~/.cache/umiq/engines/llama.cpp``) so that the
  engine tests run; the worker needs it only with ``UMIQ_MODEL_BACKEND=openai``.
- :func:`export_gguf` (``umiq models export-gguf``) converts the base checkpoint and each
  role adapter with llama.cpp's own converters (``convert_hf_to_gguf.py``,
  ``convert_lora_to_gguf.py``) and the ``gguf-py`` of the same source tree (pinned with
  it: the ``gguf`` release on PyPI lags the converters) into ``<data_dir>/engines/gguf``.
  ``export.json`` there records what each file was made from; a file whose inputs,
  weight type and llama.cpp version are unchanged is not converted again.
- :func:`serve_command` (``umiq models serve``) is the ``llama-server`` command line: the
  base, a ``--lora`` file per role (each request sets every adapter's scale itself),
  ``--parallel`` slots with continuous batching and the prompt cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker.agent.roles import ALL_ROLES
from worker.errors import ConfigError, ModelError
from worker.models.adapters import file_digest

LLAMA_CPP_PYTHON = "0.3.36"
"""The ``llama-cpp-python`` sdist whose vendored llama.cpp umiq builds and tests."""
BINARIES = ("llama-server", "test-gbnf-validator")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries that can be copied to bin/
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=ON",  # for test-gbnf-validator only (one target is built)
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # it would download the web UI; not needed
    "-DLLAMA_OPENSSL=OFF",
)
Progress = Callable[[str], None]
HASHED_UP_TO = 16 * 2**20
"""A base checkpoint's files up to this size count by content in export.json's digests;
larger ones (the weights) by size and modification time, which costs no read."""


def engines_dir(data_dir: Path) -> Path:
    """Where engines and their GGUF files live: ``<data_dir>/engines``."""
    return Path(data_dir) / "engines"


def default_home() -> Path:
    """llama.cpp's home in this process's settings (``UMIQ_ENGINE_HOME``)."""
    from worker.settings import get_settings

    return get_settings().resolved_engine_home


def find_binary(name: str, home: Path | None = None) -> Path | None:
    """The built llama.cpp binary ``name``, or None.

    ``UMIQ_LLAMA_CPP_BIN`` (a folder) wins over ``<home>/bin`` (default: the settings').
    """
    folders = []
    if os.environ.get("UMIQ_LLAMA_CPP_BIN"):
        folders.append(Path(os.environ["UMIQ_LLAMA_CPP_BIN"]))
    folders.append((home or default_home()) / "bin")
    for folder in folders:
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _run(cmd: Sequence[str], progress: Progress, **kwargs: Any) -> None:
    progress("$ " + " ".join(str(c) for c in cmd))
    try:
        subprocess.run([str(c) for c in cmd], check=True, **kwargs)
    except FileNotFoundError as exc:
        raise ModelError(f"{cmd[0]} is not installed: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise ModelError(
            f"{Path(str(cmd[0])).name} failed with exit status {exc.returncode}"
        ) from exc


def build_engine(
    home: Path,
    *,
    version: str = LLAMA_CPP_PYTHON,
    jobs: int = 1,
    nice: bool = False,
    cmake_flags: Sequence[str] = (),
    force: bool = False,
    progress: Progress = print,
) -> Path:
    """Download llama.cpp's source from PyPI and build its server in ``home``; returns the
    bin folder.

    Does nothing when ``bin/`` already holds both binaries of ``version`` built with these
    flags (``engine.json`` says so), unless ``force``. ``nice`` runs the compiler at the
    lowest priority (a shared machine). Building again reuses the CMake build folder, so
    an interrupted build resumes. ``cmake_flags`` come after :data:`CMAKE_FLAGS` (an image
    built for other hosts: ``-DGGML_NATIVE=OFF``).
    """
    home = Path(home)
    src, build, bin_dir = home / "src", home / "build", home / "bin"
    stamp = home / "engine.json"
    flags = [*CMAKE_FLAGS, *cmake_flags]
    built = _stamp(stamp)
    if not force and _is_built(bin_dir, built, version, flags):
        progress(f"llama.cpp {version} is built and up to date in {bin_dir} (--force rebuilds)")
        return bin_dir
    _check_toolchain()
    prefix = ["nice", "-n", "19"] if nice else []
    if not (src / "CMakeLists.txt").is_file() or built.get("version") != version:
        with tempfile.TemporaryDirectory() as tmp:
            # The source distribution of this package only: pip installs its build
            # dependencies to read its metadata, and `--no-binary :all:` made it build
            # them from source too (12 minutes here, against 8 s from wheels).
            _run(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    "llama-cpp-python",
                    f"llama-cpp-python=={version}",
                    "-d",
                    tmp,
                ],
                progress,
            )
            archive = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            _extract_vendor(archive, src)
    _run(["cmake", "-S", src, "-B", build, *_generator(), *flags], progress)
    _run(
        [*prefix, "cmake", "--build", build, "--target", *BINARIES, "-j", str(jobs)],
        progress,
    )
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        shutil.copy2(build / "bin" / name, bin_dir / name)
    record = {"version": version, "package": "llama-cpp-python", "cmake_flags": flags}
    stamp.write_text(json.dumps(record, indent=2))
    return bin_dir


def _is_built(bin_dir: Path, stamp: dict[str, Any], version: str, flags: list[str]) -> bool:
    """Whether ``bin_dir`` holds the binaries of ``version`` built with ``flags``."""
    if stamp.get("version") != version:
        return False
    # a stamp from before flags were recorded was written with umiq's flags alone
    if stamp.get("cmake_flags", list(CMAKE_FLAGS)) != flags:
        return False
    return all(os.access(bin_dir / name, os.X_OK) for name in BINARIES)


def _check_toolchain() -> None:
    """Refuse, saying what to install, when CMake or a C/C++ compiler is missing."""
    compilers = {
        "a C compiler": (os.environ.get("CC", ""), "cc", "gcc", "clang"),
        "a C++17 compiler": (os.environ.get("CXX", ""), "c++", "g++", "clang++"),
    }
    missing = [] if shutil.which("cmake") else ["CMake"]
    missing += [what for what, names in compilers.items() if not any(map(_on_path, names))]
    if missing:
        raise ConfigError(
            f"building llama.cpp needs {', '.join(missing)}: install them (Debian/Ubuntu: "
            "`apt-get install cmake g++`; Fedora: `dnf install cmake gcc-c++`; macOS: "
            "`xcode-select --install` and `brew install cmake`), or set UMIQ_ENGINE_HOME to "
            "a llama.cpp home where llama-server is built"
        )


def _on_path(command: str) -> bool:
    return bool(command) and shutil.which(command.split()[0]) is not None


def _generator() -> list[str]:
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def _stamp(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _extract_vendor(archive: Path, dest: Path) -> None:
    """Unpack ``<sdist>/vendor/llama.cpp`` of ``archive`` into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/", 1)[0]
        prefix = f"{top}/vendor/llama.cpp/"
        members = []
        for member in tar.getmembers():
            if member.name.startswith(prefix):
                member.name = member.name[len(prefix) :]
                if member.name:
                    members.append(member)
        if not members:
            raise ModelError(f"{archive.name} holds no vendor/llama.cpp")
        tar.extractall(dest, members=members, filter="data")


def gguf_dir(data_dir: Path) -> Path:
    return engines_dir(data_dir) / "gguf"


def gguf_files(data_dir: Path) -> dict[str, Path]:
    """The exported files: ``base`` and each role that has an adapter."""
    folder = gguf_dir(data_dir)
    found = {"base": folder / "base.gguf"} if (folder / "base.gguf").is_file() else {}
    for role in ALL_ROLES:
        if (folder / f"{role}.gguf").is_file():
            found[role] = folder / f"{role}.gguf"
    return found


def export_gguf(
    data_dir: Path,
    base: Path,
    adapters: dict[str, Path],
    *,
    home: Path | None = None,
    outtype: str = "f32",
    nice: bool = False,
    progress: Progress = print,
) -> dict[str, Path]:
    """Convert ``base`` (a Hugging Face checkpoint) and each role's LoRA adapter to GGUF
    with the converters of llama.cpp's ``home`` (default: the settings').

    ``f32`` keeps the weights as the in-process CPU path computes them, so greedy outputs
    can be compared; ``f16``/``bf16``/``q8_0`` trade exactness for memory and speed. A file
    whose inputs did not change since ``export.json`` recorded them is kept ("up to date");
    a role GGUF of an adapter no longer given is removed, so the server does not load it.
    """
    home = Path(home or default_home())
    src = home / "src"
    if not (src / "convert_hf_to_gguf.py").is_file():
        raise ConfigError(
            f"llama.cpp's converters are not at {src}; run `umiq models build-engine` first"
        )
    out = gguf_dir(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The converters import the gguf-py of the same source tree (its own sys.path entry):
    # they use parts of it that the gguf release on PyPI (0.19.0) lacks.
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    prefix = ["nice", "-n", "19"] if nice else []
    record_path = out / "export.json"
    done = _stamp(record_path).get("files") or {}
    common = {"outtype": outtype, "llama_cpp": _stamp(home / "engine.json").get("version")}
    base_digest = input_digest(base, hashed_up_to=HASHED_UP_TO)
    inputs = {"base": {"digest": base_digest, **common}}
    commands: dict[str, list[Any]] = {"base": [src / "convert_hf_to_gguf.py", base]}
    for role, path in adapters.items():
        inputs[role] = {"digest": input_digest(path), "base": base_digest, **common}
        commands[role] = [src / "convert_lora_to_gguf.py", path, "--base", base]
    files = {name: out / f"{name}.gguf" for name in inputs}
    for role in ALL_ROLES:
        if role not in adapters and (out / f"{role}.gguf").exists():
            (out / f"{role}.gguf").unlink()
            progress(f"{role}.gguf: removed (no {role} adapter in this export)")
    done = {name: entry for name, entry in done.items() if name in inputs}
    for name, command in commands.items():
        if done.get(name) == inputs[name] and files[name].is_file():
            progress(f"{name}.gguf: up to date")
            continue
        done.pop(name, None)
        # written beside the file and renamed when complete: an interrupted conversion
        # leaves no half-written file that could pass for up to date
        part = out / f".{name}.gguf.part"
        outfile = ["--outfile", part, "--outtype", outtype]
        try:
            _run([*prefix, sys.executable, *command, *outfile], progress, env=env)
            part.replace(files[name])
        finally:
            part.unlink(missing_ok=True)
        done[name] = inputs[name]
        _write_record(record_path, base, adapters, outtype, done)
    _write_record(record_path, base, adapters, outtype, done)
    return files


def input_digest(folder: Path, *, hashed_up_to: int | None = None) -> str:
    """The sha256 of a folder's files: each one's relative path and content; a file larger
    than ``hashed_up_to`` by its size and modification time instead of its content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        stat = path.stat()
        if hashed_up_to is not None and stat.st_size > hashed_up_to:
            seen = f"size={stat.st_size} mtime_ns={stat.st_mtime_ns}"
        else:
            seen = file_digest([path], length=64)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{seen}\n".encode())
    return digest.hexdigest()


def _write_record(
    path: Path, base: Path, adapters: dict[str, Path], outtype: str, files: dict[str, Any]
) -> None:
    record = {"base": base.name, "adapters": sorted(adapters), "outtype": outtype, "files": files}
    path.write_text(json.dumps(record, indent=2, sort_keys=True))


def serve_command(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    parallel: int = 4,
    threads: int | None = None,
    ctx_per_slot: int = 2048,
    binary: Path | None = None,
    home: Path | None = None,
) -> list[str]:
    """The ``llama-server`` command for the exported base and role adapters (the server of
    ``binary``, else of llama.cpp's ``home``)."""
    server = binary or find_binary("llama-server", home)
    if server is None:
        raise ConfigError("llama-server is not built; run `umiq models build-engine` first")
    files = gguf_files(data_dir)
    if "base" not in files:
        raise ConfigError(
            f"no base GGUF under {gguf_dir(data_dir)}; run `umiq models export-gguf` first"
        )
    if parallel < 1:
        raise ConfigError(f"parallel must be at least 1, got {parallel}")
    cmd = [str(server), "-m", str(files["base"])]
    loras = [str(files[role]) for role in ALL_ROLES if role in files]
    if any("," in path for path in loras):
        raise ConfigError(
            f"llama-server takes its LoRA files as one comma-separated list; move the GGUF "
            f"files to a folder without a comma in its path: {loras}"
        )
    if loras:  # one --lora, files in role order (their ids); a repeated one is deprecated
        cmd += ["--lora", ",".join(loras)]
    cmd += [
        # llama.cpp documents this flag as "load LoRA adapters without applying them":
        # each adapter's *global* scale starts at 0 instead of 1 (POST /lora-adapters
        # changes it), and a request's "lora" field overrides the global scales (an
        # adapter it leaves out gets 0). It only matters for a request with no "lora".
        # The llama.cpp of llama-cpp-python 0.3.36 was seen to report and apply 1.0 for
        # every adapter despite it (docs/operations.md), so the engine backend sends
        # every adapter's scale on every request and does not rely on this flag.
        "--lora-init-without-apply",
        # No host-memory prompt cache: llama-server restores a cached prompt by shared
        # tokens alone, whatever adapter computed it, so a planner request was seen to get
        # 436 tokens of the caller adapter's KV cache and write another plan
        # (docs/serving.md). Each slot's own cache stays on (cache_prompt), and the
        # client keeps each slot to one role (worker.models.slots).
        "--cache-ram",
        "0",
        "--parallel",
        str(parallel),
        "--ctx-size",
        str(ctx_per_slot * parallel),  # shared by the slots
        "--host",
        host,
        "--port",
        str(port),
        "--no-webui",
    ]
    if threads:
        cmd += ["--threads", str(threads), "--threads-batch", str(threads)]
    return cmd


def start_server(
    cmd: Sequence[str],
    url: str,
    *,
    timeout: float = 120.0,
    log: Path | None = None,
    nice: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``llama-server`` (``cmd``) and wait until ``<url>/health`` answers 200.

    Its output goes to ``log`` (else to this process's own output). Raises ModelError,
    with the log's tail, when it exits or is not ready within ``timeout`` seconds.
    """
    import time

    import httpx

    out = open(log, "wb") if log else None  # noqa: SIM115 (the child writes it)
    prefix = ["nice", "-n", "19"] if nice else []
    proc = subprocess.Popen([*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise ModelError(f"llama-server exited with status {proc.returncode}: {tail}")
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=2.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc, timeout=10)
    raise ModelError(f"llama-server was not ready at {url} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """Stop ``llama-server``: SIGTERM, then SIGKILL when it has not exited in ``timeout``
    seconds (a server starved of CPU may still be decoding a request nobody awaits)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


__all__ = [
    "LLAMA_CPP_PYTHON",
    "build_engine",
    "default_home",
    "engines_dir",
    "export_gguf",
    "find_binary",
    "gguf_dir",
    "gguf_files",
    "input_digest",
    "serve_command",
    "start_server",
    "stop_server",
]
