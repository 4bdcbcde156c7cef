"""Slow clients cannot hold the server: a request whose headers or body stop arriving is
dropped after the configured timeout (2 s in these tests), and the server stays healthy."""

from __future__ import annotations

import select
import socket
import time

import pytest

from bgremover.config import Settings

from .conftest import BODY_TIMEOUT_S, Server

pytestmark = pytest.mark.model

DEFAULT_BODY_TIMEOUT_S = Settings.model_fields["body_timeout"].default.total_seconds()
TRICKLE_S = BODY_TIMEOUT_S / 4
"""Between two pieces of a trickled body: well inside the limit, even on a loaded machine."""
PIECES = 6
"""A trickled body's pieces: together they take longer than the limit."""


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(60)  # far beyond the server's limit: only a hang would reach it
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_headers_that_never_end_are_dropped(server: Server) -> None:
    slow = [connect(server) for _ in range(8)]
    for sock in slow:
        sock.sendall(b"GET /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    for sock in slow:
        assert read_until_closed(sock) == b"", "the server answered a request it never got"
        sock.close()
    server.assert_healthy()


def post_head(server: Server, length: int) -> socket.socket:
    """A connection that has sent a JSON POST's line and headers, announcing ``length``
    body bytes, and none of the body yet."""
    port = server.url.rsplit(":", 1)[1]
    sock = connect(server)
    sock.sendall(
        b"POST /api/batches/manual HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode()
        + b"\r\nX-BGRemover-Request: 1\r\nContent-Type: application/json\r\n"
        + b"Connection: close\r\nContent-Length: " + str(length).encode() + b"\r\n\r\n"
    )  # fmt: skip
    return sock


def trickle(sock: socket.socket, data: bytes) -> float:
    """Send ``data`` in pieces, each well inside the limit after the last, for longer than
    the limit in all (a slow client: the limit is on silence, not on the whole body); the
    time the last piece went."""
    started = time.monotonic()
    size = -(-len(data) // PIECES)
    for start in range(0, len(data), size):
        sock.sendall(data[start : start + size])
        sent = time.monotonic()
        # The client's pause, which ends early if the server answers or hangs up meanwhile:
        # the pieces stop, and the caller's read sees what the server did.
        readable, _, _ = select.select([sock], [], [], TRICKLE_S)
        if readable:
            return sent
    assert time.monotonic() - started > BODY_TIMEOUT_S
    return sent


def test_a_body_that_stalls_longer_than_the_limit_is_cut_off(server: Server) -> None:
    """Kept alive while bytes trickle in; cut off once none came for the configured 2 s: no
    sooner (the timer cannot fire early) and well before the 30 s default (so the setting,
    not the default, acts)."""
    body = b'{"name": "stalled"}'
    sock = post_head(server, len(body) + 1000)
    last_byte = trickle(sock, body)
    assert read_until_closed(sock) == b"", "the server answered a body it never got"
    stalled = time.monotonic() - last_byte
    sock.close()
    assert BODY_TIMEOUT_S - TRICKLE_S <= stalled < DEFAULT_BODY_TIMEOUT_S / 2, stalled
    server.assert_healthy()


def test_a_body_trickling_faster_than_the_limit_is_served(server: Server) -> None:
    body = b'{"name": "trickled"}'
    sock = post_head(server, len(body))
    trickle(sock, body)
    assert read_until_closed(sock).startswith(b"HTTP/1.1 201")
    sock.close()


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    sock = connect(server)
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
    sock.close()
