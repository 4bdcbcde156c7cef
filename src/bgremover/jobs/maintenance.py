"""Housekeeping on the job store: retention cleanup, and export/import of the queue state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..storage.files import FileStore
from . import masks, sequences, transitions
from .eta.clock import size_bucket
from .exchange import (
    EXPORT_VERSION,
    ExportedBatch,
    ExportedJob,
    ExportedSession,
    QueueState,
    exported_options,
)
from .schemas import CleanupResult, ImportResult
from .states import STATUSES, TERMINAL
from .tables import Base, BatchRow, DateTime, JobRow, SessionRow

_BATCH = 500
_ZERO_COUNTS = {"total_jobs": 0, **{f"{status}_jobs": 0 for status in STATUSES}}


def delete_rows(db: Db, files: FileStore, rows: Sequence[JobRow], now: datetime) -> int:
    """Delete ended job rows, keeping their batches' counters and status in step, and the
    files no remaining job uses (an original's kept masks go with it); returns how many
    files were removed. A row whose status changed meanwhile (another process) is left
    alone."""
    ids = [row.id for row in rows]
    db.execute(
        update(JobRow).where(JobRow.retried_from.in_(ids)).values(retried_from=None),
        execution_options={"synchronize_session": False},
    )
    deleted = []
    for row in rows:
        gone = db.execute(
            delete(JobRow).where(
                JobRow.id == row.id, JobRow.status == row.status, JobRow.status.in_(TERMINAL)
            ),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
        if gone != 1:
            continue
        deleted.append(row)
        if not row.superseded:
            bucket = row.size_bucket
            transitions.shift_batch(
                db,
                row.batch_id,
                {row.status: -1, "total": -1, f"total_b{bucket}": -1, f"ended_b{bucket}": -1},
                now,
            )
    removed = 0
    for row in deleted:
        removed += files.delete(files.result_file(row.id, row.result_format))
        if not db.scalar(select(func.count()).where(JobRow.content_hash == row.content_hash)):
            removed += files.delete_original(row.content_hash)
            removed += masks.delete_for(db, files, row.content_hash)
    return removed


def cleanup(
    transactions: sessionmaker[Db], files: FileStore, cutoff: datetime, now: datetime
) -> CleanupResult:
    """Delete ended jobs whose end is older than ``cutoff``, their files, and batches and
    sessions left empty. Pending and processing jobs are never touched."""
    jobs_deleted = files_deleted = 0
    while True:
        with transactions.begin() as db:
            rows = db.scalars(
                select(JobRow)
                .where(JobRow.status.in_(TERMINAL), JobRow.end_time < cutoff)
                .limit(_BATCH)
            ).all()
            if not rows:
                break
            files_deleted += delete_rows(db, files, rows, now)
            jobs_deleted += len(rows)
    with transactions.begin() as db:
        empty = select(BatchRow.id).where(
            BatchRow.total_jobs == 0,
            BatchRow.created_at < cutoff,
            ~select(JobRow.id).where(JobRow.batch_id == BatchRow.id).exists(),
        )
        db.execute(delete(BatchRow).where(BatchRow.id.in_(empty)))
        db.execute(
            delete(SessionRow).where(
                SessionRow.last_activity_at < cutoff,
                ~select(BatchRow.id).where(BatchRow.session_id == SessionRow.id).exists(),
            )
        )
    return CleanupResult(jobs_deleted=jobs_deleted, files_deleted=files_deleted)


def export_state(transactions: sessionmaker[Db], exported_at: datetime) -> dict[str, Any]:
    """Every session, batch and job as plain JSON rows in the ``QueueState`` shape: files are
    referenced by hash and id, never by path, and which worker ran a job is not included."""
    with transactions() as db:
        jobs = []
        for row in db.scalars(select(JobRow).order_by(JobRow.queue_order)):
            data = _row(row, ExportedJob)
            data["options"] = exported_options(data["options"] or {})
            jobs.append(data)
        return {
            "version": EXPORT_VERSION,
            "exported_at": exported_at.isoformat(),
            "sessions": [_row(r, ExportedSession) for r in db.scalars(select(SessionRow))],
            "batches": [_row(r, ExportedBatch) for r in db.scalars(select(BatchRow))],
            "jobs": jobs,
        }


def import_state(
    transactions: sessionmaker[Db], files: FileStore, state: QueueState, now: datetime
) -> ImportResult:
    """Add the exported rows whose ids are new. Jobs that were running are queued again;
    a job whose files are not in this store is marked failed with the reason. Raises
    ``ValueError`` (nothing is added) when a row names a batch or session that is neither
    in the export nor in this queue."""
    counts = {"sessions": 0, "batches": 0, "jobs": 0, "skipped": 0}
    with transactions.begin() as db:
        for session in state.sessions:
            if db.get(SessionRow, session.id) is not None:
                counts["skipped"] += 1
                continue
            db.add(SessionRow(**_columns(SessionRow, session)))
            counts["sessions"] += 1
        db.flush()
        touched: set[str] = set()
        for batch in state.batches:
            if db.get(BatchRow, batch.id) is not None:
                counts["skipped"] += 1
                continue
            if db.get(SessionRow, batch.session_id) is None:
                raise ValueError(f"batch {batch.id} belongs to an unknown session")
            db.add(BatchRow(**_columns(BatchRow, batch), **_ZERO_COUNTS))
            touched.add(batch.id)
            counts["batches"] += 1
        db.flush()
        jobs = [j for j in state.jobs if db.get(JobRow, j.id) is None]
        counts["skipped"] += len(state.jobs) - len(jobs)
        for job in jobs:  # parents before children for the retried_from link
            if db.get(BatchRow, job.batch_id) is None:
                raise ValueError(f"job {job.id} belongs to an unknown batch")
            db.add(_job_row(files, job, now))
            touched.add(job.batch_id)
            counts["jobs"] += 1
        db.flush()
        for job in jobs:
            if job.retried_from and db.get(JobRow, job.retried_from) is not None:
                child = db.get(JobRow, job.id)
                assert child is not None
                child.retried_from = job.retried_from
        for batch_id in touched:
            transitions.recount(db, batch_id, now)
        sequences.advance_to(db, "queue_order", db.scalar(select(func.max(JobRow.queue_order))))
    return ImportResult(**counts)


def _job_row(files: FileStore, job: ExportedJob, now: datetime) -> JobRow:
    """A job row from an exported one, with every file reference checked in the store."""
    row = JobRow(**_columns(JobRow, job, exclude={"retried_from", "options"}))
    row.queued_at = job.queued_at or job.created_at
    row.size_bucket = size_bucket(row.width, row.height)
    row.lost_runs = 0
    row.media_type = files.image_type(files.original_key(job.content_hash))
    background = job.options.get("background_image")
    row.options = dict(job.options)
    if row.status == "processing":
        row.status, row.stage, row.progress = "pending", None, 0.0
    missing = None
    if row.status == "pending" and row.media_type is None:
        missing = ("original_missing", "the original file was not imported with the queue")
    elif (
        row.status == "pending"
        and background
        and not files.storage.exists(files.background_key(background))
    ):
        missing = ("background_missing", "its background image was not imported with the queue")
    elif row.status == "completed":
        result = files.result_file(row.id, row.result_format)
        if result is not None and files.storage.exists(result):
            row.result_path = result
        else:
            missing = ("result_missing", "its result file was not imported with the queue")
    if missing is not None:
        row.status, row.stage = "failed", None
        row.error_code, row.error_message = missing[0], f"{row.file_name}: {missing[1]}"
        row.end_time = row.end_time or now
    return row


def _row(row: Base, shape: type[BaseModel]) -> dict[str, Any]:
    """A row's columns that the export shape has, as JSON values."""
    out: dict[str, Any] = {}
    for key in shape.model_fields:
        value = getattr(row, key)
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _columns(
    table: type[Base], data: BaseModel, exclude: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Column values from a validated export row (enums as their plain string values)."""
    values = data.model_dump(mode="json", exclude=set(exclude))
    out: dict[str, Any] = {}
    for column in table.__table__.columns:
        if column.key not in values:
            continue
        value = values[column.key]
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        out[column.key] = value
    return out
