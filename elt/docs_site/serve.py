"""`elt docs serve`: the site's folder over HTTP, with the standard library's threading server."""

from __future__ import annotations

import contextlib
import errno
import functools
import socket
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from elt.errors import EltError


class _SiteHandler(SimpleHTTPRequestHandler):
    """Files of the site, never cached (a regenerated site shows on reload), no log line per request."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript; charset=utf-8",
                      ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8"}  # fmt: skip

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve_site(
    out_dir: Path, host: str = "127.0.0.1", port: int = 8080, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve `out_dir` at http://host:port/ until interrupted (Ctrl+C returns normally). `ready` is called
    with the URL once the server listens; port 0 picks a free port, which the URL then names."""
    if not (out_dir / "index.html").is_file():
        raise EltError(f"no site in {out_dir}", hint="run `elt docs generate` first")
    handler = functools.partial(_SiteHandler, directory=str(out_dir))
    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_class((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EltError(f"port {port} on {host} is in use", hint="pass another --port") from exc
        raise EltError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    with server:
        bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        if ready is not None:
            ready(f"http://{shown}:{bound_port}/")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
