"""Serving the app with uvicorn, with limits for slow or greedy clients and an access log that
never shows a token.

uvicorn bounds idle keep-alive connections and concurrent connections, but not how long a
client may take to send its headers or its body: a client that opens connections and then
trickles (or stops) can hold them for ever. ``GuardedH11Protocol`` drops a connection whose
request line and headers are not complete within ``header_timeout`` of its first byte, or
whose body stops arriving for ``body_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Settings

_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"]*", re.IGNORECASE)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header deadline and a body idle timeout."""

    header_timeout = 10.0
    body_timeout = 30.0
    _guard: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm(self.body_timeout)  # idle timeout: restarted by every chunk
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            if self._guard is None:  # a deadline for the whole head, from its first byte
                self._arm(self.header_timeout)
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()
        super().on_response_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._expired, seconds)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expired(self, seconds: float) -> None:
        self._guard = None
        if self.flow.read_paused:  # we stopped reading (the app is busy), not the client
            self._arm(seconds)
            return
        if not self.transport.is_closing():
            self.logger.info("dropped a connection that sent nothing for %.0f s", seconds)
            self.transport.close()


class RedactToken(logging.Filter):
    """Replaces the value of ``token=`` in access log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def run(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` until Ctrl-C with this server's connection limits."""
    protocol: type[GuardedH11Protocol] = type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": settings.header_timeout.total_seconds(),
            "body_timeout": settings.body_timeout.total_seconds(),
        },
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "log_config": None,  # its loggers reach the handler ``logs.configure`` set up
        "http": protocol,
        "timeout_keep_alive": max(1, round(settings.keep_alive_timeout.total_seconds())),
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": 5,
    }
    config = uvicorn.Config(app, **options)
    logging.getLogger("uvicorn.access").addFilter(RedactToken())
    # uvicorn re-raises the Ctrl-C it handled once it has shut down gracefully.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
