"""Raw HTTP/1.1 over a socket, for attacks an HTTP client library would not send: a body
declared but never sent, a chunked body without its end, a connection from another loopback
address, and streams held open by the hundred."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 60.0
"""Far beyond any limit of the server: only a hang would reach it."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    """A connection to the server at ``url`` from the loopback address ``source``."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), TIMEOUT_S, source_address=(source, 0))
    return sock


def request_head(url: str, method: str, path: str, **headers: str | int) -> bytes:
    host = url.removeprefix("http://")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "X-BGRemover-Request: 1"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, the headers and what of the body came with them; (0, {}, b"") when the
    server closed the connection without answering."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, b""
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, rest


def read_answer(sock: socket.socket) -> Answer:
    """The whole answer (a Content-Length body); status 0 when the server answered nothing."""
    status, headers, body = read_head(sock)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(status, headers, body)


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
