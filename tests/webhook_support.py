"""A real webhook receiver on a loopback port: it keeps every request and answers as the
test scripts it (a status, a redirect, or a dropped connection)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .cluster_support import WAIT_S
from .waiting import Watched, until

DROP = "drop"
"""An answer that closes the connection without a response."""


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float
    """``time.time()`` when it arrived."""

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


Answer = int | str | tuple[int, dict[str, str]]
"""A status, ``DROP``, or a status with headers (a redirect's Location)."""
Script = Callable[[Received, int], Answer]
"""The answer to a request, given it and how many requests with its webhook-id came before."""


class Receiver:
    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda request, seen: 200)
        self.received: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = Received(
                    {k.lower(): v for k, v in self.headers.items()}, body, self.path, time.time()
                )
                with receiver._changed:
                    seen = sum(r.id == request.headers.get("webhook-id") for r in receiver.received)
                    receiver.received.append(request)
                    receiver._changed.notify_all()
                answer = receiver.script(request, seen)
                if answer == DROP:
                    self.close_connection = True
                    return
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                self.send_response(int(status))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, what: str, found: Callable[[list[Received]], bool]) -> list[Received]:
        """Every request so far, once ``found`` holds for them."""
        return until(Watched(self._changed, lambda: list(self.received)), found, WAIT_S, what)

    def ids(self) -> set[str]:
        with self._changed:
            return {r.id for r in self.received}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiving(script: Script | None = None) -> Iterator[Receiver]:
    receiver = Receiver(script)
    try:
        yield receiver
    finally:
        receiver.close()
