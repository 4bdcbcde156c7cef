"""What workers tell the job system, and the runs' lifetime: claim, progress, the end of a
run, leases and recovery.

A claim is one statement that takes the best pending job (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite runs the statement under its single writer lock) and gives it a fresh
dispatch id and a lease. Every later report is applied only while the job still runs that
dispatch, so a late, duplicated or stale report changes nothing, whichever process gets it.

How a run ends decides what happens to its job:
- finished or failed (the image's fault): the job ends so;
- stopped without the user asking (a graceful shutdown): the job goes back to the queue, as
  it was, and nothing is counted against it;
- lost (its worker died, hung past its deadline, or its process stopped renewing the lease;
  or the store failed under it: a full or failing disk, an S3 server that does not answer):
  the job goes back to the queue as its next attempt, until ``max_attempts`` runs
  were lost; then it fails with the reason, so an image that kills its worker cannot loop
  forever. A job cut short by a failing dependency also waits (``outage_backoff``) before
  it is claimed again, and a storage failure holds all dispatch (``outages.StorageGate``);
- never taken over (sent to Celery, but no worker took it within ``takeover_timeout``: the
  message died with its worker or the broker): back to the queue, uncounted, since it never ran.

Every run in progress has a live holder or a deadline: a run held here (local workers) or by
a Celery worker has a lease its holder renews; a run sent to Celery has, until a worker takes
it over, only its take-over deadline, which nobody renews.

A report waits while the database does not answer (an outage under a run is not the image's
fault). A final report the database answers but cannot take (its disk is full) is kept and
applied again each scheduler round: the change is one transaction, so nothing is half-written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.orm import Session as Db

from ..config import ERROR_MESSAGE_CHARS
from ..dependencies import first_line
from ..engine.options import OutputFormat, RemoveOptions
from ..engine.stages import SKIPPED_ON_REUSE, overall_percent, parse_label
from ..engine.video.probe import may_be_clip
from ..storage.files import background_hash
from ..workers.base import (
    Calibration,
    Failed,
    Finished,
    Freed,
    Lost,
    Report,
    RunEnd,
    StageProgress,
    Started,
    Stopped,
    WorkItem,
)
from . import clip_progress, masks, metrics, notices, transitions
from .bus.base import JobProgress, Published
from .core import ServiceCore
from .database import unreachable
from .eta import timings
from .rows import new_id
from .schemas import Job
from .snapshots import Live, live_remaining
from .states import JobStatus
from .tables import JobRow, claimable

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_LOCK = 0x62677265  # "bgre": PostgreSQL advisory lock serialising claims within slots


class Runs:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    # ------------------------------------------------------------------------ claims

    def claim_next(self, *, within: int | None = None) -> WorkItem | None:
        """Move the best pending job (highest priority, then first in line; none while the
        queue or its batch is paused) to processing,
        under a new dispatch id: held by this process under a lease, or, sent to remote
        workers, held by nobody until one takes it over by ``take_over``'s deadline. With
        ``within`` (worker slots shared by every dispatching process), only while fewer runs
        than that are processing anywhere: counting and claiming are one step, serialised
        across processes, so the cluster never runs more than its slots."""
        now = self._core._now()
        handed = self._core._runs_elsewhere
        held_until = (
            self._core.settings.takeover_timeout if handed else self._core.settings.lease_duration
        )
        dispatch_id = new_id()
        waited = or_(JobRow.not_before.is_(None), JobRow.not_before <= now)
        best = (
            select(JobRow.id)
            .where(JobRow.status == "pending", waited, *claimable())
            .order_by(JobRow.priority.desc(), JobRow.queue_order)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        conditions = [JobRow.id == best, JobRow.status == "pending"]
        with self._core._transactions.begin() as db:
            if within is not None:
                if db.get_bind().dialect.name == "postgresql":
                    db.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK)))
                running = (
                    select(func.count()).select_from(JobRow).where(JobRow.status == "processing")
                )
                conditions.append(running.scalar_subquery() < within)
            claimed = db.execute(
                update(JobRow)
                .where(*conditions)
                .values(
                    status="processing",
                    dispatch_id=dispatch_id,
                    lease_owner=None if handed else self._core.owner,
                    lease_until=now + held_until,
                    start_time=now,
                    stage=None,
                    progress=0.0,
                    worker=None,
                )
                .returning(JobRow.id),
                execution_options={"synchronize_session": False},
            ).scalar()
            if claimed is None:
                return None
            metrics.started(db, claimed)
            row = self._core._get_job(db, claimed)
            kept = bool(masks.cached(db, [row.content_hash]))
            live = Live.claimed(row, dispatch_id, mask_reused=kept)
            row.predicted_seconds = live.frames * self._core.clock.job_seconds(
                live.bucket, live.pixels, live.model, mask_reused=kept
            )
            transitions.shift_batch(db, row.batch_id, {"pending": -1, "processing": +1}, now)
            item = self._work_item(row, dispatch_id, row.predicted_seconds)
            events = [notices.job_updated(self._core._job(db, row))]
            events += self._core._batch_and_session_events(db, row.batch_id)
        if not handed:  # held once the claim is committed, never for one that failed to be
            self._core._hold(claimed, live)
        self._core._publish_all(events)
        return item

    def take_over(self, item: WorkItem, worker: str) -> bool:
        """A worker process (on any machine) starts ``item``: the run becomes this
        process's (its lease, its progress) if the job still waits for exactly this
        dispatch and no worker has started it yet. False for a stale or duplicate
        delivery: another dispatch won, the job ended or went back to the queue (no worker
        took it over in time), or a worker already took it (if that worker died, its
        expired lease or its death notice re-queues the job). One conditional UPDATE
        decides, so a take-over and a re-queue at its deadline cannot both win. Waits for a
        database that does not answer."""
        return self._until_database(lambda: self._take_over(item, worker))

    def _take_over(self, item: WorkItem, worker: str) -> bool:
        now = self._core._now()
        with self._core._transactions.begin() as db:
            taken = db.execute(
                update(JobRow)
                .where(
                    JobRow.id == item.job_id,
                    JobRow.dispatch_id == item.dispatch_id,
                    JobRow.status == "processing",
                    JobRow.worker.is_(None),
                )
                .values(
                    worker=worker[:100],
                    lease_owner=self._core.owner,
                    lease_until=now + self._core.settings.lease_duration,
                )
                .returning(JobRow.id),
                execution_options={"synchronize_session": False},
            ).scalar()
            if taken is None:
                return False
            row = self._core._get_job(db, item.job_id)
            live = Live.claimed(row, item.dispatch_id)
            job = self._core._job(db, row)
        self._core._hold(item.job_id, live)
        self._core._publish_all([notices.job_updated(job)])
        return True

    def dispatched(self, job_id: str, dispatch_id: str) -> WorkItem | None:
        """The run ``dispatch_id`` of ``job_id`` as the job's row makes it (its keys and
        options), while the job is processing under exactly this dispatch; None for a stale
        one. A Celery worker runs this, never what a task message claims."""
        with self._core._transactions.begin() as db:
            row = db.execute(
                select(JobRow).where(
                    JobRow.id == job_id,
                    JobRow.dispatch_id == dispatch_id,
                    JobRow.status == "processing",
                )
            ).scalar_one_or_none()
            if row is None:
                return None
            return self._work_item(row, dispatch_id, row.predicted_seconds or 0.0)

    def _work_item(self, row: JobRow, dispatch_id: str, predicted: float) -> WorkItem:
        """What a worker needs for one run: storage keys (derived from the row's hash and
        id, never a stored path) and the output options."""
        options = dict(row.options or {})
        background = background_hash(options.pop("background_image", None))
        extension = RemoveOptions.model_validate(options).format.extension
        return WorkItem(
            job_id=row.id,
            dispatch_id=dispatch_id,
            batch_id=row.batch_id,
            original_key=self._core.files.original_key(row.content_hash),
            result_key=self._core.files.result_key(row.id, extension),
            background_key=self._core.files.background_key(background) if background else None,
            options=options,
            deadline_s=self._deadline(predicted),
            clip=may_be_clip(row.media_type),
        )

    def _deadline(self, predicted: float) -> float:
        """Seconds a run may take before it counts as hung: generous, from what runs of this
        size take here."""
        expected = predicted * self._core.settings.run_timeout_factor
        return max(self._core.settings.run_timeout_min.total_seconds(), expected)

    # ----------------------------------------------------------------------- reports

    def handle(self, report: Report) -> None:
        """Apply a worker's report; one from a run that no longer holds its job is dropped.
        While the database does not answer, the report waits for it (so the run waits): an
        outage under a run is not the image's fault. If the run's lease lapses meanwhile,
        another process re-queues it as lost, and the report then changes nothing."""
        if isinstance(report, StageProgress | Started):
            try:
                if isinstance(report, StageProgress):
                    self._on_progress(report)
                else:
                    self._until_database(lambda: self._on_started(report))
            except OperationalError as exc:  # the next stage's write brings the row up to date
                log.warning("job %s: progress not saved (%s)", report.job_id, first_line(exc))
            return
        if isinstance(report, Calibration):
            self._core.clock.calibrate(report.pixels, report.timings)
            log.info("%s calibrated the estimates: %s", report.worker, report.timings)
            return
        if isinstance(report, Freed):
            self._core._wake()
            return
        if isinstance(report, Lost) and report.dependency == "storage":
            self._core.storage_gate.failed(report.reason)  # before any write: the disk may be full
        live = self._core._drop(report.job_id, report.dispatch_id)  # the run is over, whatever won
        try:
            self._apply_end(report, live)
        except OperationalError as exc:
            log.warning(
                "job %s: the database did not take the end of its run (%s); retrying",
                report.job_id,
                first_line(exc),
            )
            with self._core._live_lock:
                self._core._unapplied.append(report)

    def _apply_end(self, report: RunEnd, live: Live | None) -> None:
        if isinstance(report, Finished):
            self._on_finished(report, live)
        elif isinstance(report, Failed):
            values = {"error_code": report.code, "error_message": report.message}
            self._until_database(lambda: self._end_run(report, "failed", live, values))
        elif isinstance(report, Stopped):
            self._until_database(lambda: self._put_back(report.job_id, report.dispatch_id))
        else:
            self._until_database(
                lambda: self._lose(
                    report.job_id, report.dispatch_id, report.reason, report.dependency
                )
            )

    def _until_database(self, call: Callable[[], T]) -> T:
        """``call()`` (one or more transactions that may be replayed whole), retried until
        the database answers."""
        return self._core.dependencies.retry("database", call, unreachable)

    def retry_unapplied(self) -> int:
        """Apply again, in order, the ends of runs the database could not take; stops at the
        first it still refuses. Returns how many are still waiting."""
        while True:
            with self._core._live_lock:
                if not self._core._unapplied:
                    return 0
                report = self._core._unapplied[0]
            try:
                self._apply_end(report, None)
            except OperationalError:
                with self._core._live_lock:
                    return len(self._core._unapplied)
            with self._core._live_lock:
                self._core._unapplied.remove(report)
            log.info("job %s: the end of its run is recorded now", report.job_id)

    def _on_started(self, report: Started) -> None:
        with self._core._transactions.begin() as db:
            values = {"worker": report.worker[:100]}
            if not transitions.update_run(db, report.job_id, report.dispatch_id, values):
                return
            job = self._core._job(db, self._core._get_job(db, report.job_id))
        self._core._publish_all([notices.job_updated(job)])

    def _on_progress(self, report: StageProgress) -> None:
        live = self._core._live.get(report.job_id)
        if live is None or live.dispatch_id != report.dispatch_id:
            return
        if report.frames:  # a clip: percent by frames (``clip_progress``)
            stage_changed, percent = clip_progress.advance(live, report, time.monotonic())
        else:
            try:
                stage, reused = parse_label(report.stage)
            except ValueError:
                return
            stage_changed = stage != live.stage or (reused and not live.mask_reused)
            if reused or stage in SKIPPED_ON_REUSE:  # the run says which it is
                live.mask_reused = reused
            weights = self._core.clock.weights(
                live.bucket, live.pixels, live.model, mask_reused=live.mask_reused
            )
            percent = max(live.percent, overall_percent(stage, report.fraction, weights))
            live.stage, live.fraction, live.percent = stage, report.fraction, percent
        if not stage_changed:
            self._core._throttle.offer(
                f"job:{report.job_id}",
                notices.progress(
                    JobProgress(
                        id=report.job_id,
                        batch_id=live.batch_id,
                        progress=round(percent, 2),
                        stage=report.stage,
                        eta=round(live_remaining(live, self._core.clock), 2),
                        eta_at=time.time(),
                        sent_at=report.sent_at,
                    )
                ),
            )
            return

        # A stage boundary: persist it (renewing the lease) and send a full snapshot.
        def persist() -> Job | None:
            with self._core._transactions.begin() as db:
                values = {
                    "stage": report.stage,
                    "progress": percent,
                    "lease_until": self._core._now() + self._core.settings.lease_duration,
                }
                changed = transitions.update_run(db, report.job_id, report.dispatch_id, values)
                return (
                    self._core._job(db, self._core._get_job(db, report.job_id)) if changed else None
                )

        job = self._until_database(persist)
        if job is None:
            self._abandon(report.job_id, report.dispatch_id)
            return
        self._core._throttle.discard(f"job:{report.job_id}")
        self._core._publish_all([notices.job_updated(job)])

    def _on_finished(self, report: Finished, live: Live | None) -> None:
        if live is not None:
            normalized = self._core.clock.observe(
                live.bucket, report.timings, report.width * report.height, live.model
            )
            self._core._timings.observe(live.bucket, normalized, live.model)
        if not self._until_database(lambda: self._complete(report, live)):
            self._until_database(lambda: self._discard_orphan_result(report))
            self._until_database(lambda: self._orphan_mask(report))
        elif report.mask_key is not None and not report.mask_reused:
            self._until_database(
                lambda: masks.evict(
                    self._core._transactions, self._core.files, self._core.settings.mask_cache_bytes
                )
            )

    def _complete(self, report: Finished, live: Live | None) -> bool:
        # The format written, not the one asked: a clip and a photo asked for each other's
        # format are written in their own (``engine.video.formats``).
        extension = OutputFormat(report.format).extension
        return self._end_run(
            report,
            "completed",
            live,
            {
                "progress": 100.0,
                "stage": None,
                "result_path": self._core.files.result_key(report.job_id, extension),
                "result_width": report.width,
                "result_height": report.height,
                "result_format": report.format,
                "result_bytes": report.bytes,
                "result_model": report.model,
                "result_model_sha256": report.model_sha256,
            },
            stage_seconds=report.timings,
            also=lambda db, row: self._keep_mask(db, row, report),
        )

    def _keep_mask(self, db: Db, row: JobRow, report: Finished) -> None:
        """Record the mask the run stored or reused, in the transaction that completes its
        job (so retention, which deletes it with the original's last job, always knows it).
        A key of another shape is not recorded (nor ever deleted by one)."""
        if report.mask_key is None:
            return
        try:
            masks.record(
                db, report.mask_key, row.content_hash, report.mask_bytes, self._core._now()
            )
        except ValueError as exc:
            log.warning("job %s: mask %r not recorded (%s)", row.id, report.mask_key[:80], exc)

    def _end_run(
        self,
        report: Finished | Failed,
        status: JobStatus,
        live: Live | None,
        values: dict[str, Any],
        stage_seconds: dict[str, float] | None = None,
        also: Callable[[Db, JobRow], None] | None = None,
    ) -> bool:
        """End the job of this run as ``status`` (keeping its ``stage_seconds`` with it, and
        doing ``also`` in the same transaction); False when the run no longer held it."""
        now = self._core._now()
        with self._core._transactions.begin() as db:
            row = db.get(JobRow, report.job_id, populate_existing=True)
            if row is None:
                return False
            values = {"end_time": now, **transitions.NOT_RUNNING, **values}
            if "error_message" in values:
                # Workers name the stored file; people know it by the name they uploaded.
                stored = self._core.files.original_key(row.content_hash).rsplit("/", 1)[-1]
                values["error_message"] = values["error_message"].replace(stored, row.file_name)[
                    :ERROR_MESSAGE_CHARS
                ]
            if status != "completed" and live is not None:
                values["progress"] = max(row.progress, live.percent)
            left = transitions.move_counted(
                db,
                row,
                status,
                now,
                allowed=("processing",),
                dispatch_id=report.dispatch_id,
                values=values,
            )
            if left is None:
                return False
            if stage_seconds:
                timings.record_run(db, report.job_id, stage_seconds)
            if also is not None:
                also(db, row)
            events = self._core._ended_events(db, report.job_id)
        self._core._publish_all(events)
        self._core._wake()
        return True

    def _put_back(self, job_id: str, dispatch_id: str) -> None:
        """The run stopped without the user asking (a shutdown): back to the queue, as it
        was. A user's cancel has already ended the job, so then nothing changes here."""
        self.requeue(job_id, dispatch_id, counted=False)

    def _lose(self, job_id: str, dispatch_id: str, reason: str, dependency: str | None) -> None:
        """The run's worker was lost (or ``dependency`` failed under it): the job's next
        attempt, or failed once too many were."""
        self.requeue(job_id, dispatch_id, counted=True, reason=reason, dependency=dependency)

    def requeue(
        self,
        job_id: str,
        dispatch_id: str,
        *,
        counted: bool,
        reason: str = "",
        guard: Sequence[ColumnElement[bool]] = (),
        dependency: str | None = None,
    ) -> bool:
        now = self._core._now()
        with self._core._transactions.begin() as db:
            row = db.get(JobRow, job_id, populate_existing=True)
            if row is None or row.dispatch_id != dispatch_id or row.status != "processing":
                return False
            events = self._requeue_row(db, row, now, counted, reason, guard, dependency=dependency)
            if events is None:
                return False
        if counted and events[0][1]["job"]["status"] == "pending":  # said once it is so
            what = "interrupted" if dependency else "worker lost"
            log.warning("job %s: %s (%s); queued again", job_id, what, reason)
        self._core._publish_all(events)
        self._core._wake()
        return True

    def _requeue_row(
        self,
        db: Db,
        row: JobRow,
        now: datetime,
        counted: bool,
        reason: str,
        guard: Sequence[ColumnElement[bool]],
        *,
        dependency: str | None = None,
    ) -> list[Published] | None:
        """Put the run of ``row`` back in the queue (or fail it after too many losses),
        guarded by its dispatch id and ``guard`` (for a run recovered from outside: still
        held as it was seen, its lease still expired). A run ``dependency`` cut short
        waits out a backoff before it is claimed again."""
        lost = row.lost_runs + 1 if counted else row.lost_runs
        gives_up = counted and lost >= self._core.settings.max_attempts
        values: dict[str, Any] = {**transitions.NOT_RUNNING, "lost_runs": lost}
        if gives_up and dependency is not None:
            values |= {
                "end_time": now,
                "error_code": f"{dependency}_unavailable",
                "error_message": (
                    f"{row.file_name}: its run was cut short {lost} times (last: {reason}); "
                    "retry it once that is fixed."
                )[:ERROR_MESSAGE_CHARS],
            }
        elif gives_up:
            values |= {
                "end_time": now,
                "error_code": "worker_lost",
                "error_message": (
                    f"{row.file_name}: its worker was lost {lost} times while processing it "
                    f"(last: {reason}). The image may crash or hang the worker; retry it to "
                    "try once more."
                )[:ERROR_MESSAGE_CHARS],
            }
        else:
            values |= {"stage": None, "progress": 0.0, "worker": None, "queued_at": now}
            values["attempt"] = row.attempt + 1 if counted else row.attempt
            if dependency is not None:
                values["not_before"] = now + self._outage_backoff(lost)
        left = transitions.move_counted(
            db,
            row,
            "failed" if gives_up else "pending",
            now,
            allowed=("processing",),
            dispatch_id=row.dispatch_id,
            extra=guard,
            values=values,
        )
        if left is None:
            return None
        if gives_up:
            return self._core._ended_events(db, row.id)
        fresh = self._core._get_job(db, row.id)
        events = [notices.job_updated(self._core._job(db, fresh))]
        if counted:
            events.append(
                notices.job_requeued(
                    row.id,
                    row.batch_id,
                    row.file_name,
                    reason,
                    fresh.attempt,
                    outage=dependency is not None,
                )
            )
        return events + self._core._batch_and_session_events(db, row.batch_id)

    def _outage_backoff(self, lost: int) -> timedelta:
        """The wait before the next run after ``lost`` losses: doubled each time, at most a
        minute."""
        first = self._core.settings.outage_backoff.total_seconds()
        return timedelta(seconds=min(60.0, first * 2 ** max(0, lost - 1)))

    def _abandon(self, job_id: str, dispatch_id: str) -> None:
        """A run held here whose job was ended or taken elsewhere: stop working on it."""
        if self._core._drop(job_id, dispatch_id) is not None:
            self._core._cancel_running(job_id)

    def _discard_orphan_result(self, report: Finished) -> None:
        """A run finished after its job was cancelled, deleted or re-queued: its file is not
        wanted, unless a later run of the same job may be writing the same name."""
        with self._core._transactions() as db:
            row = db.get(JobRow, report.job_id)
            if row is not None and row.status in ("completed", "pending", "processing"):
                return
        try:
            extension = OutputFormat(report.format).extension
        except ValueError:
            extension = ".png"
        self._core.files.delete(self._core.files.result_key(report.job_id, extension))

    def _orphan_mask(self, report: Finished) -> None:
        """The mask a run stored after its job was cancelled, deleted or re-queued: kept
        while the job is (a re-queued run reuses it); else deleted unless recorded, so no
        file outlives the bound and retention unseen."""
        if report.mask_key is None or report.mask_reused or not masks.is_mask_key(report.mask_key):
            return
        with self._core._transactions.begin() as db:
            row = db.get(JobRow, report.job_id)
            if row is not None:
                self._keep_mask(db, row, report)
                return
            if masks.recorded(db, report.mask_key):
                return
        self._core.files.delete(report.mask_key)

    # ------------------------------------------------------------------ leases

    def release_all(self) -> int:
        """A graceful stop: every run held here goes back to the queue, uncounted, before
        the workers are stopped (their late reports then change nothing)."""
        released = 0
        for job_id, live in self._core._held().items():
            self._core._drop(job_id, live.dispatch_id)
            released += self.requeue(job_id, live.dispatch_id, counted=False)
        if released:
            log.info("put %d running jobs back in the queue for the next start", released)
        return released

    def renew_leases(self) -> None:
        """Extend the leases of the runs held here; a run whose job is no longer ours (it
        was cancelled, deleted or recovered by another process) is stopped. A run sent to
        remote workers is not held here: until a worker takes it over, its take-over
        deadline stands."""
        held = self._core._held()
        if not held:
            return
        dispatches = [live.dispatch_id for live in held.values()]
        with self._core._transactions.begin() as db:
            kept = set(
                db.execute(
                    update(JobRow)
                    .where(JobRow.dispatch_id.in_(dispatches), JobRow.status == "processing")
                    .values(lease_until=self._core._now() + self._core.settings.lease_duration)
                    .returning(JobRow.dispatch_id),
                    execution_options={"synchronize_session": False},
                ).scalars()
            )
        for job_id, live in held.items():
            if live.dispatch_id not in kept:
                self._abandon(job_id, live.dispatch_id)

    def recover(self) -> int:
        """Re-queue runs no live process holds: leases that expired, runs of processes on
        this machine that no longer exist, and runs sent to remote workers that none took
        over by the deadline. Each that a worker had started counts as a lost run (one that
        never started does not). Returns how many."""
        now = self._core._now()
        host = socket.gethostname()
        with self._core._transactions() as db:
            rows = db.execute(
                select(
                    JobRow.id,
                    JobRow.dispatch_id,
                    JobRow.lease_owner,
                    JobRow.lease_until,
                    JobRow.worker,
                ).where(
                    JobRow.status == "processing",
                    or_(
                        JobRow.lease_until.is_(None),
                        JobRow.lease_until < now,
                        JobRow.lease_owner.like(f"{host}/%"),
                    ),
                )
            ).all()
        recovered = 0
        for job_id, dispatch_id, owner, until, worker in rows:
            if owner is not None and owner == self._core.owner:
                continue
            expired = until is None or until < now
            if not expired and _owner_alive(owner, host):
                continue
            never_taken = worker is None and owner is None  # sent; no worker took it over
            if never_taken:
                why = "no worker took it over in time"
            elif expired:
                why = "its process stopped renewing the lease"
            else:
                why = "its process is gone"
            # Still held as seen: a worker may have taken the run over (or renewed its
            # lease) since it was read, and then it is that worker's.
            guard = [_same(JobRow.lease_owner, owner), _same(JobRow.worker, worker)]
            if expired:
                guard.append(or_(JobRow.lease_until.is_(None), JobRow.lease_until < now))
            if not self.requeue(
                job_id, dispatch_id or "", counted=worker is not None, reason=why, guard=guard
            ):
                continue
            recovered += 1
            if never_taken:
                log.warning(
                    "job %s: no worker took dispatch %s over within %.0f s (its message was "
                    "lost with a worker or the broker); queued again",
                    job_id,
                    dispatch_id,
                    self._core.settings.takeover_timeout.total_seconds(),
                )
        if recovered:
            log.info("re-queued %d jobs whose runs were lost", recovered)
        return recovered


def _same(column: InstrumentedAttribute[str | None], value: str | None) -> ColumnElement[bool]:
    """``column`` still has ``value`` (NULL included)."""
    return column.is_(None) if value is None else column == value


def _owner_alive(owner: str | None, host: str) -> bool:
    """Whether the process named by a lease owner ("host/pid/token") on this host runs."""
    if not owner:
        return False
    parts = owner.split("/")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return True  # another machine: only its lease can tell
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
