"""Reading jobs, batches and sessions: lookups, filtered lists, the live snapshot, stats and
analytics."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select

from .analytics import Analytics, report, window_start
from .core import ServiceCore
from .eta import accuracy
from .metrics import StoreMetrics, read_metrics
from .schemas import ActiveSnapshot, Batch, Job, Session, Stats
from .states import ACTIVE, STATUSES, TERMINAL, NotFound
from .tables import BatchRow, JobRow, SessionRow


class Queries:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    def get_job(self, job_id: str) -> Job:
        with self._core._transactions() as db:
            return self._core._job(db, self._core._get_job(db, job_id))

    def job_files(self, job_id: str) -> tuple[str, str | None]:
        """The storage keys of the original and (when completed) the result, derived by the
        store from the row's hash and id (a stored path string is never trusted)."""
        with self._core._transactions() as db:
            row = self._core._get_job(db, job_id)
            done = row.status == "completed"
            result = self._core.files.result_file(row.id, row.result_format) if done else None
            return self._core.files.original_key(row.content_hash), result

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
        with self._core._transactions() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = db.scalars(
                query.order_by(JobRow.created_at.desc(), JobRow.queue_order.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return self._core._jobs(db, rows, lambda _: None), total

    def get_batch(self, batch_id: str) -> Batch:
        with self._core._transactions() as db:
            return self._core._batch(db, self._core._get_batch(db, batch_id))

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
        with self._core._transactions() as db:
            total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = db.scalars(
                query.order_by(BatchRow.created_at.desc()).limit(limit).offset(offset)
            ).all()
            running = self._core._running(db)
            return [self._core._batch(db, row, running) for row in rows], total

    def get_session(self, session_id: str) -> Session:
        with self._core._transactions() as db:
            row = db.get(SessionRow, session_id)
            if row is None:
                raise NotFound("session", session_id)
            return self._core._session(db, row)

    def list_sessions(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Session], int]:
        with self._core._transactions() as db:
            total = db.scalar(select(func.count()).select_from(SessionRow)) or 0
            rows = db.scalars(
                select(SessionRow)
                .order_by(SessionRow.last_activity_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [self._core._session(db, row) for row in rows], total

    def active_snapshot(self, recent_jobs: int = 500) -> ActiveSnapshot:
        """What a client needs to draw the live queue: active jobs and the most recently
        ended ones, their batches and sessions, and the bus seq it is consistent with.

        The seq is read first and no lock is held: an event published meanwhile is replayed
        after the snapshot and applying it twice is harmless (events carry whole rows)."""
        seq = self._core.bus.last_seq
        recent_cutoff = self._core._now() - self._core.settings.auto_group_time_window
        with self._core._transactions() as db:
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
            sessions = [db.get(SessionRow, sid) for sid in {b.session_id for b in batches}]
            batch_sessions = {b.id: b.session_id for b in batches}
            running = self._core._running(db)
            return ActiveSnapshot(
                seq=seq,
                jobs=self._core._jobs(db, jobs, lambda job: batch_sessions.get(job.batch_id)),
                batches=[self._core._batch(db, b, running) for b in batches],
                sessions=[self._core._session(db, s) for s in sessions if s is not None],
                notifications=[
                    {"seq": event.seq, **event.data}
                    for event in self._core.bus.recent_notifications()
                ],
                health={"storage": self._core.storage_gate.state.as_json()},
                queue=self._core._queue(db),
            )

    def stats(self) -> Stats:
        with self._core._transactions() as db:
            by_status = dict(
                db.execute(
                    select(JobRow.status, func.count())
                    .where(JobRow.superseded.is_(False))
                    .group_by(JobRow.status)
                ).all()
            )
            hour_ago = self._core._now() - timedelta(hours=1)
            done_last_hour = db.scalar(
                select(func.count()).where(
                    JobRow.status == "completed", JobRow.end_time >= hour_ago
                )
            )
            return Stats(
                jobs={s: int(by_status.get(s, 0)) for s in STATUSES},
                batches=db.scalar(select(func.count()).select_from(BatchRow)) or 0,
                sessions=db.scalar(select(func.count()).select_from(SessionRow)) or 0,
                completed_last_hour=done_last_hour or 0,
                expected_seconds_per_image=round(self._core.clock.job_seconds(0), 2),
                max_concurrent_jobs=self._core.settings.max_concurrent_jobs,
                eta_accuracy=accuracy.recent(db),
            )

    def analytics(self, since: str | None = None) -> Analytics:
        """What happened from ``since`` (a time or a span back such as "24h"; by default the
        last 24 hours) to now. Raises ``analytics.InvalidWindow`` for a ``since`` it cannot
        read, in the future or too far back."""
        now = self._core._now()
        start = window_start(since, now)
        with self._core._transactions() as db:
            return report(db, start, now)

    def metrics(self) -> StoreMetrics:
        """The totals and histograms every process sharing the database reports alike."""
        with self._core._transactions() as db:
            return read_metrics(db)

    def events_published(self) -> dict[str, int]:
        """Events this process published, by type."""
        return self._core._publisher.published()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
