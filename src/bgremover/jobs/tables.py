"""Database tables for sessions, batches and jobs (SQLAlchemy 2, SQLite or PostgreSQL).

Batch counters are stored, not derived on every read, and only ever changed by atomic
``SET n = n + 1`` updates in the same transaction as the job status they count (see
``transitions``); the stateful tests check that they always add up, across processes too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    desc,
    false,
    select,
)
from sqlalchemy import DateTime as SqlDateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..config import ERROR_MESSAGE_CHARS


class DateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = SqlDateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=False)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use datetime.now(UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class BatchRow(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Where the batch's progress clock starts (``snapshots.time_share``): its first jobs'
    upload, moved on by any time it spent ended, so a retry or a later upload continues the
    clock. None while it has no jobs."""
    total_jobs: Mapped[int] = mapped_column(Integer, default=0)
    pending_jobs: Mapped[int] = mapped_column(Integer, default=0)
    processing_jobs: Mapped[int] = mapped_column(Integer, default=0)
    completed_jobs: Mapped[int] = mapped_column(Integer, default=0)
    failed_jobs: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_jobs: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Its pending jobs are not claimed (``pauses``); running ones finish."""
    held_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When it was paused itself: its progress clock skips the time it was held."""
    # Frames per image-size bucket (``eta.clock.size_bucket``): of all jobs, and of those ended;
    # a photo is one frame, a clip its ``JobRow.frames`` (``weight``). They weigh each job by
    # the time its size and frames take, so a batch at 50 % is half done in time.
    total_b0: Mapped[int] = mapped_column(Integer, default=0)
    total_b1: Mapped[int] = mapped_column(Integer, default=0)
    total_b2: Mapped[int] = mapped_column(Integer, default=0)
    total_b3: Mapped[int] = mapped_column(Integer, default=0)
    ended_b0: Mapped[int] = mapped_column(Integer, default=0)
    ended_b1: Mapped[int] = mapped_column(Integer, default=0)
    ended_b2: Mapped[int] = mapped_column(Integer, default=0)
    ended_b3: Mapped[int] = mapped_column(Integer, default=0)

    def by_bucket(self, kind: str) -> list[int]:
        """Frames of ``total`` or ``ended`` jobs per size bucket."""
        return [getattr(self, f"{kind}_b{bucket}") for bucket in range(4)]


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The claim's order (highest priority, then first in line) read straight off the index,
        # so claiming costs the same with 100,000 jobs pending as with 10.
        Index("ix_jobs_claim", "status", desc("priority"), "queue_order"),
        # A batch's jobs by status, and its last pending job in queue order (its ETA).
        Index("ix_jobs_batch_queue", "batch_id", "status", desc("priority"), "queue_order"),
        # Recovery: runs whose lease has expired.
        Index("ix_jobs_lease", "status", "lease_until"),
        Index("ix_jobs_dispatch", "dispatch_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"))
    file_name: Mapped[str] = mapped_column(String(255), index=True)
    file_size: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    media_type: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    queue_order: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retried_from: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)
    """A later attempt replaced this one; it keeps its status but leaves the batch counts."""
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    start_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    end_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    estimated_time_remaining: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE_CHARS))
    worker: Mapped[str | None] = mapped_column(String(100))
    """Who runs it, for people: "local-1 (pid 4242)"."""
    dispatch_id: Mapped[str | None] = mapped_column(String(32))
    """The current run's id while processing; a report carrying another id changes nothing."""
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    """The process that claimed the run: "host/pid/token"."""
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Renewed while the owner is alive; once past, any process may re-queue the job."""
    lost_runs: Mapped[int] = mapped_column(Integer, default=0)
    """Runs lost to a dead or hung worker (or a failing dependency); bounded by
    ``max_attempts``."""
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """A pending job whose run a failing dependency cut short is not claimed before this."""
    size_bucket: Mapped[int] = mapped_column(Integer, default=0)
    """``eta.clock.size_bucket`` of the image: what its runs are expected to take."""
    frames: Mapped[int | None] = mapped_column(Integer)
    """A clip's frames as its headers count them at upload; None for a photo."""
    predicted_seconds: Mapped[float | None] = mapped_column(Float)
    """The run's expected duration when it started, to measure the estimates against."""
    result_path: Mapped[str | None] = mapped_column(String(500))
    result_width: Mapped[int | None] = mapped_column(Integer)
    result_height: Mapped[int | None] = mapped_column(Integer)
    result_format: Mapped[str | None] = mapped_column(String(16))
    result_bytes: Mapped[int | None] = mapped_column(BigInteger)
    result_model: Mapped[str | None] = mapped_column(String(64))
    """The model that made the result, and its file's sha256."""
    result_model_sha256: Mapped[str | None] = mapped_column(String(64))


def weight(frames: int | None) -> int:
    """A job's weight in its batch's size-bucket counters: a clip's frames, a photo's one
    (each frame of a clip costs about what a still image of its size does)."""
    return frames or 1


class QueueRow(Base):
    """The queue's own state, one row (``QUEUE``): whether claims start anything, who paused
    it and when. ``version`` grows with every pause or resume, of the queue or a batch, so a
    process on a bus that shares nothing notices a change made elsewhere (``pauses``)."""

    __tablename__ = "queue_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_by: Mapped[str | None] = mapped_column(String(200))
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(BigInteger, default=0)


QUEUE = "default"
"""The name of the queue's row (the migration creates it)."""


def claimable() -> list[ColumnElement[bool]]:
    """What the claim adds to "pending": neither the queue nor the job's batch is paused.
    Read by the claiming statement itself, so no process can start a paused job."""
    queue_paused = select(QueueRow.name).where(QueueRow.name == QUEUE, QueueRow.paused)
    paused_batches = select(BatchRow.id).where(BatchRow.paused)
    return [~queue_paused.exists(), JobRow.batch_id.not_in(paused_batches)]


class CounterRow(Base):
    """Named counters that every process shares (the queue order; on SQLite also the event
    seq, which PostgreSQL takes from a native sequence)."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class StageTimingRow(Base):
    """Learned seconds per stage and image-size bucket, shared by every process and kept
    across restarts; averaged in the database, so concurrent observations all count."""

    __tablename__ = "stage_timings"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class ModelTimingRow(Base):
    """Learned seconds of the model stage per model a job chose (``StageTimingRow`` keeps
    the default model's, per size bucket: the model's input size does not depend on the
    image's), averaged in the database as those are."""

    __tablename__ = "model_timings"

    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)
    samples: Mapped[int] = mapped_column(Integer)


class StageDurationRow(Base):
    """Seconds each stage of a completed run took, as its worker measured them: the samples
    analytics reports medians of (``stage_timings`` keeps only a decaying average)."""

    __tablename__ = "stage_durations"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)


class MetricCountRow(Base):
    """Monitoring totals (``metrics``): how many runs ended or started, and how long they
    took, per histogram bucket. Added to in the transaction that moves each job, so they
    never go down, not even when old jobs are deleted."""

    __tablename__ = "metric_counts"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    """A size bucket, a stage or an error code; "" for none."""
    le: Mapped[str] = mapped_column(String(16), primary_key=True)
    """The histogram bucket's upper bound as Prometheus writes it ("0.5", "+Inf"); "" for a
    plain total."""
    samples: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[float] = mapped_column(Float)
    """The sum of the values observed in this bucket."""


class PresetRow(Base):
    """A named set of upload options (``presets.PresetOptions`` as JSON)."""

    __tablename__ = "presets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginRow(Base):
    """A browser login (``logins``): the key derived from its cookie, never the cookie."""

    __tablename__ = "logins"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class WebhookEndpointRow(Base):
    """A receiver of webhooks: every batch's events (``batch_id`` None), or one batch's (an
    upload's ``callback_url``, deleted with its batch)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    """``whsec_`` and base64: what deliveries are signed with (Standard Webhooks)."""
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDeliveryRow(Base):
    """One event for one endpoint: the outbox. Written in the transaction of the change it
    reports; a dispatcher claims it under a lease, sends it and records the attempt, until
    it is delivered or its retry period is over."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """The ``webhook-id`` header: the same on every attempt, the receiver's idempotency key."""
    endpoint_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    """The body exactly as signed and sent, every attempt."""
    status: Mapped[str] = mapped_column(String(16))
    """pending (to send or retry), delivered, or failed (given up)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """A sender that died holding it loses it here; another then sends it again."""


class WebhookAttemptRow(Base):
    """One try at sending a delivery, for ``GET /api/webhooks/{id}/deliveries``."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[str] = mapped_column(String(32))
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(String(256))


class MaskRow(Base):
    """A model's mask kept in the store (``jobs/masks.py``): its key is a hash of the original's
    content, the model and the mask version, so every job on that original reuses it."""

    __tablename__ = "masks"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    """The storage key ("masks/ab/<sha256>.png"), derived by the worker, checked on record."""
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    """The original it is the mask of: retention deletes it with the original's last job."""
    bytes: Mapped[int] = mapped_column(BigInteger)
    last_used: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    """When a run last made or reused it: the least recently used go first over the bound."""
