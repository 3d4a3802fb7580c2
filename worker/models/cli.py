"""``umiq models build-engine | export-gguf | serve``: llama.cpp as the role-model engine.

See docs/serving.md. Importing this module loads neither torch nor httpx.
"""

from __future__ import annotations

import typer

from worker.models.slots import SLOTS_PER_EPISODE


def build_engine(
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel compile jobs."),
    nice: bool = typer.Option(False, "--nice", help="Compile at the lowest CPU priority."),
    cmake_flag: list[str] = typer.Option(
        [],
        "--cmake-flag",
        help="An extra CMake flag, repeatable (e.g. -DGGML_NATIVE=OFF for an image).",
    ),
    force: bool = typer.Option(
        False, "--force", help="Build again even when the binaries are up to date."
    ),
) -> None:
    """Build llama.cpp's llama-server from the llama-cpp-python sdist on PyPI (CMake, C++)
    into UMIQ_ENGINE_HOME (default <data_dir>/engines/llama.cpp); a no-op when built."""
    from worker.errors import UmiqError
    from worker.models.llamacpp import LLAMA_CPP_PYTHON, build_engine
    from worker.settings import get_settings

    settings = get_settings()
    typer.echo(
        f"llama.cpp from llama-cpp-python {LLAMA_CPP_PYTHON} in {settings.resolved_engine_home}"
    )
    try:
        bin_dir = build_engine(
            settings.resolved_engine_home,
            jobs=jobs,
            nice=nice,
            cmake_flags=cmake_flag,
            force=force,
            progress=typer.echo,
        )
    except UmiqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"built: {bin_dir / 'llama-server'}")


def export_gguf(
    outtype: str = typer.Option(
        "f32", help="Weight type: f32 (as the CPU path computes), f16, bf16 or q8_0."
    ),
    nice: bool = typer.Option(False, "--nice", help="Convert at the lowest CPU priority."),
) -> None:
    """Convert the base checkpoint and each role adapter to GGUF (llama.cpp's converters);
    files whose inputs did not change are kept. Fetches the base when it is missing."""
    from worker.errors import UmiqError
    from worker.models import resolve_base
    from worker.models.adapters import find_adapters
    from worker.models.llamacpp import export_gguf
    from worker.settings import get_settings

    settings = get_settings()
    try:
        base = resolve_base(settings, progress=typer.echo)
        adapters = find_adapters(settings.resolved_adapters_dir, agent=settings.agent)
        files = export_gguf(
            settings.data_dir,
            base,
            adapters,
            home=settings.resolved_engine_home,
            outtype=outtype,
            nice=nice,
            progress=typer.echo,
        )
    except UmiqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for name, path in files.items():
        typer.echo(f"{name:<11} {path}")


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    episodes: int = typer.Option(
        4,
        help="Concurrent episodes to serve: three slots each, one per role, so each role "
        "keeps its prompt cache (docs/performance.md).",
    ),
    parallel: int | None = typer.Option(
        None,
        help="Slots (requests decoded together; continuous batching). "
        f"Default: {SLOTS_PER_EPISODE} x --episodes.",
    ),
    threads: int = typer.Option(0, help="CPU threads (0: llama.cpp's default)."),
    ctx_per_slot: int = typer.Option(2048, help="Context tokens per slot."),
    print_only: bool = typer.Option(False, "--print", help="Print the command, do not start it."),
) -> None:
    """Start llama-server with the base and the role adapters; print its URL."""
    import shlex

    from worker.errors import UmiqError
    from worker.models.llamacpp import serve_command, start_server, stop_server
    from worker.settings import get_settings

    settings = get_settings()
    try:
        cmd = serve_command(
            settings.data_dir,
            host=host,
            port=port,
            parallel=parallel if parallel is not None else SLOTS_PER_EPISODE * episodes,
            threads=threads or None,
            ctx_per_slot=ctx_per_slot,
            home=settings.resolved_engine_home,
        )
    except UmiqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(shlex.join(cmd))
    if print_only:
        return
    url = f"http://{host}:{port}"
    try:
        proc = start_server(cmd, url)
    except UmiqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"llama-server ready at {url}")
    typer.echo(f"workers: UMIQ_MODEL_BACKEND=openai UMIQ_ENGINE_URL={url}")
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop_server(proc)


def register(models_app: typer.Typer) -> None:
    """Add the engine commands to the ``umiq models`` group."""
    models_app.command("build-engine")(build_engine)
    models_app.command("export-gguf")(export_gguf)
    models_app.command("serve")(serve)
