"""One attempt at one delivery: signed as Standard Webhooks says, sent only to addresses the
guard allowed, within a deadline, following at most ``MAX_REDIRECTS`` redirects.

httpx resolves and connects through httpcore's network backend; ours resolves the name
itself, checks every address (``guard.resolve``) and connects to the checked address, so
nothing resolves the name a second time between the check and the connection. TLS still
verifies the certificate for the name. Every redirect is a new connection through the same
backend, so each hop's addresses are checked too.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from ssl import SSLContext
from typing import Any

import httpcore
import httpx
from standardwebhooks import Webhook

from .. import __version__
from .guard import Refused, check_form, next_hop, resolve

MAX_REDIRECTS = 3
EXCERPT_CHARS = 256
"""How much of a receiver's answer is kept (for the deliveries listing); the rest is not
read."""
_READ_BYTES = 4 * EXCERPT_CHARS


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status (with the start of the answer), or an error."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    excerpt: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """Sends deliveries; thread-safe (each attempt has its own connections)."""

    def __init__(self, *, allow_private: bool, connect_timeout: float, timeout: float) -> None:
        self._allow_private = allow_private
        self._connect_timeout = min(connect_timeout, timeout)
        self._timeout = timeout
        self._ssl = httpx.create_ssl_context(trust_env=False)

    def send(self, url: str, delivery_id: str, payload: str, secret: str) -> Outcome:
        """POST ``payload`` to ``url`` with the ``webhook-*`` headers, signed with
        ``secret``; never raises for what the network or the receiver does."""
        started = time.monotonic()
        body = payload.encode()
        now = datetime.now(UTC)
        headers = {
            "webhook-id": delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(delivery_id, now, body),
            "content-type": "application/json",
            "accept-encoding": "identity",  # the excerpt is read raw: no decompression bomb
            "user-agent": f"bgremover-webhooks/{__version__}",
        }
        backend = _GuardedBackend(self._allow_private, started + self._timeout)

        def took() -> float:
            return round((time.monotonic() - started) * 1000, 1)

        try:
            with httpx.Client(
                transport=_GuardedTransport(backend, self._ssl),
                timeout=httpx.Timeout(self._timeout, connect=self._connect_timeout),
                trust_env=False,
                follow_redirects=False,
            ) as client:
                target = check_form(url)
                for _ in range(MAX_REDIRECTS + 1):
                    with client.stream("POST", target, content=body, headers=headers) as answer:
                        location = answer.headers.get("location")
                        if answer.is_redirect and location:
                            target = next_hop(target, location)
                            continue
                        return Outcome(answer.status_code, took(), excerpt=_excerpt(answer))
                raise Refused(f"more than {MAX_REDIRECTS} redirects")
        except Refused as exc:
            return Outcome(None, took(), f"refused: {exc}")
        except httpx.TimeoutException:
            return Outcome(None, took(), f"no answer within {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(None, took(), f"{type(exc).__name__}: {exc}"[:500])


def _excerpt(answer: httpx.Response) -> str | None:
    """The first ``EXCERPT_CHARS`` characters of the answer; the rest is never read."""
    kept = b""
    for chunk in answer.iter_raw():
        kept += chunk
        if len(kept) >= _READ_BYTES:
            break
    text = kept.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return text or None


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend, ssl_context: SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)  # a context given: none loaded
        # httpx takes no network backend, so its pool is replaced by one with ours (and
        # httpx's defaults); tests/test_webhooks.py fails if a loopback target gets through.
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the guard allows, to the address it checked, and makes
    every read and write end by ``deadline`` (monotonic): a receiver that answers a byte at
    a time cannot hold a sender past it."""

    def __init__(self, allow_private: bool, deadline: float) -> None:
        self._allow_private = allow_private
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port, allow_private=self._allow_private)
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_clip(timeout, self._deadline, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clip(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clip(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clipped = _clip(timeout, self._deadline, httpcore.ConnectTimeout)
        secured = self._stream.start_tls(ssl_context, server_hostname, clipped)
        return _DeadlineStream(secured, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _clip(timeout: float | None, deadline: float, error: type[Exception]) -> float:
    """``timeout`` cut to what is left before ``deadline``; ``error`` once nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the attempt's time is up")
    return left if timeout is None else min(timeout, left)
