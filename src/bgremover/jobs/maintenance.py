"""Housekeeping on the job store: retention cleanup (the queue's export and import are
``exchange``'s)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..storage.files import FileStore
from . import masks, transitions
from .schemas import CleanupResult
from .states import TERMINAL
from .tables import BatchRow, JobRow, SessionRow

_BATCH = 500


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
            transitions.shift_batch(db, row.batch_id, transitions.removed(row), now)
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
