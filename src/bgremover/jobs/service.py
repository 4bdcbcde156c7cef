"""The job service: every change to jobs, batches and sessions goes through here.

Commands (create, cancel, retry, reprioritise, delete) come from users; reports (started,
progress, finished, failed, stopped) come from workers through an executor. Both pass the one
state machine in ``states``; a report for a job that has already ended is dropped, so a late
completion never overwrites a cancel. Events are published only after the change commits.
Progress lives in memory and is written to the database at stage boundaries only.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from ..engine.decode import probe
from ..engine.options import OutputFormat, RemoveOptions
from ..engine.stages import Stage, overall_percent
from ..workers.base import Failed, Finished, Report, StageProgress, Started, Stopped, WorkItem
from . import maintenance
from .eta import StageClock, size_bucket
from .events import EventBus, EventType, ProgressThrottle
from .exchange import QueueState
from .files import FileStore
from .schemas import (
    Batch,
    BatchCreated,
    CancelResult,
    CleanupResult,
    ImportResult,
    Job,
    RetryResult,
    Session,
    Upload,
)
from .snapshots import Live, batch_snapshot, job_snapshot, live_remaining, session_snapshot
from .states import (
    ACTIVE,
    RETRYABLE,
    STATUSES,
    TERMINAL,
    InvalidTransition,
    JobStatus,
    NotFound,
    check_transition,
)
from .tables import BatchRow, JobRow, SessionRow

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class JobService:
    """Thread-safe; one per process. The scheduler and executor are attached after creation."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Db],
        files: FileStore,
        bus: EventBus,
        settings: Settings,
        clock: StageClock | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self.files = files
        self.bus = bus
        self.settings = settings
        self.clock = clock or StageClock()
        self._now = now
        self._lock = threading.RLock()
        self._live: dict[str, Live] = {}
        self._throttle = ProgressThrottle(
            self._publish_throttled, settings.progress_update_interval.total_seconds()
        )
        self._cancel_running: Callable[[str], None] = lambda job_id: None
        self._wake: Callable[[], None] = lambda: None

    def attach(self, *, cancel_running: Callable[[str], None], wake: Callable[[], None]) -> None:
        """Connect the executor's cancel and the scheduler's wake-up."""
        self._cancel_running = cancel_running
        self._wake = wake

    # ----------------------------------------------------------------- creating work

    def create_batch(
        self,
        uploads: Sequence[Upload],
        *,
        name: str | None = None,
        priority: int = 0,
        options: RemoveOptions | None = None,
        batch_id: str | None = None,
    ) -> BatchCreated:
        """Store the originals and queue one job per upload, in a new batch (auto-named,
        joining the current session) or in an existing manual batch."""
        options_json = (options or RemoveOptions()).model_dump(mode="json", exclude_defaults=True)
        stored = [self._store_upload(upload) for upload in uploads]
        now = self._now()
        with self._lock, self._sessions.begin() as db:
            if batch_id is not None:
                batch = self._manual_batch(db, batch_id)
                session = db.get(SessionRow, batch.session_id)
                assert session is not None
                session.last_activity_at = now
            else:
                session = self._current_session(db, now)
                batch = BatchRow(
                    id=new_id(),
                    session_id=session.id,
                    name=name or _auto_name(len(stored), now),
                    manual=False,
                    status="pending",
                    created_at=now,
                    **_zero_counts(),
                )
                db.add(batch)
                db.flush()
            order = self._next_queue_order(db)
            rows = []
            for index, (upload, (content_hash, size, media_type, width, height)) in enumerate(
                zip(uploads, stored, strict=True)
            ):
                row = JobRow(
                    id=new_id(),
                    batch_id=batch.id,
                    file_name=upload.file_name,
                    file_size=size,
                    content_hash=content_hash,
                    media_type=media_type,
                    width=width,
                    height=height,
                    status="pending",
                    progress=0.0,
                    priority=priority,
                    queue_order=order + index,
                    attempt=1,
                    superseded=False,
                    options=options_json,
                    created_at=now,
                    queued_at=now,
                )
                rows.append(row)
                db.add(row)
            batch.total_jobs += len(rows)
            batch.pending_jobs += len(rows)
            batch.refresh_status()
            db.flush()
            jobs = [self._job(db, row, batch.session_id) for row in rows]
            events: list[tuple[EventType, dict[str, Any]]] = [
                ("job.updated", {"job": job.model_dump(mode="json")}) for job in jobs
            ]
            created = BatchCreated(batch=self._batch(db, batch), jobs=jobs)
            events += self._batch_and_session_events(db, batch)
        self._publish_all(events)
        self._wake()
        return created

    def create_manual_batch(self, name: str) -> Batch:
        """An empty, user-named batch that later uploads can target."""
        now = self._now()
        with self._lock, self._sessions.begin() as db:
            session = self._current_session(db, now)
            batch = BatchRow(
                id=new_id(),
                session_id=session.id,
                name=name.strip() or _auto_name(0, now),
                manual=True,
                status="pending",
                created_at=now,
                **_zero_counts(),
            )
            db.add(batch)
            db.flush()
            snapshot = self._batch(db, batch)
            events = self._batch_and_session_events(db, batch)
        self._publish_all(events)
        return snapshot

    # ------------------------------------------------------------------ user commands

    def cancel_job(self, job_id: str) -> CancelResult:
        """Cancel a pending job at once, or a running one (its worker stops within a second)."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            was_running = row.status == "processing"
            events = self._end(db, row, "cancelled")
        self._publish_all(events)
        if was_running:
            self._cancel_running(job_id)
        return CancelResult(cancelled=[job_id])

    def cancel_batch(self, batch_id: str) -> CancelResult:
        """Cancel every job of the batch that has not ended."""
        with self._lock, self._sessions.begin() as db:
            batch = self._get_batch(db, batch_id)
            rows = db.scalars(
                select(JobRow).where(
                    JobRow.batch_id == batch.id,
                    JobRow.status.in_(ACTIVE),
                    JobRow.superseded.is_(False),
                )
            ).all()
            running = [row.id for row in rows if row.status == "processing"]
            events: list[tuple[EventType, dict[str, Any]]] = []
            for row in rows:
                events += self._end(db, row, "cancelled", batch_events=False)
            events += self._batch_and_session_events(db, batch)
            events += self._completion_notices(db, batch)
        self._publish_all(events)
        for job_id in running:
            self._cancel_running(job_id)
        return CancelResult(cancelled=[row.id for row in rows])

    def retry_job(self, job_id: str) -> RetryResult:
        """A new attempt of a failed or cancelled job, pending, linked to the old one."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            if row.status not in RETRYABLE or row.superseded:
                raise InvalidTransition(job_id, row.status, "retried")
            jobs, events = self._queue_copies(db, row.batch_id, [row])
        self._publish_all(events)
        self._wake()
        return RetryResult(jobs=jobs)

    def retry_batch(self, batch_id: str) -> RetryResult:
        """A new attempt of every failed and cancelled job in the batch."""
        with self._lock, self._sessions.begin() as db:
            batch = self._get_batch(db, batch_id)
            rows = db.scalars(
                select(JobRow)
                .where(
                    JobRow.batch_id == batch.id,
                    JobRow.status.in_(RETRYABLE),
                    JobRow.superseded.is_(False),
                )
                .order_by(JobRow.queue_order)
            ).all()
            jobs, events = self._queue_copies(db, batch.id, rows)
        self._publish_all(events)
        self._wake()
        return RetryResult(jobs=jobs)

    def derive_job(self, job_id: str, options: RemoveOptions) -> Job:
        """A new job on the same original with other output options (the editor's "save as
        a new result"): it runs through the queue like any other job."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            new_options = options.model_dump(mode="json", exclude_defaults=True)
            jobs, events = self._queue_copies(db, row.batch_id, [row], new_options)
        self._publish_all(events)
        self._wake()
        return jobs[0]

    def delete_jobs(self, statuses: Iterable[str]) -> int:
        """Delete every job in one of the given ended statuses (the history's "clear all")."""
        wanted = [s for s in statuses if s in TERMINAL]
        with self._sessions() as db:
            ids = db.scalars(select(JobRow.id).where(JobRow.status.in_(wanted))).all()
        for job_id in ids:
            try:
                self.delete_job(job_id)
            except NotFound:
                continue  # deleted meanwhile
        return len(ids)

    def set_priority(self, job_id: str, priority: int) -> Job:
        """Higher runs first; only for jobs that have not ended."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            if row.status not in ACTIVE:
                raise InvalidTransition(job_id, row.status, "reprioritised")
            row.priority = priority
            job = self._job(db, row)
        self._publish_all([("job.updated", {"job": job.model_dump(mode="json")})])
        self._wake()
        return job

    def move_to_front(self, job_id: str) -> Job:
        """Make a pending job the next to run: top priority, first in line."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            if row.status != "pending":
                raise InvalidTransition(job_id, row.status, "moved to the front")
            top = db.scalar(select(func.max(JobRow.priority)).where(JobRow.status == "pending"))
            first = db.scalar(
                select(func.min(JobRow.queue_order)).where(JobRow.status == "pending")
            )
            row.priority = max(row.priority, top or 0)
            row.queue_order = min(row.queue_order, (first or 0) - 1)
            job = self._job(db, row)
        self._publish_all([("job.updated", {"job": job.model_dump(mode="json")})])
        return job

    def delete_job(self, job_id: str) -> None:
        """Remove a job and its files; a running job is cancelled first."""
        with self._lock, self._sessions.begin() as db:
            row = self._get_job(db, job_id)
            was_running = row.status == "processing"
            events: list[tuple[EventType, dict[str, Any]]] = []
            if row.status in ACTIVE:
                events += self._end(db, row, "cancelled", batch_events=False)
            batch = db.get(BatchRow, row.batch_id)
            assert batch is not None
            maintenance.delete_rows(db, self.files, [row])
            events.append(("job.updated", {"job": {"id": job_id, "deleted": True}}))
            events += self._batch_and_session_events(db, batch)
        self._publish_all(events)
        if was_running:
            self._cancel_running(job_id)

    # ------------------------------------------------------------ scheduler and workers

    def claim_next(self) -> WorkItem | None:
        """Move the best pending job (highest priority, then oldest) to processing."""
        with self._lock, self._sessions.begin() as db:
            row = db.scalars(
                select(JobRow)
                .where(JobRow.status == "pending")
                .order_by(JobRow.priority.desc(), JobRow.queue_order, JobRow.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            batch = db.get(BatchRow, row.batch_id)
            assert batch is not None
            self._move(db, row, batch, "processing")
            row.start_time = self._now()
            row.stage = None
            row.progress = 0.0
            row.worker = None
            dispatch_id = new_id()
            self._live[row.id] = Live(dispatch_id, row.batch_id, size_bucket(row.width, row.height))
            options = RemoveOptions.model_validate(row.options or {})
            item = WorkItem(
                job_id=row.id,
                dispatch_id=dispatch_id,
                source=str(self.files.original_path(row.content_hash)),
                destination=str(self.files.result_path(row.id, options.format.extension)),
                options=row.options or {},
            )
            events: list[tuple[EventType, dict[str, Any]]] = [
                ("job.updated", {"job": self._job(db, row).model_dump(mode="json")})
            ]
            events += self._batch_and_session_events(db, batch)
        self._publish_all(events)
        return item

    def handle(self, report: Report) -> None:
        """Apply a worker's report; stale or late reports are dropped."""
        live = self._live.get(report.job_id)
        if live is None or live.dispatch_id != report.dispatch_id:
            if isinstance(report, Finished):
                self._discard_orphan_result(report)
            return
        if isinstance(report, StageProgress):
            self._on_progress(report, live)
        elif isinstance(report, Started):
            self._on_started(report)
        elif isinstance(report, Finished):
            self._on_finished(report, live)
        elif isinstance(report, Failed):
            self._finish(report.job_id, "failed", error=(report.code, report.message))
        elif isinstance(report, Stopped):
            self._finish(report.job_id, "cancelled")

    def recover(self) -> int:
        """After a restart: jobs left processing go back to the queue. Returns how many."""
        with self._lock, self._sessions.begin() as db:
            rows = db.scalars(select(JobRow).where(JobRow.status == "processing")).all()
            for row in rows:
                batch = db.get(BatchRow, row.batch_id)
                assert batch is not None
                self._move(db, row, batch, "pending")
                row.stage, row.progress, row.worker = None, 0.0, None
                row.queued_at = self._now()
            self._live.clear()
        if rows:
            log.info("re-queued %d jobs left processing by the previous run", len(rows))
        return len(rows)

    def _on_started(self, report: Started) -> None:
        with self._lock, self._sessions.begin() as db:
            row = db.get(JobRow, report.job_id)
            if row is None or row.status != "processing":
                return
            row.worker = report.worker
            job = self._job(db, row)
        self._publish_all([("job.updated", {"job": job.model_dump(mode="json")})])

    def _on_progress(self, report: StageProgress, live: Live) -> None:
        try:
            stage = Stage(report.stage)
        except ValueError:
            return
        weights = self.clock.weights(live.bucket)
        percent = max(live.percent, overall_percent(stage, report.fraction, weights))
        stage_changed = stage != live.stage
        live.stage, live.fraction, live.percent = stage, report.fraction, percent
        if stage_changed:
            # A stage boundary: persist it and tell everyone with a full snapshot.
            with self._lock, self._sessions.begin() as db:
                row = db.get(JobRow, report.job_id)
                if row is None or row.status != "processing":
                    return
                row.stage, row.progress = stage.value, percent
                job = self._job(db, row)
            self._throttle.discard(f"job:{report.job_id}")
            self._publish_all([("job.updated", {"job": job.model_dump(mode="json")})])
        else:
            eta = live_remaining(live, self.clock)
            self._throttle.offer(
                f"job:{report.job_id}",
                {
                    "id": report.job_id,
                    "batch_id": live.batch_id,
                    "progress": round(percent, 2),
                    "stage": stage.value,
                    "eta": round(eta, 2),
                    "sent_at": report.sent_at,
                },
            )

    def _on_finished(self, report: Finished, live: Live) -> None:
        self.clock.observe(live.bucket, report.timings)
        self._finish(
            report.job_id,
            "completed",
            result=(report.width, report.height, report.format, report.bytes),
        )

    def _finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: tuple[str, str] | None = None,
        result: tuple[int, int, str, int] | None = None,
    ) -> None:
        with self._lock, self._sessions.begin() as db:
            row = db.get(JobRow, job_id)
            if row is None or row.status in TERMINAL:
                self._live.pop(job_id, None)
                return
            if result is not None:
                options = RemoveOptions.model_validate(row.options or {})
                row.result_path = str(self.files.result_path(row.id, options.format.extension))
                row.result_width, row.result_height, row.result_format, row.result_bytes = result
            if error is not None:
                # Workers name the stored file; people know it by the name they uploaded.
                stored = str(self.files.original_path(row.content_hash))
                row.error_code = error[0]
                row.error_message = error[1].replace(stored, row.file_name)[:2000]
            events = self._end(db, row, status)
        self._publish_all(events)
        self._wake()

    def _discard_orphan_result(self, report: Finished) -> None:
        """A run finished after its job was cancelled or deleted: its file is not wanted."""
        with self._sessions() as db:
            row = db.get(JobRow, report.job_id)
            if row is not None and row.status == "completed":
                return
        self.files.delete(self.files.result_path(report.job_id, _extension(report.format)))

    # --------------------------------------------------------------------- maintenance

    def cleanup(self) -> CleanupResult:
        """Delete ended jobs older than ``job_retention`` and their files."""
        with self._lock:
            return maintenance.cleanup(
                self._sessions, self.files, self._now() - self.settings.job_retention
            )

    def export_state(self) -> dict[str, Any]:
        return maintenance.export_state(self._sessions, self._now())

    def import_state(self, state: QueueState) -> ImportResult:
        with self._lock:
            result = maintenance.import_state(self._sessions, self.files, state, self._now())
        self._wake()
        return result

    # ------------------------------------------------------------------------ queries

    def get_job(self, job_id: str) -> Job:
        with self._sessions() as db:
            return self._job(db, self._get_job(db, job_id))

    def job_paths(self, job_id: str) -> tuple[Path, Path | None]:
        """The original's and (when completed) the result's file paths, derived by the
        store from the row's hash and id (a stored path string is never trusted)."""
        with self._sessions() as db:
            row = self._get_job(db, job_id)
            done = row.status == "completed"
            result = self.files.result_file(row.id, row.result_format) if done else None
            return self.files.original_path(row.content_hash), result

    def list_jobs(
        self,
        *,
        status: Iterable[str] | None = None,
        batch_id: str | None = None,
        session_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        q: str | None = None,
        include_superseded: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """Jobs matching every filter given, newest first, and the total count."""
        query = select(JobRow)
        if status:
            query = query.where(JobRow.status.in_(list(status)))
        if batch_id:
            query = query.where(JobRow.batch_id == batch_id)
        if session_id:
            query = query.join(BatchRow, BatchRow.id == JobRow.batch_id).where(
                BatchRow.session_id == session_id
            )
        if since:
            query = query.where(JobRow.created_at >= since)
        if until:
            query = query.where(JobRow.created_at < until)
        if q:
            query = query.where(JobRow.file_name.ilike(f"%{_escape_like(q)}%", escape="\\"))
        if not include_superseded:
            query = query.where(JobRow.superseded.is_(False))
        with self._sessions() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = db.scalars(
                query.order_by(JobRow.created_at.desc(), JobRow.queue_order.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [self._job(db, row) for row in rows], total

    def get_batch(self, batch_id: str) -> Batch:
        with self._sessions() as db:
            return self._batch(db, self._get_batch(db, batch_id))

    def list_batches(
        self,
        *,
        session_id: str | None = None,
        status: Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Batch], int]:
        query = select(BatchRow)
        if session_id:
            query = query.where(BatchRow.session_id == session_id)
        if status:
            query = query.where(BatchRow.status.in_(list(status)))
        with self._sessions() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = db.scalars(
                query.order_by(BatchRow.created_at.desc()).limit(limit).offset(offset)
            ).all()
            return [self._batch(db, row) for row in rows], total

    def get_session(self, session_id: str) -> Session:
        with self._sessions() as db:
            row = db.get(SessionRow, session_id)
            if row is None:
                raise NotFound("session", session_id)
            return self._session(db, row)

    def list_sessions(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Session], int]:
        with self._sessions() as db:
            total = db.scalar(select(func.count()).select_from(SessionRow)) or 0
            rows = db.scalars(
                select(SessionRow)
                .order_by(SessionRow.last_activity_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [self._session(db, row) for row in rows], total

    def active_snapshot(self, recent_jobs: int = 500) -> dict[str, Any]:
        """What a client needs to draw the live queue: active jobs and the most recently
        ended ones, their batches and sessions, and the bus seq it is consistent with.

        The seq is read first and no lock is held: an event published meanwhile is replayed
        after the snapshot and applying it twice is harmless (events carry whole rows)."""
        seq = self.bus.last_seq
        recent_cutoff = self._now() - self.settings.auto_group_time_window
        with self._sessions() as db:
            jobs = list(
                db.scalars(
                    select(JobRow)
                    .where(JobRow.status.in_(ACTIVE))
                    .order_by(JobRow.priority.desc(), JobRow.queue_order)
                )
            )
            jobs += db.scalars(
                select(JobRow)
                .where(JobRow.status.in_(TERMINAL), JobRow.end_time >= recent_cutoff)
                .order_by(JobRow.end_time.desc())
                .limit(recent_jobs)
            ).all()
            batches = db.scalars(
                select(BatchRow).where(
                    or_(
                        BatchRow.status.in_(ACTIVE),
                        BatchRow.end_time >= recent_cutoff,
                        BatchRow.created_at >= recent_cutoff,
                    )
                )
            ).all()
            session_ids = {b.session_id for b in batches}
            sessions = [db.get(SessionRow, sid) for sid in session_ids]
            batch_sessions = {b.id: b.session_id for b in batches}
            return {
                "seq": seq,
                "jobs": [
                    self._job(db, j, batch_sessions.get(j.batch_id)).model_dump(mode="json")
                    for j in jobs
                ],
                "batches": [self._batch(db, b).model_dump(mode="json") for b in batches],
                "sessions": [
                    self._session(db, s).model_dump(mode="json") for s in sessions if s is not None
                ],
            }

    def stats(self) -> dict[str, Any]:
        with self._sessions() as db:
            by_status = dict(
                db.execute(
                    select(JobRow.status, func.count())
                    .where(JobRow.superseded.is_(False))
                    .group_by(JobRow.status)
                ).all()
            )
            hour_ago = self._now() - timedelta(hours=1)
            done_last_hour = db.scalar(
                select(func.count()).where(
                    JobRow.status == "completed", JobRow.end_time >= hour_ago
                )
            )
            return {
                "jobs": {s: int(by_status.get(s, 0)) for s in STATUSES},
                "batches": db.scalar(select(func.count()).select_from(BatchRow)) or 0,
                "sessions": db.scalar(select(func.count()).select_from(SessionRow)) or 0,
                "completed_last_hour": done_last_hour or 0,
                "expected_seconds_per_image": round(self.clock.job_seconds(0), 2),
                "max_concurrent_jobs": self.settings.max_concurrent_jobs,
            }

    # -------------------------------------------------------------------- internals

    def _store_upload(self, upload: Upload) -> tuple[str, int, str | None, int | None, int | None]:
        path = Path(upload.path)
        media_type, width, height = probe(path)
        content_hash, size = self.files.add_original(path)
        return content_hash, size, media_type, width, height

    def _current_session(self, db: Db, now: datetime) -> SessionRow:
        """The session active within the grouping window, or a new one."""
        cutoff = now - self.settings.auto_group_time_window
        session = db.scalars(
            select(SessionRow)
            .where(SessionRow.last_activity_at >= cutoff)
            .order_by(SessionRow.last_activity_at.desc())
            .limit(1)
        ).first()
        if session is None:
            session = SessionRow(
                id=new_id(),
                name=f"Session · {now.astimezone():%b %d, %H:%M}",
                started_at=now,
                last_activity_at=now,
            )
            db.add(session)
            db.flush()  # rows carry no relationships, so insert the parent first
        else:
            session.last_activity_at = now
        return session

    def _manual_batch(self, db: Db, batch_id: str) -> BatchRow:
        batch = self._get_batch(db, batch_id)
        if not batch.manual:
            raise InvalidTransition(batch_id, "an automatic batch", "given more images")
        return batch

    def _next_queue_order(self, db: Db) -> int:
        return (db.scalar(select(func.max(JobRow.queue_order))) or 0) + 1

    def _get_job(self, db: Db, job_id: str) -> JobRow:
        row = db.get(JobRow, job_id)
        if row is None:
            raise NotFound("job", job_id)
        return row

    def _get_batch(self, db: Db, batch_id: str) -> BatchRow:
        row = db.get(BatchRow, batch_id)
        if row is None:
            raise NotFound("batch", batch_id)
        return row

    def _move(self, db: Db, row: JobRow, batch: BatchRow, status: JobStatus) -> None:
        """The only place a job's status changes; keeps the batch counters in step."""
        check_transition(row.id, row.status, status)
        if not row.superseded:
            batch.count(row.status, -1)
            batch.count(status, +1)
        row.status = status
        now = self._now()
        if status == "processing" and batch.start_time is None:
            batch.start_time = now
        batch.refresh_status()
        if batch.status in TERMINAL:
            batch.end_time = batch.end_time or now
        else:
            batch.end_time = None

    def _end(
        self, db: Db, row: JobRow, status: JobStatus, *, batch_events: bool = True
    ) -> list[tuple[EventType, dict[str, Any]]]:
        """Move a job to a terminal status; the events to publish after commit."""
        batch = db.get(BatchRow, row.batch_id)
        assert batch is not None
        if row.status not in ACTIVE:
            raise InvalidTransition(row.id, row.status, status)
        live = self._live.pop(row.id, None)
        self._move(db, row, batch, status)
        row.end_time = self._now()
        if status == "completed":
            row.progress, row.stage = 100.0, None
        elif live is not None:
            row.progress = max(row.progress, live.percent)
        self._throttle.discard(f"job:{row.id}")
        job = self._job(db, row)
        events: list[tuple[EventType, dict[str, Any]]] = [
            ("job.updated", {"job": job.model_dump(mode="json")})
        ]
        if status == "failed":
            events.append(
                _notice(
                    "error",
                    f"Couldn't process {row.file_name}",
                    row.error_message or "Processing failed",
                    job_id=row.id,
                    batch_id=row.batch_id,
                )
            )
        if batch_events:
            events += self._batch_and_session_events(db, batch)
            events += self._completion_notices(db, batch)
        return events

    def _queue_copies(
        self,
        db: Db,
        batch_id: str,
        rows: Sequence[JobRow],
        options: dict[str, Any] | None = None,
    ) -> tuple[list[Job], list[tuple[EventType, dict[str, Any]]]]:
        """Queue a copy of each row (see ``_new_attempt``); the new jobs and the events."""
        events: list[tuple[EventType, dict[str, Any]]] = []
        new_rows = []
        for row in rows:
            new_row, job_events = self._new_attempt(db, row, options)
            new_rows.append(new_row)
            events += job_events
        batch = db.get(BatchRow, batch_id)
        assert batch is not None
        events += self._batch_and_session_events(db, batch)
        return [self._job(db, r) for r in new_rows], events

    def _new_attempt(
        self, db: Db, row: JobRow, options: dict[str, Any] | None = None
    ) -> tuple[JobRow, list[tuple[EventType, dict[str, Any]]]]:
        """Queue a copy of ``row``: a retry (no new options) supersedes it and counts as the
        same image of the batch; a derivation (new options) is one more job in the batch."""
        batch = db.get(BatchRow, row.batch_id)
        assert batch is not None
        now = self._now()
        retry = options is None
        if retry:
            batch.count(row.status, -1)
            row.superseded = True
        else:
            batch.total_jobs += 1
        batch.count("pending", +1)
        new_row = JobRow(
            id=new_id(),
            batch_id=row.batch_id,
            file_name=row.file_name,
            file_size=row.file_size,
            content_hash=row.content_hash,
            media_type=row.media_type,
            width=row.width,
            height=row.height,
            status="pending",
            progress=0.0,
            priority=row.priority,
            queue_order=self._next_queue_order(db),
            attempt=row.attempt + 1 if retry else 1,
            retried_from=row.id if retry else None,
            superseded=False,
            options=row.options if options is None else options,
            created_at=now,
            queued_at=now,
        )
        db.add(new_row)
        batch.end_time = None
        batch.refresh_status()
        session = db.get(SessionRow, batch.session_id)
        if session is not None:
            session.last_activity_at = now
        db.flush()
        return new_row, [
            ("job.updated", {"job": self._job(db, row).model_dump(mode="json")}),
            ("job.updated", {"job": self._job(db, new_row).model_dump(mode="json")}),
        ]

    def _job(self, db: Db, row: JobRow, session_id: str | None = None) -> Job:
        if session_id is None:
            batch = db.get(BatchRow, row.batch_id)
            session_id = batch.session_id if batch else ""
        return job_snapshot(row, session_id, self._live.get(row.id), self.clock)

    def _batch(self, db: Db, row: BatchRow, *, with_eta: bool = True) -> Batch:
        running = [live for live in list(self._live.values()) if live.batch_id == row.id]
        eta = self._queue_eta(db, [row.id], running, row.pending_jobs) if with_eta else None
        if eta is None and with_eta and row.status not in TERMINAL:
            eta = 0.0
        return batch_snapshot(row, running, eta, self._now())

    def _queue_eta(
        self, db: Db, batch_ids: list[str], running: list[Live], pending: int
    ) -> float | None:
        """Seconds until the last job of these batches should finish: the work queued up to
        and including it, plus what running jobs have left, shared by the concurrent slots."""
        if pending == 0 and not running:
            return None
        slots = max(1, self.settings.max_concurrent_jobs)
        running_left = [live_remaining(live, self.clock) for live in list(self._live.values())]
        last = db.execute(
            select(JobRow.priority, JobRow.queue_order)
            .where(JobRow.batch_id.in_(batch_ids), JobRow.status == "pending")
            .order_by(JobRow.priority, JobRow.queue_order.desc())
            .limit(1)
        ).first()
        ahead = 0
        if last is not None:
            priority, order = last
            ahead = (
                db.scalar(
                    select(func.count()).where(
                        JobRow.status == "pending",
                        or_(
                            JobRow.priority > priority,
                            (JobRow.priority == priority) & (JobRow.queue_order <= order),
                        ),
                    )
                )
                or 0
            )
        queued = ahead * self.clock.job_seconds(0)
        own_left = max((live_remaining(live, self.clock) for live in running), default=0.0)
        return max(own_left, (sum(running_left) + queued) / slots)

    def _session(self, db: Db, row: SessionRow, known: Batch | None = None) -> Session:
        """The session's totals; its ETA is computed once for all its batches (a session of
        a hundred small uploads must not cost a hundred ETA queries per event), and not at
        all when its only batch is ``known`` already."""
        batches = db.scalars(
            select(BatchRow).where(BatchRow.session_id == row.id).order_by(BatchRow.created_at)
        ).all()
        ids = [b.id for b in batches]
        if known is not None and ids == [known.id]:
            busy = known.counts.pending or known.counts.processing
            eta = known.estimated_time_remaining if busy else None
        else:
            running = [live for live in list(self._live.values()) if live.batch_id in ids]
            eta = self._queue_eta(db, ids, running, sum(b.pending_jobs for b in batches))
        snapshots = [self._batch(db, b, with_eta=False) for b in batches]
        return session_snapshot(row, snapshots, eta, self._now())

    def _batch_and_session_events(
        self, db: Db, batch: BatchRow
    ) -> list[tuple[EventType, dict[str, Any]]]:
        session = db.get(SessionRow, batch.session_id)
        snapshot = self._batch(db, batch)
        events: list[tuple[EventType, dict[str, Any]]] = [
            ("batch.updated", {"batch": snapshot.model_dump(mode="json")})
        ]
        if session is not None:
            summary = self._session(db, session, known=snapshot)
            events.append(("session.updated", {"session": summary.model_dump(mode="json")}))
        return events

    def _completion_notices(
        self, db: Db, batch: BatchRow
    ) -> list[tuple[EventType, dict[str, Any]]]:
        """A batch that just ended gets a summary; so does its session when it ended too."""
        if batch.status not in TERMINAL or batch.total_jobs == 0:
            return []
        parts = [
            f"{n} {label}"
            for n, label in (
                (batch.completed_jobs, "done"),
                (batch.failed_jobs, "failed"),
                (batch.cancelled_jobs, "cancelled"),
            )
            if n
        ]
        kind = "success" if batch.failed_jobs == 0 and batch.completed_jobs else "warning"
        if batch.completed_jobs == 0 and batch.failed_jobs:
            kind = "error"
        events = [
            _notice(
                kind,
                f"Batch finished: {batch.name}",
                ", ".join(parts),
                batch_id=batch.id,
                session_id=batch.session_id,
            )
        ]
        session = db.get(SessionRow, batch.session_id)
        if session is not None:
            summary = self._session(db, session)
            if summary.status in TERMINAL and len(summary.batch_ids) > 1:
                c = summary.counts
                events.append(
                    _notice(
                        "info",
                        f"Session complete: {session.name}",
                        f"{len(summary.batch_ids)} batches, {c.completed} done, {c.failed} failed, "
                        f"{c.cancelled} cancelled",
                        session_id=session.id,
                    )
                )
        return events

    def _publish_all(self, events: Sequence[tuple[EventType, dict[str, Any]]]) -> None:
        for event_type, data in events:
            self.bus.publish(event_type, data)

    def _publish_throttled(self, key: str, data: dict[str, Any]) -> None:
        self.bus.publish("job.progress", data)


def _zero_counts() -> dict[str, int]:
    return {
        f"{name}_jobs": 0
        for name in ("total", "pending", "processing", "completed", "failed", "cancelled")
    }


def _auto_name(count: int, now: datetime) -> str:
    noun = "image" if count == 1 else "images"
    return f"{count} {noun} · {now.astimezone():%H:%M}"


def _notice(
    kind: str, title: str, body: str, **ids: str | None
) -> tuple[EventType, dict[str, Any]]:
    return ("notification", {"kind": kind, "title": title, "body": body, **ids})


def _extension(fmt: str) -> str:
    try:
        return OutputFormat(fmt).extension
    except ValueError:
        return ".png"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
