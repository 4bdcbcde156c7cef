"""Event streams cannot lock anyone out: one client address may hold only a few
``/api/events`` streams and all clients together fewer than ``BGREMOVER_MAX_CONNECTIONS``, so
pages, the API and other people's streams keep answering. A stream over a cap gets a JSON
429 (that client) or 503 (the server), and its slot comes back when a stream closes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from bgremover.config import Settings, settings_error
from bgremover.web.stream_limits import StreamLimits

from ..serving import served
from ..waiting import until
from .conftest import Server
from .wire import Answer, connect, read_head, request_head

pytestmark = pytest.mark.model

DEFAULT_MAX_CONNECTIONS = 200


def open_stream(url: str, source: str) -> tuple[socket.socket, Answer | None]:
    """A ``GET /api/events`` from ``source``: the open socket and None when the stream
    started, else the closed socket and the refusal."""
    sock = connect(url, source)
    sock.sendall(request_head(url, "GET", "/api/events"))
    status, headers, rest = read_head(sock)
    if status == 200 and headers["content-type"].startswith("text/event-stream"):
        return sock, None
    length = int(headers.get("content-length", "0"))
    while len(rest) < length and (more := sock.recv(65536)):
        rest += more
    sock.close()
    return sock, Answer(status, headers, rest)


@contextlib.contextmanager
def holding() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def ordinary_requests_answer(url: str, source: str) -> None:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=60) as other:
        for path in ("/", "/api/health", "/api/jobs", "/api/config"):
            response = other.get(path, follow_redirects=True)
            assert response.status_code == 200, (path, response.status_code, response.text)


def stream_opens(url: str, source: str) -> bool:
    sock, refused = open_stream(url, source)
    sock.close()
    return refused is None


def test_one_client_holding_streams_locks_no_one_else_out(server: Server) -> None:
    refusals: list[Answer] = []
    with holding() as held:
        for _ in range(DEFAULT_MAX_CONNECTIONS + 20):
            sock, refused = open_stream(server.url, "127.0.0.1")
            if refused is None:
                held.append(sock)
            else:
                refusals.append(refused)
        assert 1 <= len(held) <= 10, f"one client holds {len(held)} streams"
        assert {r.status for r in refusals} == {429}, {r.status for r in refusals}
        error = refusals[0].json()["error"]
        assert error["code"] == "too_many_streams"
        assert "BGREMOVER_MAX_EVENT_STREAMS_PER_CLIENT" in error["message"]
        assert int(refusals[0].headers["retry-after"]) > 0
        # Everyone else is served, their live updates included.
        ordinary_requests_answer(server.url, "127.0.0.2")
        assert stream_opens(server.url, "127.0.0.2")
    # Closed streams give their slots back (the next tests follow events from here too).
    until(lambda: stream_opens(server.url, "127.0.0.1"), what="a stream slot came back")
    server.assert_healthy()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with small stream caps: 3 per client, 8 in all, 24 connections."""
    env = {
        "BGREMOVER_MAX_CONNECTIONS": "24",
        "BGREMOVER_MAX_EVENT_STREAMS": "8",
        "BGREMOVER_MAX_EVENT_STREAMS_PER_CLIENT": "3",
    }
    with served(tmp_path_factory.mktemp("streams"), env=env) as (url, _):
        yield url


def test_many_clients_together_hold_fewer_streams_than_connections(crowded: str) -> None:
    refusals: list[Answer] = []
    with holding() as held:
        for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
            for _ in range(3):
                sock, refused = open_stream(crowded, source)
                if refused is None:
                    held.append(sock)
                else:
                    refusals.append(refused)
        assert len(held) == 8
        assert {r.status for r in refusals} == {503}
        error = refusals[0].json()["error"]
        assert error["code"] == "too_many_streams"
        assert "BGREMOVER_MAX_EVENT_STREAMS" in error["message"]
        assert int(refusals[0].headers["retry-after"]) > 0
        ordinary_requests_answer(crowded, "127.0.0.9")
        # A stream that ends frees its slot for someone else.
        held.pop().close()

        def reopened() -> socket.socket | None:  # the server notices the close on its own clock
            sock, refused = open_stream(crowded, "127.0.0.9")
            if refused is None:
                return sock
            assert refused.status == 503
            sock.close()
            return None

        held.append(until(reopened, what="a closed stream's slot back"))


def test_settings_refuse_stream_caps_that_leave_no_room(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, max_connections=50, max_event_streams=50)
    problem = settings_error(caught.value)
    assert "BGREMOVER_MAX_EVENT_STREAMS=50" in problem and "BGREMOVER_MAX_CONNECTIONS" in problem
    assert Settings(data_dir=tmp_path, max_connections=50).event_stream_limit < 50


def test_one_ipv6_network_counts_as_one_client() -> None:
    """An IPv6 host picks any address of its /64: counted by address, one host could take
    every stream slot. Driven through the middleware itself (these are not loopback
    addresses, so no request is sent anywhere)."""
    limits_seen: list[int] = []

    async def scenario() -> None:
        release = asyncio.Event()

        async def stream(scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await release.wait()

        limits = StreamLimits(stream, path="/api/events", total=100, per_client=2)

        async def open_from(address: str, started: asyncio.Event) -> None:
            async def receive() -> Message:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    limits_seen.append(message["status"])
                    started.set()

            scope = {
                "type": "http", "method": "GET", "path": "/api/events", "headers": [],
                "client": (address, 40000), "query_string": b"",
            }  # fmt: skip
            await limits(scope, receive, send)

        streams = []

        async def held_from(address: str) -> None:
            started = asyncio.Event()
            streams.append(asyncio.create_task(open_from(address, started)))
            await started.wait()

        await held_from("2001:db8::1")
        await held_from("2001:db8::2")
        await held_from("2001:db8::3")  # the same /64: refused
        await held_from("2001:db8:0:1::1")  # another /64 is another client
        release.set()
        await asyncio.gather(*streams)

    asyncio.run(scenario())
    assert limits_seen == [200, 200, 429, 200]
