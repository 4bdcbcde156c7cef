"""Housekeeping on the job store: retention cleanup, and export/import of the queue state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from . import sequences, transitions
from .files import FileStore
from .schemas import CleanupResult, ImportResult
from .states import TERMINAL
from .tables import Base, BatchRow, DateTime, JobRow, SessionRow

EXPORT_VERSION = 1
_BATCH = 500


def delete_rows(db: Db, files: FileStore, rows: Sequence[JobRow], now: datetime) -> int:
    """Delete ended job rows, keeping their batches' counters and status in step, and the
    files no remaining job uses; returns how many files were removed. A row whose status
    changed meanwhile (another process) is left alone."""
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
        removed += files.delete(row.result_path)
        if not db.scalar(select(func.count()).where(JobRow.content_hash == row.content_hash)):
            removed += files.delete_original(row.content_hash)
    return removed


def cleanup(
    sessions: sessionmaker[Db], files: FileStore, cutoff: datetime, now: datetime
) -> CleanupResult:
    """Delete ended jobs whose end is older than ``cutoff``, their files, and batches and
    sessions left empty. Pending and processing jobs are never touched."""
    jobs_deleted = files_deleted = 0
    while True:
        with sessions.begin() as db:
            rows = db.scalars(
                select(JobRow)
                .where(JobRow.status.in_(TERMINAL), JobRow.end_time < cutoff)
                .limit(_BATCH)
            ).all()
            if not rows:
                break
            files_deleted += delete_rows(db, files, rows, now)
            jobs_deleted += len(rows)
    with sessions.begin() as db:
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


def export_state(sessions: sessionmaker[Db], exported_at: datetime) -> dict[str, Any]:
    """Every session, batch and job as plain JSON rows (files are referenced, not included)."""
    with sessions() as db:
        return {
            "version": EXPORT_VERSION,
            "exported_at": exported_at.isoformat(),
            "sessions": [_row(r) for r in db.scalars(select(SessionRow))],
            "batches": [_row(r) for r in db.scalars(select(BatchRow))],
            "jobs": [_row(r) for r in db.scalars(select(JobRow).order_by(JobRow.queue_order))],
        }


def import_state(
    sessions: sessionmaker[Db], files: FileStore, state: dict[str, Any], now: datetime
) -> ImportResult:
    """Add the exported rows whose ids are new. Jobs that were running are queued again;
    a job whose original file is not in this store is marked failed with the reason."""
    if state.get("version") != EXPORT_VERSION:
        raise ValueError(f"unsupported export version {state.get('version')!r}; expected 1")
    counts = {"sessions": 0, "batches": 0, "jobs": 0, "skipped": 0}
    with sessions.begin() as db:
        for key, table in (("sessions", SessionRow), ("batches", BatchRow)):
            for data in state.get(key, []):
                if db.get(table, data["id"]) is not None:
                    counts["skipped"] += 1
                    continue
                db.add(table(**_columns(table, data)))
                counts[key] += 1
        db.flush()
        touched: set[str] = set()
        jobs = [j for j in state.get("jobs", []) if db.get(JobRow, j["id"]) is None]
        counts["skipped"] += len(state.get("jobs", [])) - len(jobs)
        for data in jobs:  # parents before children for the retried_from link
            row = JobRow(**_columns(JobRow, {**data, "retried_from": None}))
            if row.status == "processing":
                row.status, row.stage, row.progress = "pending", None, 0.0
            row.dispatch_id = row.lease_owner = row.lease_until = None
            if row.status == "pending" and not files.original_path(row.content_hash).exists():
                row.status = "failed"
                row.error_code = "original_missing"
                row.error_message = (
                    f"{row.file_name}: the original file was not imported with the queue"
                )
            db.add(row)
            touched.add(row.batch_id)
            counts["jobs"] += 1
        db.flush()
        for data in jobs:
            if data.get("retried_from") and db.get(JobRow, data["retried_from"]) is not None:
                child = db.get(JobRow, data["id"])
                assert child is not None
                child.retried_from = data["retried_from"]
        for batch_id in touched:
            transitions.recount(db, batch_id, now)
        sequences.advance_to(db, "queue_order", db.scalar(select(func.max(JobRow.queue_order))))
    return ImportResult(**counts)


def _row(row: Base) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _columns(table: type[Base], data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in table.__table__.columns:
        if column.key not in data:
            continue
        value = data[column.key]
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        out[column.key] = value
    return out
