"""The webhook outbox: the deliveries a change owes, written in the change's own transaction.

A job that ends and the delivery that reports it commit together or not at all, so no
process can lose one between the two (a crash, a database outage replayed whole). Sending is
another process's business (``bgremover.webhooks.dispatcher``); nothing here touches the
network.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import or_, select
from sqlalchemy.orm import Session as Db

from .rows import new_id
from .tables import WebhookDeliveryRow, WebhookEndpointRow

EventType = Literal[
    "job.completed",
    "job.failed",
    "job.cancelled",
    "batch.completed",
    "batch.failed",
    "batch.cancelled",
]
"""A job or batch reached this status. A batch is ``completed`` when it ended with at least
one image done (its counts say how many failed), ``failed`` when none was done and some
failed, ``cancelled`` when all were cancelled."""
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)
JOB_ENDED: dict[str, EventType] = {
    "completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"
}  # fmt: skip
BATCH_ENDED: dict[str, EventType] = {
    "completed": "batch.completed", "failed": "batch.failed", "cancelled": "batch.cancelled"
}  # fmt: skip


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes them: ``whsec_`` and 24 random bytes in
    base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def add_endpoint(
    db: Db,
    *,
    url: str,
    events: Sequence[EventType],
    now: datetime,
    description: str | None = None,
    batch_id: str | None = None,
) -> WebhookEndpointRow:
    """A new endpoint with a new secret (the caller shows it once). ``url`` must have passed
    ``webhooks.guard.check_url``."""
    row = WebhookEndpointRow(
        id=new_id(),
        url=url,
        events=list(dict.fromkeys(events)),
        description=description,
        secret=new_secret(),
        batch_id=batch_id,
        created_at=now,
    )
    db.add(row)
    db.flush()
    return row


def record(
    db: Db,
    event_type: EventType,
    batch_id: str,
    snapshot: Callable[[], dict[str, Any]],
    now: datetime,
) -> int:
    """Queue ``event_type`` for every endpoint that wants it (those of every batch, and the
    batch's own); ``snapshot()`` (the job or batch as the API shows it) is taken only when
    one does. Returns how many deliveries were queued."""
    endpoints = db.execute(
        select(WebhookEndpointRow.id, WebhookEndpointRow.events).where(
            or_(WebhookEndpointRow.batch_id.is_(None), WebhookEndpointRow.batch_id == batch_id)
        )
    ).all()
    wanted = [endpoint_id for endpoint_id, events in endpoints if event_type in events]
    if not wanted:
        return 0
    payload = json.dumps(
        {"type": event_type, "timestamp": now.isoformat(), "data": snapshot()},
        separators=(",", ":"),
    )
    db.add_all(
        WebhookDeliveryRow(
            id=f"msg_{new_id()}",
            endpoint_id=endpoint_id,
            event_type=event_type,
            payload=payload,
            status="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for endpoint_id in wanted
    )
    db.flush()
    return len(wanted)
