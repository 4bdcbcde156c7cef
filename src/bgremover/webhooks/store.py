"""Webhook endpoints and what was sent to them, as the API shows them; delivery counts for
metrics. Every web process reads the same rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..jobs.outbox import EventType, add_endpoint
from ..jobs.states import NotFound
from ..jobs.tables import WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow
from .guard import MAX_URL_LENGTH

DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookIn(BaseModel):
    """A new endpoint: where to send, which events, and a note for people."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(max_length=MAX_URL_LENGTH, examples=["https://example.com/hooks/bg"])]
    events: Annotated[list[EventType], Field(min_length=1)]
    description: Annotated[str | None, Field(max_length=500)] = None


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    batch_id: str | None
    """Set for an upload's ``callback_url``: only that batch's events."""
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str
    """Signs every delivery (Standard Webhooks); shown only in this answer."""


class Attempt(BaseModel):
    """One try at sending one delivery, newest first."""

    delivery_id: str
    """The ``webhook-id`` header: the same on every attempt of a delivery."""
    event_type: str
    delivery_status: DeliveryStatus
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None


class WebhookStore:
    def __init__(self, transactions: sessionmaker[Db]) -> None:
        self._transactions = transactions

    def create(self, new: WebhookIn, url: str) -> WebhookCreated:
        """An endpoint for ``url`` (``new.url`` as the guard checked it), with a new secret."""
        with self._transactions.begin() as db:
            row = add_endpoint(
                db, url=url, events=new.events, description=new.description,
                now=datetime.now(UTC),
            )  # fmt: skip
            return WebhookCreated(**_shown(row).model_dump(), secret=row.secret)

    def endpoints(self) -> list[Webhook]:
        with self._transactions() as db:
            rows = db.scalars(
                select(WebhookEndpointRow).order_by(WebhookEndpointRow.created_at)
            ).all()
            return [_shown(row) for row in rows]

    def delete(self, webhook_id: str) -> None:
        """Remove the endpoint and every delivery still owed to it."""
        with self._transactions.begin() as db:
            gone = db.execute(
                delete(WebhookEndpointRow).where(WebhookEndpointRow.id == webhook_id),
                execution_options={"synchronize_session": False},
            ).rowcount  # type: ignore[attr-defined]
        if gone != 1:
            raise NotFound("webhook", webhook_id)

    def attempts(self, webhook_id: str, limit: int) -> list[Attempt]:
        """The endpoint's last ``limit`` attempts, newest first."""
        A, D = WebhookAttemptRow, WebhookDeliveryRow
        with self._transactions() as db:
            if db.get(WebhookEndpointRow, webhook_id) is None:
                raise NotFound("webhook", webhook_id)
            rows = db.execute(
                select(
                    A.delivery_id, D.event_type, D.status, A.attempted_at, A.status_code,
                    A.latency_ms, A.error, A.response_excerpt,
                )
                .join(D, D.id == A.delivery_id)
                .where(A.endpoint_id == webhook_id)
                .order_by(A.id.desc())
                .limit(limit)
            ).all()  # fmt: skip
        fields = list(Attempt.model_fields)
        return [Attempt.model_validate(dict(zip(fields, row, strict=True))) for row in rows]

    def delivery_counts(self) -> dict[DeliveryStatus, int]:
        """Deliveries by outcome, from the database (the same in every process): pending
        (to send or retry), delivered, failed (given up). For ``/metrics``."""
        counts: dict[DeliveryStatus, int] = {"pending": 0, "delivered": 0, "failed": 0}
        with self._transactions() as db:
            rows = db.execute(
                select(WebhookDeliveryRow.status, func.count()).group_by(WebhookDeliveryRow.status)
            ).all()
        for status, count in rows:
            if status in counts:
                counts[status] += count
        return counts


def _shown(row: WebhookEndpointRow) -> Webhook:
    return Webhook(
        id=row.id, url=row.url, events=row.events, description=row.description,
        batch_id=row.batch_id, created_at=row.created_at,
    )  # fmt: skip
