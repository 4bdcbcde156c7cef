"""What the service's parts share: the database, files, bus and clock, the runs this process
holds, and turning rows into snapshots and events.

Memory only caches. ``_live`` holds the progress of the runs this process claimed, between
the database writes at stage boundaries; whether a run still counts is always decided by the
database (its ``dispatch_id`` column), never by this cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from ..dependencies import Dependencies, DependencyState
from ..storage.files import FileStore
from ..workers.base import RunEnd, chunk_size
from . import masks, notices, outbox
from .bus.base import BusUnavailable, EventBus, Published
from .bus.throttle import ProgressThrottle
from .eta import queue_wait
from .eta.clock import StageClock
from .eta.timings import TimingStore
from .outages import StorageGate
from .publishing import Publisher
from .rows import process_identity
from .schemas import Batch, Counts, Job, Queue, Session
from .snapshots import (
    Live,
    batch_snapshot,
    job_snapshot,
    model_of,
    session_snapshot,
)
from .states import ACTIVE, STATUSES, TERMINAL, NotFound
from .tables import QUEUE, BatchRow, JobRow, QueueRow, SessionRow
from .times import utcnow

log = logging.getLogger(__name__)


PROGRESS_BATCHES = 50
"""``publish_progress`` publishes at most this many batches a round (each costs an ETA):
the oldest, which run first; the others move at their own events, and the UI draws every
bar on between events."""


class ServiceCore:
    """State and helpers shared by the store's parts (``commands``, ``runs``, ``pauses``,
    ``queries``), which each hold it as ``_core``. Thread-safe: every change is decided by
    the database; ``_live`` has its own lock."""

    def __init__(
        self,
        *,
        transactions: sessionmaker[Db],
        files: FileStore,
        bus: EventBus,
        settings: Settings,
        clock: StageClock | None = None,
        now: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        self._transactions = transactions
        self.files = files
        self.bus = bus
        self.dependencies = dependencies or Dependencies()
        """What this process knows of its database, Redis and storage (logs, health)."""
        self._publisher = Publisher(bus, self.dependencies)
        self.settings = settings
        self.clock = clock or StageClock()
        self._now = now
        self.owner = owner or process_identity()
        self._live: dict[str, Live] = {}
        self._shown: dict[str, tuple[int, float]] = {}
        """Batch and session percent last shown, by id, with the job count it was for."""
        self._live_lock = threading.Lock()
        self._throttle = ProgressThrottle(
            self._publish_throttled, settings.progress_update_interval.total_seconds()
        )
        self._timings = TimingStore(transactions)
        self.clock.load(self._timings.load())
        self.clock.load_models(self._timings.load_models())
        self.storage_gate = StorageGate(files.storage, self._announce_storage, now, bus.resync)
        """Whether results can be written; dispatch waits while they cannot."""
        self._unapplied: list[RunEnd] = []
        """Final reports the database could not take (gone, or its disk full), in order,
        applied again each scheduler round so no run's end is lost or half-written."""
        self._cancel_running: Callable[[str], None] = lambda job_id: None
        self._wake: Callable[[], None] = lambda: None
        self._runs_elsewhere = False

    def attach(
        self,
        *,
        cancel_running: Callable[[str], None],
        wake: Callable[[], None],
        runs_elsewhere: bool = False,
    ) -> None:
        """Connect the executor's cancel and the scheduler's wake-up. ``runs_elsewhere``:
        the executor's workers take runs over and report to the store themselves (Celery),
        so this process holds no run after handing it out and a cancel goes to them all."""
        self._cancel_running = cancel_running
        self._wake = wake
        self._runs_elsewhere = runs_elsewhere

    @property
    def _clip_chunk(self) -> Callable[[int], int] | None:
        """The most frames of a clip of n frames one slot runs: Celery workers share a long
        clip out in chunks (``workers.chunks``); None: a local worker runs it whole."""
        if not self._runs_elsewhere:
            return None
        setting = self.settings.clip_chunk_frames
        return lambda frames: chunk_size(frames, setting)

    @property
    def database(self) -> Engine:
        engine: Engine = self._transactions.kw["bind"]
        return engine

    def close(self) -> None:
        """Release the database connections and the bus."""
        self._publisher.close()
        self.bus.close()
        self.database.dispose()

    def refresh_timings(self) -> None:
        """Adopt what other processes have learned about stage timings meanwhile."""
        self.clock.load(self._timings.load())
        self.clock.load_models(self._timings.load_models())

    # ------------------------------------------------------------------ runs held here

    def _hold(self, job_id: str, live: Live) -> None:
        with self._live_lock:
            self._live[job_id] = live

    def _drop(self, job_id: str, dispatch_id: str | None = None) -> Live | None:
        """Forget a run held here (only that dispatch, when given)."""
        with self._live_lock:
            live = self._live.get(job_id)
            if live is None or (dispatch_id is not None and live.dispatch_id != dispatch_id):
                return None
            del self._live[job_id]
        self._throttle.discard(f"job:{job_id}")
        return live

    def _held(self) -> dict[str, Live]:
        with self._live_lock:
            return dict(self._live)

    def _live_of(self, row: JobRow) -> Live | None:
        live = self._live.get(row.id)
        return live if live is not None and live.dispatch_id == row.dispatch_id else None

    # ----------------------------------------------------------------------- lookups

    def _get_job(self, db: Db, job_id: str) -> JobRow:
        row = db.get(JobRow, job_id, populate_existing=True)
        if row is None:
            raise NotFound("job", job_id)
        return row

    def _get_batch(self, db: Db, batch_id: str) -> BatchRow:
        row = db.get(BatchRow, batch_id, populate_existing=True)
        if row is None:
            raise NotFound("batch", batch_id)
        return row

    # --------------------------------------------------------------------- snapshots

    def _jobs(
        self, db: Db, rows: Sequence[JobRow], session_of: Callable[[JobRow], str | None]
    ) -> list[Job]:
        """``_job`` of each row, with one query for their kept masks, not one per row (a
        snapshot or a page holds up to thousands of pending jobs)."""
        kept = masks.cached(db, [row.content_hash for row in rows if row.status == "pending"])
        return [self._job(db, row, session_of(row), kept=row.content_hash in kept) for row in rows]

    def _job(
        self, db: Db, row: JobRow, session_id: str | None = None, *, kept: bool | None = None
    ) -> Job:
        """The job as clients see it; ``kept``: whether its original has a kept mask, when the
        caller knows (else read here, for a pending job)."""
        paused = False
        if session_id is None or row.status == "pending":
            batch = db.get(BatchRow, row.batch_id)
            if session_id is None:
                session_id = batch.session_id if batch else ""
            if row.status == "pending":
                paused = self._queue_paused(db) or bool(batch and batch.paused)
        live = self._live_of(row)
        if kept is None:
            kept = row.status == "pending" and bool(masks.cached(db, [row.content_hash]))
        return job_snapshot(
            row, session_id, live, self.clock, self._now(), paused=paused, mask_kept=kept
        )

    @staticmethod
    def _queue_paused(db: Db) -> bool:
        """Whether the whole queue is paused (read once per transaction)."""
        queue = db.get(QueueRow, QUEUE)
        return bool(queue and queue.paused)

    def _queue(self, db: Db) -> Queue:
        """The queue's state (``pauses``) with its jobs by status, from the batch counters."""
        row = db.get(QueueRow, QUEUE, populate_existing=True)
        sums = db.execute(
            select(*(func.coalesce(func.sum(getattr(BatchRow, f"{s}_jobs")), 0) for s in STATUSES))
        ).one()
        paused_batches = db.scalars(
            select(BatchRow.id)
            .where(BatchRow.paused, BatchRow.status.in_(ACTIVE))
            .order_by(BatchRow.created_at)
        ).all()
        return Queue(
            paused=bool(row and row.paused),
            paused_by=row.paused_by if row else None,
            paused_at=row.paused_at if row else None,
            paused_batches=list(paused_batches),
            counts=Counts(total=sum(sums), **dict(zip(STATUSES, sums, strict=True))),
        )

    def _running(self, db: Db) -> list[Live]:
        """Every run in progress, on any process: this process's from memory, the others'
        from their last stage written to the database."""
        held = {live.dispatch_id: live for live in self._held().values()}
        rows = db.execute(
            select(
                JobRow.dispatch_id,
                JobRow.batch_id,
                JobRow.width,
                JobRow.height,
                JobRow.stage,
                JobRow.progress,
                JobRow.options,
                JobRow.frames,
            ).where(JobRow.status == "processing")
        ).all()
        running = []
        for dispatch_id, batch_id, width, height, stage, progress, options, frames in rows:
            live = held.get(dispatch_id) if dispatch_id else None
            if live is None:
                live = Live.from_row(
                    dispatch_id or "",
                    batch_id,
                    width,
                    height,
                    stage,
                    progress,
                    model_of(options),
                    frames,
                )
            running.append(live)
        return running

    def _batch(self, db: Db, row: BatchRow, running: list[Live] | None = None) -> Batch:
        running = self._running(db) if running is None else running
        own = [live for live in running if live.batch_id == row.id]
        eta = queue_wait.queue_eta(
            db, [row], own, running, self.clock, self.settings.max_concurrent_jobs,
            self._clip_chunk,
        )  # fmt: skip
        if eta is None and row.status not in TERMINAL:
            eta = 0.0
        if row.start_time is None:
            eta = queue_wait.warming(eta, row.active_since, running, self.clock, self._now())
        paused = self._queue_paused(db)
        snapshot = batch_snapshot(row, own, eta, self._now(), self.clock, queue_paused=paused)
        return snapshot.model_copy(
            update={"progress": self._never_back(row.id, row.total_jobs, snapshot)}
        )

    def _session(
        self,
        db: Db,
        row: SessionRow,
        known: Batch | None = None,
        running: list[Live] | None = None,
    ) -> Session:
        """The session's totals; its ETA is computed once for all its batches (a session of
        a hundred small uploads must not cost a hundred ETA queries per event), and not at
        all when its only batch is ``known`` already."""
        batches = db.scalars(
            select(BatchRow)
            .where(BatchRow.session_id == row.id)
            .order_by(BatchRow.created_at)
            .execution_options(populate_existing=True)
        ).all()
        ids = [b.id for b in batches]
        running = self._running(db) if running is None else running
        if known is not None and ids == [known.id]:
            busy = known.counts.pending or known.counts.processing
            eta = known.estimated_time_remaining if busy else None
        else:
            own = [live for live in running if live.batch_id in ids]
            eta = queue_wait.queue_eta(
                db, list(batches), own, running, self.clock, self.settings.max_concurrent_jobs,
                self._clip_chunk,
            )  # fmt: skip
        since = min(
            (b.active_since for b in batches if b.status in ACTIVE and b.active_since),
            default=None,
        )
        if known is None and all(b.start_time is None for b in batches):
            eta = queue_wait.warming(eta, since, running, self.clock, self._now())
        now = self._now()
        paused = self._queue_paused(db)
        snapshots = [
            batch_snapshot(
                b,
                [live for live in running if live.batch_id == b.id],
                None,
                now,
                self.clock,
                queue_paused=paused,
            )
            for b in batches
        ]
        summary = session_snapshot(row, snapshots, eta, now, since)
        return summary.model_copy(
            update={"progress": self._never_back(row.id, summary.counts.total, summary)}
        )

    def _never_back(self, key: str, total: int, item: Batch | Session) -> float:
        """The percent to show: never below what this process showed while the same jobs
        ran. An ETA that grows (a run slower than expected, learned timings that reprice the
        work) could move the time share back; new jobs (``total`` changed: an upload into
        the batch, a derived job) may, since there is more to do. A retry replaces a job
        and keeps the floor."""
        with self._live_lock:
            if item.status in TERMINAL:
                self._shown.pop(key, None)
                return item.progress
            shown_total, shown = self._shown.get(key, (total, 0.0))
            progress = max(shown, item.progress) if shown_total == total else item.progress
            self._shown[key] = (total, progress)
            return progress

    # ------------------------------------------------------------------------ events

    def _batch_and_session_events(self, db: Db, batch_id: str) -> list[Published]:
        batch = self._get_batch(db, batch_id)
        running = self._running(db)
        snapshot = self._batch(db, batch, running)
        events = [notices.batch_updated(snapshot)]
        session = db.get(SessionRow, batch.session_id)
        if session is not None:
            summary = self._session(db, session, known=snapshot, running=running)
            events.append(notices.session_updated(summary))
        return events

    def publish_progress(self) -> int:
        """Publish the snapshots of the active batches (the ``PROGRESS_BATCHES`` oldest) and
        of their sessions: their percent follows time, so it moves between their lifecycle
        events (a queue wait, a warm-up, a long run) and every client of the stream sees it
        move. Returns how many batches."""
        with self._transactions() as db:
            batches = db.scalars(
                select(BatchRow)
                .where(BatchRow.status.in_(ACTIVE), BatchRow.total_jobs > 0)
                .order_by(BatchRow.created_at)
                .limit(PROGRESS_BATCHES)
            ).all()
            running = self._running(db)
            events: list[Published] = []
            for session_id in dict.fromkeys(b.session_id for b in batches):
                own = [b for b in batches if b.session_id == session_id]
                snapshots = [self._batch(db, b, running) for b in own]
                events += [notices.batch_updated(b) for b in snapshots]
                session = db.get(SessionRow, session_id)
                if session is not None:
                    known = snapshots[0] if len(snapshots) == 1 else None
                    summary = self._session(db, session, known=known, running=running)
                    events.append(notices.session_updated(summary))
        self._publish_all(events)
        return len(batches)

    def _completion_notices(self, db: Db, batch_id: str) -> list[Published]:
        """A batch that just ended gets a summary (and its webhooks, queued in this
        transaction); so does its session when it ended too."""
        batch = self._get_batch(db, batch_id)
        if batch.status not in TERMINAL or batch.total_jobs == 0:
            return []
        outbox.record(
            db,
            outbox.BATCH_ENDED[batch.status],
            batch.id,
            lambda: self._batch(db, batch).model_dump(mode="json"),
            batch.end_time or self._now(),
        )
        events = [notices.batch_finished(batch)]
        session = db.get(SessionRow, batch.session_id)
        if session is not None:
            summary = self._session(db, session)
            if summary.status in TERMINAL and len(summary.batch_ids) > 1:
                events.append(notices.session_finished(summary))
        return events

    def _ended_events(self, db: Db, job_id: str, *, batch_events: bool = True) -> list[Published]:
        """What to publish after a job reached a terminal status in this transaction; its
        webhooks are queued in the same transaction."""
        row = self._get_job(db, job_id)
        job = self._job(db, row)
        outbox.record(
            db,
            outbox.JOB_ENDED[row.status],
            row.batch_id,
            lambda: job.model_dump(mode="json"),
            row.end_time or self._now(),
        )
        events = [notices.job_updated(job)]
        if row.status == "failed":
            events.append(
                notices.job_failed(row.id, row.batch_id, row.file_name, row.error_message)
            )
        if batch_events:
            events += self._batch_and_session_events(db, row.batch_id)
            events += self._completion_notices(db, row.batch_id)
        return events

    def _publish_all(self, events: Sequence[Published]) -> None:
        """Tell subscribers; never fails (``publishing``): the change is already committed."""
        self._publisher.publish_many(events)

    def _announce_storage(self, state: DependencyState) -> None:
        """Raises when the event was not published, so the gate keeps it and resyncs open
        pages meanwhile (on SQLite a seq is a write, and its disk may be the full one)."""
        self.dependencies.observe("storage", None if state.ok else state.error or "failing")
        if not self._publisher.publish_many([notices.health_updated("storage", state)]):
            raise BusUnavailable("events", "the storage state could not be published yet")

    def _publish_throttled(self, key: str, data: dict[str, object]) -> None:
        self._publisher.publish_many([("job.progress", dict(data))])
