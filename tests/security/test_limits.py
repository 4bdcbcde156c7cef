"""Slow clients cannot hold the server: a request whose headers or body stop arriving is
dropped after the configured timeout (2 s in these tests), and the server stays healthy."""

from __future__ import annotations

import socket

import pytest

from .conftest import Server

pytestmark = pytest.mark.model


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


def test_a_body_shorter_than_its_content_length_is_dropped(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    sock = connect(server)
    sock.sendall(
        b"POST /api/batches/manual HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode()
        + b"\r\nX-BGRemover-Request: 1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{\"name\": "
    )  # fmt: skip
    read_until_closed(sock)
    sock.close()
    server.assert_healthy()


def test_an_idle_keep_alive_connection_is_closed(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    sock = connect(server)
    sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 200")
    sock.close()
