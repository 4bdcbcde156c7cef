"""Pause and resume: the whole queue or one batch, held as state in the store.

The claim reads it (``tables.claimable``: ``WHERE NOT paused``), so no process can start a
paused job and no message is needed: every web process and Celery worker honours it, and it
survives restarts. Paused jobs stay pending; running ones finish, unless the queue is paused
with ``cancel_running``: then they go back to the queue uncounted, as on a graceful stop
(``Runs.release_all``), wherever they run (the holder sees its dispatch gone at its next
lease renewal; remote workers also get the cancel broadcast).

A process whose bus shares nothing (in-memory) hears of a change made elsewhere (another web
process on the database, the CLI) from ``queue_state.version`` each scheduler round, and tells
its own subscribers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session as Db

from . import notices
from .bus.base import Published
from .core import ServiceCore
from .runs import Runs
from .schemas import Batch, Queue
from .states import ACTIVE
from .tables import QUEUE, BatchRow, JobRow, QueueRow


class Pauses:
    def __init__(self, core: ServiceCore, runs: Runs) -> None:
        self._core = core
        self._runs = runs
        self._pause_version: int | None = None
        """The pause state's version this process last saw."""

    def queue(self) -> Queue:
        """The queue's state: paused or not, by whom and since when, jobs by status."""
        with self._core._transactions() as db:
            return self._core._queue(db)

    def pause_queue(self, by: str, *, cancel_running: bool = False) -> Queue:
        """Start no pending job anywhere until ``resume_queue``; running jobs finish, or
        with ``cancel_running`` go back to the queue uncounted. ``by`` says who asked."""
        now = self._core._now()
        with self._core._transactions.begin() as db:
            version = self._bump(db, paused=True, paused_by=by[:200], paused_at=now)
            running = db.execute(
                select(JobRow.id, JobRow.dispatch_id).where(JobRow.status == "processing")
            ).all()
            events = self._pause_events(db)
        self._pause_version = version
        self._core._publish_all(events)
        if cancel_running:
            for job_id, dispatch_id in running:
                self._stop_for_pause(job_id, dispatch_id or "")
        return self.queue()

    def resume_queue(self) -> Queue:
        """Let claims start pending jobs again (from now on, at once)."""
        now = self._core._now()
        with self._core._transactions.begin() as db:
            queue = db.get(QueueRow, QUEUE)
            if queue is not None and queue.paused and queue.paused_at is not None:
                self._skip_held_time(db, queue.paused_at, now, select(BatchRow))
            version = self._bump(db, paused=False, paused_by=None, paused_at=None)
            events = self._pause_events(db)
        self._pause_version = version
        self._core._publish_all(events)
        self._core._wake()
        return self.queue()

    def pause_batch(self, batch_id: str) -> Batch:
        """Start none of the batch's pending jobs until ``resume_batch``; running ones
        finish."""
        return self._set_batch(batch_id, paused=True)

    def resume_batch(self, batch_id: str) -> Batch:
        return self._set_batch(batch_id, paused=False)

    def follow_pauses(self) -> None:
        """A scheduler round: when a pause or resume was made by another process and this
        bus does not carry that process's events, publish the state here."""
        with self._core._transactions() as db:
            version = db.scalar(select(QueueRow.version).where(QueueRow.name == QUEUE))
            if version is None or version == self._pause_version:
                return
            first, self._pause_version = self._pause_version is None, version
            if first or self._core.bus.shared:
                return
            events = self._pause_events(db)
        self._core._publish_all(events)

    # ---------------------------------------------------------------------- internals

    def _set_batch(self, batch_id: str, *, paused: bool) -> Batch:
        now = self._core._now()
        with self._core._transactions.begin() as db:
            row = self._core._get_batch(db, batch_id)
            held_since = row.held_since if row.paused and not paused else None
            if paused and not row.paused:
                row.held_since = now
            row.paused = paused
            if not paused:
                row.held_since = None
            if held_since is not None:  # a resume: the time it was held (and only it) skipped
                queue = db.get(QueueRow, QUEUE)
                until = queue.paused_at if queue and queue.paused and queue.paused_at else now
                one = select(BatchRow).where(BatchRow.id == batch_id)
                self._skip_held_time(db, held_since, until, one)
            db.flush()
            version = self._bump(db)
            batch_events = self._core._batch_and_session_events(db, batch_id)  # the batch first
            events = [notices.queue_updated(self._core._queue(db)), *batch_events]
        self._pause_version = version
        self._core._publish_all(events)
        if not paused:
            self._core._wake()
        return Batch.model_validate(batch_events[0][1]["batch"])

    def _skip_held_time(
        self, db: Db, start: datetime, end: datetime, batches: Select[BatchRow]
    ) -> None:
        """Move the progress clocks of the active ``batches`` on by the time a pause held
        them (from ``start``, or their clock's own start, to ``end``), so their percent goes
        on after a resume from the share it had, not as though the pause were work. A batch
        paused itself is held until its own resume, and counts only up to its pause."""
        for row in db.scalars(batches.where(BatchRow.status.in_(ACTIVE))):
            if row.active_since is None:
                continue
            until = row.held_since if row.paused and row.held_since is not None else end
            held = until - max(start, row.active_since)
            if held > timedelta(0):
                row.active_since += held
        db.flush()

    def _bump(self, db: Db, **values: object) -> int:
        """Change the queue's row (``values``) and its version, which it returns (this
        process has seen it once the transaction commits): a pause or resume happened."""
        version: int = db.execute(
            update(QueueRow)
            .where(QueueRow.name == QUEUE)
            .values(version=QueueRow.version + 1, **values)
            .returning(QueueRow.version),
            execution_options={"synchronize_session": False},
        ).scalar_one()
        return version

    def _pause_events(self, db: Db) -> list[Published]:
        """The queue's state, then every unfinished batch and its session (their ETAs wait
        on the pause, or count down again)."""
        events = [notices.queue_updated(self._core._queue(db))]
        ids = db.scalars(select(BatchRow.id).where(BatchRow.status.in_(ACTIVE))).all()
        for batch_id in ids:
            events += self._core._batch_and_session_events(db, batch_id)
        return events

    def _stop_for_pause(self, job_id: str, dispatch_id: str) -> None:
        """A running job back to the queue, uncounted, as a graceful stop puts it; its run
        is stopped here (held here, or by remote workers) or by its holder, which finds
        the dispatch gone when it renews the lease."""
        held = self._core._drop(job_id, dispatch_id) is not None
        if self._runs.requeue(job_id, dispatch_id, counted=False) and (
            held or self._core._runs_elsewhere
        ):
            self._core._cancel_running(job_id)
