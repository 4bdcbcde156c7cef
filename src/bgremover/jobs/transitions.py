"""Where a job's status changes: one conditional UPDATE whose row count decides. The one
move made elsewhere is the claim's pending → processing (``runs.Runs.claim_next``): its UPDATE picks
the best pending job in the same statement, so it cannot take an id from here; it is a move
``states.TRANSITIONS`` allows, under the same ``WHERE status = 'pending'`` guard.

``UPDATE jobs SET status = :to … WHERE id = :id AND status = :from [AND dispatch_id = :d]``
is atomic on every backend, so two processes cannot both move a job: the loser changes no row
and learns that it lost. The batch's counters move in the same transaction with
``SET n = n + delta``. Locks are taken jobs first (in queue order), the batch last, so two
transactions on PostgreSQL never wait on each other in a circle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session as Db

from . import metrics
from .states import ACTIVE, STATUSES, TERMINAL, TRANSITIONS, JobStatus, batch_status
from .tables import BatchRow, JobRow, weight

NOT_RUNNING: dict[str, Any] = {"dispatch_id": None, "lease_owner": None, "lease_until": None}
"""What a job that no run holds has in its run columns."""


def move(
    db: Db,
    job_id: str,
    to: JobStatus,
    *,
    allowed: Iterable[JobStatus],
    dispatch_id: str | None = None,
    values: Mapping[str, Any] | None = None,
    extra: Sequence[ColumnElement[bool]] = (),
) -> JobStatus | None:
    """Move the job to ``to`` if it is in one of ``allowed`` (and, given ``dispatch_id``,
    still runs that dispatch, and meets ``extra``); returns the status it left, or None when
    nothing changed. An attempt that completes or fails is counted (``metrics``) at commit."""
    for current in allowed:
        if to not in TRANSITIONS[current]:
            raise ValueError(f"the state machine has no {current} -> {to}")
        statement = update(JobRow).where(JobRow.id == job_id, JobRow.status == current)
        if dispatch_id is not None:
            statement = statement.where(JobRow.dispatch_id == dispatch_id)
        if extra:
            statement = statement.where(*extra)
        changed = db.execute(
            statement.values(status=to, **(values or {})),
            execution_options={"synchronize_session": False},
        )
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            if to in ("completed", "failed"):
                metrics.ended(db, job_id)
            return current
    return None


def update_run(db: Db, job_id: str, dispatch_id: str, values: Mapping[str, Any]) -> bool:
    """Change a running job's columns only while it still runs ``dispatch_id``; False when
    it no longer does (it ended, or another run holds it)."""
    changed = db.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id, JobRow.dispatch_id == dispatch_id, JobRow.status == "processing"
        )
        .values(**values),
        execution_options={"synchronize_session": False},
    )
    return bool(changed.rowcount == 1)  # type: ignore[attr-defined]


def shift_batch(db: Db, batch_id: str, deltas: Mapping[str, int], now: datetime) -> None:
    """Add ``deltas`` to the batch's counters atomically, then set its status, start and end
    from the counts it now has. Keys: a status or "total" (jobs), or a per-size-bucket
    counter ("total_b2", "ended_b0")."""
    changes: dict[str, Any] = {}
    for key, delta in deltas.items():
        if delta:
            column = f"{key}_jobs" if key in STATUSES or key == "total" else key
            changes[column] = getattr(BatchRow, column) + delta
    columns = (
        BatchRow.total_jobs,
        BatchRow.start_time,
        BatchRow.end_time,
        BatchRow.active_since,
        *(getattr(BatchRow, f"{status}_jobs") for status in STATUSES),
    )
    if changes:
        row = db.execute(
            update(BatchRow).where(BatchRow.id == batch_id).values(**changes).returning(*columns),
            execution_options={"synchronize_session": False},
        ).one()
    else:
        row = db.execute(select(*columns).where(BatchRow.id == batch_id)).one()
    total_jobs, start_time, end_time, active_since, *counts = row
    status = batch_status(total=total_jobs, **dict(zip(STATUSES, counts, strict=True)))
    if start_time is None and deltas.get("processing", 0) > 0:
        start_time = now
    if status in ACTIVE and total_jobs:
        active_since = _clock_start(active_since, end_time, now)
    end_time = (end_time or now) if status in TERMINAL and total_jobs else None
    db.execute(
        update(BatchRow)
        .where(BatchRow.id == batch_id)
        .values(status=status, start_time=start_time, end_time=end_time, active_since=active_since),
        execution_options={"synchronize_session": False},
    )


def _clock_start(since: datetime | None, ended: datetime | None, now: datetime) -> datetime:
    """Where an active batch's progress clock starts: now for its first jobs; for a batch
    that had ended (a retry, an upload into a finished manual batch) its old start moved on
    by the time it spent ended, so the bar goes on from the share its active time had."""
    if since is None:
        return now
    if ended is None:
        return since
    return since + max(now - ended, timedelta(0))


def move_deltas(left: JobStatus, to: JobStatus, job: JobRow) -> Counter[str]:
    """The counter deltas of ``job`` moving from ``left`` to ``to``."""
    deltas: Counter[str] = Counter({left: -1, to: +1})
    if to in TERMINAL and left not in TERMINAL:
        deltas[f"ended_b{job.size_bucket}"] += weight(job.frames)
    return deltas


def added(job: JobRow) -> Counter[str]:
    """The counter deltas of a new job in its batch (pending)."""
    return Counter({"pending": 1, "total": 1, f"total_b{job.size_bucket}": weight(job.frames)})


def removed(job: JobRow) -> Counter[str]:
    """The counter deltas of an ended job leaving its batch (deleted, or superseded)."""
    frames = weight(job.frames)
    bucket = job.size_bucket
    return Counter(
        {job.status: -1, "total": -1, f"total_b{bucket}": -frames, f"ended_b{bucket}": -frames}
    )


def move_counted(
    db: Db,
    job: JobRow,
    to: JobStatus,
    now: datetime,
    *,
    allowed: Iterable[JobStatus],
    dispatch_id: str | None = None,
    values: Mapping[str, Any] | None = None,
    extra: Sequence[ColumnElement[bool]] = (),
) -> JobStatus | None:
    """``move`` plus the batch counters; returns the status the job left, or None."""
    left = move(
        db, job.id, to, allowed=allowed, dispatch_id=dispatch_id, values=values, extra=extra
    )
    if left is not None:
        shift_batch(db, job.batch_id, move_deltas(left, to, job), now)
    return left


def move_many(
    db: Db,
    jobs: Iterable[JobRow],
    to: JobStatus,
    now: datetime,
    *,
    allowed: Iterable[JobStatus],
    values: Mapping[str, Any] | None = None,
) -> list[JobRow]:
    """Move every job that can move (in the order given: queue order), then shift each
    batch's counters once; returns the jobs that moved."""
    allowed = tuple(allowed)
    moved: list[JobRow] = []
    deltas: dict[str, Counter[str]] = {}
    for job in jobs:
        left = move(db, job.id, to, allowed=allowed, values=values)
        if left is not None:
            moved.append(job)
            deltas.setdefault(job.batch_id, Counter()).update(move_deltas(left, to, job))
    for batch_id, counter in deltas.items():
        shift_batch(db, batch_id, counter, now)
    return moved


def recount(db: Db, batch_id: str, now: datetime) -> None:
    """Set a batch's counters from its jobs, after rows arrived from outside the state
    machine (an import)."""
    rows = db.execute(
        select(
            JobRow.status,
            JobRow.size_bucket,
            func.count(),
            func.sum(func.coalesce(JobRow.frames, 1)),
        )
        .where(JobRow.batch_id == batch_id, JobRow.superseded.is_(False))
        .group_by(JobRow.status, JobRow.size_bucket)
    ).all()
    counts: Counter[str] = Counter()
    for status, bucket, n, frames in rows:
        counts[f"{status}_jobs"] += n
        counts["total_jobs"] += n
        counts[f"total_b{bucket}"] += frames
        if status in TERMINAL:
            counts[f"ended_b{bucket}"] += frames
    columns = [f"{s}_jobs" for s in ("total", *STATUSES)]
    columns += [f"{kind}_b{bucket}" for kind in ("total", "ended") for bucket in range(4)]
    db.execute(
        update(BatchRow)
        .where(BatchRow.id == batch_id)
        .values(**{column: counts[column] for column in columns}),
        execution_options={"synchronize_session": False},
    )
    shift_batch(db, batch_id, {}, now)
