"""/api/events: the live event stream over Server-Sent Events.

A new client first gets a ``snapshot`` (active and recently ended jobs, their batches and
sessions); a client resuming with ``Last-Event-ID`` gets the events it missed instead, or a
fresh snapshot when those are no longer kept. A client too slow to keep up never slows the
workers or other clients: its bounded buffer keeps only the latest progress per job, and when
it is still too far behind it is answered with a fresh snapshot.

Fan-out is cheap per client: each event is encoded once for everyone, everything a client has
waiting goes out in one write, and concurrent snapshot requests share one computation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ..jobs.bus.base import Event, EventBus, Subscription
from ..jobs.contract import JobStore
from .deps import Bus, Service

router = APIRouter(prefix="/api", tags=["events"])

HEARTBEAT_S = 15
CLIENT_BUFFER = 1000
SNAPSHOT_REUSE_S = 0.5
"""Clients asking for a snapshot within this long of another share it (a resync herd)."""


class SnapshotCache:
    """One snapshot computation at a time, reused briefly; the client then replays the
    events after the snapshot's seq from the bus, so a reused snapshot loses nothing."""

    def __init__(self, service: JobStore) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._seq = 0
        self._wire = b""
        self._taken_at: float | None = None

    def get(self, after: int = 0) -> tuple[int, bytes]:
        """The snapshot's seq and its SSE encoding; one taken after the event ``after``
        (a client's last event, or a resync it was told), so a client never gets a state
        older than what it has seen, nor a lower id."""
        with self._lock:
            stale = self._taken_at is None or time.monotonic() - self._taken_at > SNAPSHOT_REUSE_S
            if stale or self._seq < after:
                snapshot = self._service.active_snapshot()
                self._seq = snapshot.seq
                self._wire = _encode("snapshot", snapshot.model_dump(mode="json"), snapshot.seq)
                self._taken_at = time.monotonic()
            return self._seq, self._wire


class StreamCount:
    """Event streams this process serves now (``/metrics``). Changed only on the event loop,
    read from any thread."""

    def __init__(self) -> None:
        self.open = 0


def snapshot_cache(request: Request, service: JobStore) -> SnapshotCache:
    state = request.app.state
    if getattr(state, "snapshots", None) is None:
        state.snapshots = SnapshotCache(service)
    cache: SnapshotCache = state.snapshots
    return cache


@router.get("/events", response_class=EventSourceResponse)
async def events(
    request: Request,
    service: Service,
    bus: Bus,
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    after: int | None = Query(default=None, ge=0, description="Resume after this seq"),
) -> EventSourceResponse:
    resume = after if after is not None else _parse_seq(last_event_id)
    streams: StreamCount = request.app.state.streams
    return EventSourceResponse(
        _stream(bus, snapshot_cache(request, service), resume, streams),
        ping=HEARTBEAT_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    bus: EventBus, snapshots: SnapshotCache, resume: int | None, streams: StreamCount
) -> AsyncIterator[bytes]:
    subscription: Subscription | None = None
    seen = 0  # the newest id this client has (or the resync it must see past)
    if resume is not None:
        subscription = bus.subscribe(after=resume, maxsize=CLIENT_BUFFER)
        seen = resume
    streams.open += 1
    try:
        while True:
            if subscription is None:
                seq, wire = await run_in_threadpool(snapshots.get, seen)
                yield wire
                seen = seq
                subscription = bus.subscribe(after=seq, maxsize=CLIENT_BUFFER)
            batch = await subscription.next_batch()
            if not batch:
                return  # closed
            chunks = []
            for event in batch:
                seen = max(seen, event.seq)
                if event.type == "resync":
                    subscription.close()
                    subscription = None
                    break
                chunks.append(_wire(event))
            if chunks:
                yield b"".join(chunks)
    finally:
        streams.open -= 1
        if subscription is not None:
            subscription.close()


def _wire(event: Event) -> bytes:
    """The event's SSE encoding, made once and shared by every client."""
    encoded = event.wire.get("sse")
    if encoded is None:
        encoded = event.wire["sse"] = _encode(event.type, event.data, event.seq)
    return encoded


def _encode(kind: str, data: dict[str, Any], seq: int) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    return ServerSentEvent(data=payload, event=kind, id=str(seq)).encode()


def _parse_seq(value: str | None) -> int | None:
    """A ``Last-Event-ID``: the seq, as sent (``N``) or as its Redis stream id (``N-0``)."""
    if not value:
        return None
    try:
        return int(value.removesuffix("-0"))
    except ValueError:
        return None
