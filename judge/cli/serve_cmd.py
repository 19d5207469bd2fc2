"""`judge serve`: the embedded judge model as an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

from judge.cli.common import console, state


def serve(
    ctx: typer.Context,
    model: Path | None = typer.Option(None, "--model", help="A GGUF file (default: the embedded judge model)."),
    port: int = typer.Option(8080, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="JUDGE_SERVE_API_KEY",
                                       help="Key clients must send (default: a fresh random key, printed)."),
    n_ctx: int = typer.Option(8192, "--n-ctx", help="Context size in tokens."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
) -> None:
    """Serve the embedded model over the OpenAI protocol until interrupted (binds 127.0.0.1 only)."""
    from judge.backends.local_model import ensure_default_model, verify_gguf
    from judge.backends.local_server import LocalServer

    path = verify_gguf(model) if model is not None else ensure_default_model(state(ctx).settings.data_dir)
    server = LocalServer(path, n_ctx=n_ctx, threads=threads, port=port or None, api_key=api_key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        console.print(f"serving {server.model_name} at {server.base_url}", highlight=False)
        console.print(f"api key: {server.api_key}", highlight=False)
        console.print("Ctrl-C to stop", highlight=False)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    console.print("stopped", highlight=False)
