"""A real HTTP server on 127.0.0.1 serving collection pages, with scripted failures."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse


@contextmanager
def serve_pages(pages: list[Any], *, failures: list[tuple[int, dict[str, str]]] = (), token: str | None = None,
                requests: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """Serve `pages` in order by cursor ("1", "2", ...); answer the first requests with `failures`.

    Each page is sent as given (a dict is JSON-encoded, a str sent raw). Every request's
    path, query and headers are appended to `requests`.
    """
    queue = list(failures)
    seen = requests if requests is not None else []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            query = parse_qs(urlparse(self.path).query)
            seen.append({"query": query, "headers": dict(self.headers)})
            if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
                return self._send(401, {"error": "unauthorized"})
            if queue:
                status, headers = queue.pop(0)
                return self._send(status, {"error": "try later"}, headers)
            index = int(query.get("cursor", ["0"])[0])
            self._send(200, pages[index])

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/documents"
    finally:
        server.shutdown()
        server.server_close()
