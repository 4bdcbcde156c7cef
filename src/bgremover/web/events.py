"""/api/events: the live event stream over Server-Sent Events.

A new client first gets a ``snapshot`` (active jobs, batches, sessions); a client resuming
with ``Last-Event-ID`` gets the events it missed instead, or a fresh snapshot when those are
no longer kept. A client too slow to keep up never slows anyone else: its bounded buffer
overflows into a ``resync``, answered with a fresh snapshot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ..jobs.events import Event
from ..jobs.service import JobService
from .deps import Service

router = APIRouter(prefix="/api", tags=["events"])

HEARTBEAT_S = 15
CLIENT_BUFFER = 1000


@router.get("/events", response_class=EventSourceResponse)
async def events(
    request: Request,
    service: Service,
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    after: int | None = Query(default=None, ge=0, description="Resume after this seq"),
) -> EventSourceResponse:
    resume = after if after is not None else _parse_seq(last_event_id)
    return EventSourceResponse(
        _stream(request, service, resume),
        ping=HEARTBEAT_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, service: JobService, resume: int | None
) -> AsyncIterator[ServerSentEvent]:
    subscription = service.bus.subscribe(after=resume, maxsize=CLIENT_BUFFER)
    try:
        floor = 0
        if resume is None:
            snapshot = await run_in_threadpool(service.active_snapshot)
            floor = snapshot["seq"]
            yield _sse("snapshot", snapshot, snapshot["seq"])
        async for event in subscription:
            if await request.is_disconnected():
                break
            if event.type == "resync":
                snapshot = await run_in_threadpool(service.active_snapshot)
                floor = snapshot["seq"]
                yield _sse("snapshot", snapshot, snapshot["seq"])
            elif event.seq > floor:
                yield _event(event)
    finally:
        subscription.close()


def _event(event: Event) -> ServerSentEvent:
    return _sse(event.type, event.data, event.seq)


def _sse(kind: str, data: dict[str, Any], seq: int) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=kind, id=str(seq))


def _parse_seq(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
