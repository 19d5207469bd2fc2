"""Serve one rendered page on the local machine (stdlib `http.server`), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

__all__ = ["PageServer", "serve_page"]

log = logging.getLogger(__name__)


class PageServer(ThreadingHTTPServer):
    """An HTTP server that answers ``GET /`` (and ``/index.html``, and ``HEAD`` of them) with one page, any other
    path with 404 and any other method with 405."""

    daemon_threads = True

    def __init__(self, page: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.page = page.encode("utf-8")
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The page's address (with the port actually bound, when 0 asked for any free one)."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            self.send_error(404)
            return
        page = self.server.page
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(page)

    def _not_allowed(self) -> None:
        """A read-only page: any method but GET and HEAD is 405 with the methods it allows."""
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s - %s", self.address_string(), format % args)


class _Stop(BaseException):
    """Raised in the serving thread by the SIGTERM handler.

    A `BaseException`, as KeyboardInterrupt is: the server reports and swallows any `Exception` raised while it
    dispatches a request, so a SIGTERM arriving at that moment would otherwise be lost and the server go on.
    """


def serve_page(page: str, *, host: str = "127.0.0.1", port: int = 0,
               on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``page`` until Ctrl-C (KeyboardInterrupt) or SIGTERM, then close the socket and return.

    Args:
        page: The HTML document to serve.
        host: The address to bind (the local machine by default).
        port: The port (0: any free port; ``on_ready`` receives the address).
        on_ready: Called with the page's URL once the socket listens.

    Raises:
        OSError: The address cannot be bound (e.g. the port is in use).
    """
    server = PageServer(page, host, port)
    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        def _on_term(signum: int, frame: FrameType | None) -> None:
            raise _Stop

        previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        if on_ready is not None:
            on_ready(server.url)
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        log.info("stopped serving %s", server.url)
    finally:
        server.server_close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
