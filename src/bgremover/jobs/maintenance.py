"""Housekeeping on the job store: retention cleanup, and export/import of the queue state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from .files import FileStore
from .schemas import CleanupResult, ImportResult
from .states import TERMINAL
from .tables import Base, BatchRow, DateTime, JobRow, SessionRow

EXPORT_VERSION = 1
_BATCH = 500


def delete_rows(db: Db, files: FileStore, rows: Sequence[JobRow]) -> int:
    """Delete job rows, keeping their batches' counters and status in step, and the files
    no remaining job uses; returns how many files were removed."""
    ids = [row.id for row in rows]
    db.execute(update(JobRow).where(JobRow.retried_from.in_(ids)).values(retried_from=None))
    for row in rows:
        batch = db.get(BatchRow, row.batch_id)
        if batch is not None and not row.superseded:
            batch.count(row.status, -1)
            batch.total_jobs -= 1
            batch.refresh_status()
        db.delete(row)
    db.flush()
    removed = 0
    for row in rows:
        removed += files.delete(row.result_path)
        if not db.scalar(select(func.count()).where(JobRow.content_hash == row.content_hash)):
            removed += files.delete_original(row.content_hash)
    return removed


def cleanup(sessions: sessionmaker[Db], files: FileStore, cutoff: datetime) -> CleanupResult:
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
            files_deleted += delete_rows(db, files, rows)
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
    sessions: sessionmaker[Db], files: FileStore, state: dict[str, Any]
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
            _recount(db, batch_id)
    return ImportResult(**counts)


def _recount(db: Db, batch_id: str) -> None:
    """Batch counters from its jobs, after rows arrived from outside the state machine."""
    batch = db.get(BatchRow, batch_id)
    if batch is None:
        return
    by_status = dict(
        db.execute(
            select(JobRow.status, func.count())
            .where(JobRow.batch_id == batch_id, JobRow.superseded.is_(False))
            .group_by(JobRow.status)
        ).all()
    )
    for status in ("pending", "processing", "completed", "failed", "cancelled"):
        setattr(batch, f"{status}_jobs", int(by_status.get(status, 0)))
    batch.total_jobs = sum(int(v) for v in by_status.values())
    batch.refresh_status()


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
