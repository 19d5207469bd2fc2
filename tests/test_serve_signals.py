"""`judge serve` stops on SIGTERM (and Ctrl-C): exit status 0, the port free, even with a request in flight.

The embedded llama.cpp server installs SIGINT/SIGTERM handlers of its own when it starts, and its native
threads cannot be interrupted while they generate. A stand-in server does both (it ignores the signals once
started, and its stop blocks while a client's request is in flight), so no model is loaded here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SERVE = r'''
import signal, socket, sys, threading, time
from pathlib import Path

import judge.backends.local_model as local_model
import judge.backends.local_server as local_server

port_file = Path(sys.argv[1])


class StandIn:
    """Binds 127.0.0.1, answers nothing; like llama.cpp, takes over SIGINT/SIGTERM when it starts."""

    def __init__(self, path, **_kw):
        self.model_name, self.api_key, self.busy = "stand-in", "sk-local-test", threading.Event()

    def start(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self._serve, daemon=True).start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        port_file.write_text(str(self.port))
        return self

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            conn.recv(1024)
            self.busy.set()  # generating: a native thread that cannot be interrupted

    def stop(self):
        if self.busy.is_set():
            time.sleep(3600)  # joining the generating thread
        self.sock.close()


local_server.LocalServer = StandIn
local_model.verify_gguf = lambda path, sha=None: path
from judge.cli.main import main

sys.argv = ["judge", "serve", "--model", "stand-in.gguf", "--port", "0"]
main()
'''


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(("signum", "busy"), [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                              (signal.SIGINT, True)])
def test_serve_stops_on_a_signal_with_status_0_and_frees_the_port(signum: int, busy: bool,
                                                                   tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JUDGE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port_file)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client: socket.socket | None = None
    try:
        deadline = time.monotonic() + 300
        while not port_file.exists() or not port_file.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1] if proc.poll() else ""
            time.sleep(0.2)
        port = int(port_file.read_text())
        time.sleep(1.0)  # the command installs its handlers right after the server started
        client = socket.create_connection(("127.0.0.1", port)) if busy else None
        if client is not None:
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if client is not None:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out, (out, err)
    assert took < 30, took  # the grace for a request in flight is 5 s; the rest is a loaded machine's slack
    assert not _port_open(port)
    if busy:
        assert "did not finish" in err
