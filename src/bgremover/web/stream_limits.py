"""Caps on live event streams, so that streams cannot take every connection.

A stream lasts as long as its client wants (heartbeats keep it alive), and uvicorn answers
503 to everyone once ``BGREMOVER_MAX_CONNECTIONS`` are open. So one client address (an IPv6
client by its /64, as the token throttle counts) may hold
only ``max_event_streams_per_client`` streams (429 beyond), and all clients together
``max_event_streams`` (503 beyond), which is below the connection limit: pages and API
requests always have room. A slot is taken for exactly as long as the stream's request runs.
"""

from __future__ import annotations

from collections import Counter

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body
from .throttle import client_key

RETRY_AFTER_S = 30
"""What a refused client is told to wait; the UI's reconnect backs off further on its own."""


class StreamLimits:
    """Plain ASGI around the app: counts the requests to ``path`` that are running."""

    def __init__(self, app: ASGIApp, *, path: str, total: int, per_client: int) -> None:
        self.app = app
        self._path = path
        self._total = total
        self._per_client = per_client
        self._open: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self._path:
            await self.app(scope, receive, send)
            return
        client = client_key(scope["client"][0] if scope.get("client") else None)
        refusal = self._refusal(client)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        # One event loop runs every request: nothing happens between the check and this.
        self._open[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]

    def _refusal(self, client: str) -> JSONResponse | None:
        if self._open[client] >= self._per_client:
            status = 429
            message = (
                f"this client already has {self._per_client} live event streams open "
                "(BGREMOVER_MAX_EVENT_STREAMS_PER_CLIENT); close other BG Remover tabs or "
                "raise that limit"
            )
        elif self._open.total() >= self._total:
            status = 503
            message = (
                f"the server already serves {self._total} live event streams "
                "(BGREMOVER_MAX_EVENT_STREAMS); try again later, or raise that limit "
                "together with BGREMOVER_MAX_CONNECTIONS"
            )
        else:
            return None
        return JSONResponse(
            error_body("too_many_streams", message),
            status,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
