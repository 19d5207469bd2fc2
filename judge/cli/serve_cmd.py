"""`judge serve`: the embedded judge model as an OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from judge.cli.common import console, err_console, state

#: Seconds a request in flight may take to finish after SIGTERM / Ctrl-C before the process exits anyway.
STOP_GRACE_S = 5.0


def serve(
    ctx: typer.Context,
    model: Path | None = typer.Option(None, "--model", help="A GGUF file (default: the embedded judge model)."),
    port: int = typer.Option(8080, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="JUDGE_SERVE_API_KEY",
                                       help="Key clients must send (default: a fresh random key, printed)."),
    n_ctx: int = typer.Option(8192, "--n-ctx", help="Context size in tokens."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    sha256: str | None = typer.Option(None, "--sha256", help="With --model: the file's expected sha256 "
                                                             "(checked before serving)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines: one when ready (with the URL), one "
                                                       "when stopped."),
) -> None:
    """Serve the embedded model over the OpenAI protocol until interrupted (binds 127.0.0.1 only).

    Ctrl-C or SIGTERM stops it: a request in flight gets a few seconds to finish, then the process exits
    (status 0) and the port is free; a second signal exits at once.
    """
    from judge.backends.local_model import ensure_default_model, verify_gguf
    from judge.backends.local_server import LocalServer

    if sha256 is not None and model is None:
        raise typer.BadParameter("--sha256 checks the file given with --model (the embedded model is always "
                                 "checked against its pinned sha256)", param_hint="--sha256")
    path = verify_gguf(model, sha256) if model is not None else ensure_default_model(state(ctx).settings.data_dir)
    server = LocalServer(path, n_ctx=n_ctx, threads=threads, port=port or None, api_key=api_key)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # asked twice: stop now, whatever is in flight
            os._exit(0)
        stop.set()

    server.start()
    try:
        # Installed after the start: llama.cpp sets SIGINT/SIGTERM handlers of its own when it starts, and
        # with those the process ignored both signals.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        if as_json:
            _json_line({"event": "ready", "url": server.base_url, "model": server.model_name,
                        "api_key": server.api_key})
        else:
            console.print(f"serving {server.model_name} at {server.base_url}", highlight=False, markup=False)
            console.print(f"api key: {server.api_key}", highlight=False, markup=False)
            console.print("Ctrl-C or SIGTERM to stop", highlight=False)
        while not stop.wait(0.5):
            pass
    finally:
        _stop_within(server, STOP_GRACE_S, as_json=as_json)
    _stopped(as_json)


def _json_line(data: dict[str, Any]) -> None:
    """One JSON document on one line of stdout, flushed (a script reads it as soon as it is written)."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def _stopped(as_json: bool) -> None:
    if as_json:
        _json_line({"event": "stopped"})
    else:
        console.print("stopped", highlight=False)


def _stop_within(server: Any, seconds: float, *, as_json: bool = False) -> None:
    """Stop the server, letting a request in flight finish for up to ``seconds``, then exit regardless.

    The server's threads are native: one generating a long reply cannot be interrupted, and stopping waits
    for it. The process exits instead (the port is freed with it); a client sees its connection closed.
    Nothing is written by the server, so nothing is left half-written.
    """
    stopper = threading.Thread(target=server.stop, name="judge-serve-stop", daemon=True)
    stopper.start()
    stopper.join(seconds)
    if stopper.is_alive():
        err_console.print(f"the request in flight did not finish within {seconds:.0f} s; stopping without it",
                          highlight=False, markup=False)
        _stopped(as_json)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
