"""What users ask of the job system: submit, cancel, retry, derive, reprioritise, delete.

Each command is one transaction whose conditional UPDATEs decide (see ``transitions``), so a
command and a worker's report racing on another process cannot both win.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session as Db

from ..engine.decode import probe
from ..engine.errors import InputError
from ..engine.options import RemoveOptions
from ..engine.video.probe import ClipInfo, is_clip, may_be_clip, open_clip
from ..storage import StorageError, StorageUnavailable, outage_reason
from ..workers.clips import clip_limits
from . import exchange, maintenance, notices, outbox, sequences, transitions
from .bus.base import Published
from .core import ServiceCore
from .exchange import QueueState
from .rows import copy_of, new_id, new_job_row
from .schemas import (
    Batch,
    BatchCreated,
    Callback,
    CancelResult,
    CleanupResult,
    ImportResult,
    Job,
    RetryResult,
    Upload,
)
from .states import ACTIVE, RETRYABLE, STATUSES, TERMINAL, InvalidTransition, NotFound
from .tables import BatchRow, JobRow, SessionRow


class _Stored(NamedTuple):
    """An upload in the store, and what its headers say."""

    content_hash: str
    size: int
    media_type: str | None
    width: int | None
    height: int | None
    frames: int | None
    """A clip's frames; None for a photo."""


class Commands:
    def __init__(self, core: ServiceCore) -> None:
        self._core = core

    # ----------------------------------------------------------------- creating work

    def create_batch(
        self,
        uploads: Sequence[Upload],
        *,
        name: str | None = None,
        priority: int = 0,
        options: RemoveOptions | None = None,
        batch_id: str | None = None,
        callback_url: str | None = None,
    ) -> BatchCreated:
        """Store the originals and queue one job per upload, in a new batch (auto-named,
        joining the current session) or in an existing manual batch. ``callback_url`` (checked
        by the caller: ``webhooks.guard``) gets a webhook endpoint of its own for every event
        of this batch and its jobs, made in the same transaction, so it misses none."""
        options_json = (options or RemoveOptions()).model_dump(mode="json", exclude_defaults=True)
        stored = [self._store_upload(upload) for upload in uploads]
        now = self._core._now()
        with self._core._transactions.begin() as db:
            if batch_id is not None:
                batch = self._manual_batch(db, batch_id)
                db.execute(
                    update(SessionRow)
                    .where(SessionRow.id == batch.session_id)
                    .values(last_activity_at=now)
                )
            else:
                batch = self._new_batch(db, name or _auto_name(len(stored), now), False, now)
            first = sequences.take(db, "queue_order", len(stored)) if stored else 0
            rows = [
                new_job_row(
                    batch_id=batch.id,
                    file_name=upload.file_name,
                    file_size=size,
                    content_hash=content_hash,
                    media_type=media_type,
                    width=width,
                    height=height,
                    frames=frames,
                    priority=priority,
                    queue_order=first + index,
                    options=options_json,
                    now=now,
                )
                for index, (
                    upload,
                    (content_hash, size, media_type, width, height, frames),
                ) in enumerate(zip(uploads, stored, strict=True))
            ]
            db.add_all(rows)
            db.flush()
            deltas: Counter[str] = Counter()
            for row in rows:
                deltas.update(transitions.added(row))
            transitions.shift_batch(db, batch.id, deltas, now)
            jobs = self._core._jobs(db, rows, lambda _: batch.session_id)
            events: list[Published] = [notices.job_updated(job) for job in jobs]
            batch_events = self._core._batch_and_session_events(db, batch.id)
            callback = None
            if callback_url is not None:
                endpoint = outbox.add_endpoint(
                    db, url=callback_url, events=outbox.EVENT_TYPES, now=now, batch_id=batch.id
                )
                callback = Callback(
                    id=endpoint.id, url=endpoint.url, events=endpoint.events, secret=endpoint.secret
                )
            created = BatchCreated(
                batch=self._core._batch(db, self._core._get_batch(db, batch.id)),
                jobs=jobs,
                callback=callback,
            )
        self._core._publish_all(events + batch_events)
        self._core._wake()
        return created

    def create_manual_batch(self, name: str) -> Batch:
        """An empty, user-named batch that later uploads can target."""
        now = self._core._now()
        with self._core._transactions.begin() as db:
            batch = self._new_batch(db, name.strip() or _auto_name(0, now), True, now)
            snapshot = self._core._batch(db, batch)
            events = self._core._batch_and_session_events(db, batch.id)
        self._core._publish_all(events)
        return snapshot

    # ------------------------------------------------------------------ user commands

    def cancel_job(self, job_id: str) -> CancelResult:
        """Cancel a pending job at once, or a running one (its worker stops within a second;
        a process that missed the word notices at its next lease renewal)."""
        with self._core._transactions.begin() as db:
            row = self._core._get_job(db, job_id)
            cancelled = self._cancel(db, [row])
            if not cancelled:
                raise InvalidTransition(job_id, self._core._get_job(db, job_id).status, "cancelled")
            events = self._core._ended_events(db, job_id)
        self._stop_held(cancelled)
        self._core._publish_all(events)
        return CancelResult(cancelled=[job_id])

    def cancel_batch(self, batch_id: str) -> CancelResult:
        """Cancel every job of the batch that has not ended."""
        with self._core._transactions.begin() as db:
            batch = self._core._get_batch(db, batch_id)
            cancelled = self._cancel(db, self._batch_jobs(db, batch.id, ACTIVE))
            events: list[Published] = []
            for row in cancelled:
                events += self._core._ended_events(db, row.id, batch_events=False)
            events += self._core._batch_and_session_events(db, batch.id)
            events += self._core._completion_notices(db, batch.id)
        self._stop_held(cancelled)
        self._core._publish_all(events)
        return CancelResult(cancelled=[row.id for row in cancelled])

    def retry_job(self, job_id: str) -> RetryResult:
        """A new attempt of a failed or cancelled job, pending, linked to the old one."""
        with self._core._transactions.begin() as db:
            row = self._core._get_job(db, job_id)
            jobs, events = self._queue_copies(db, row.batch_id, [row])
            if not jobs:
                raise InvalidTransition(job_id, row.status, "retried")
        self._core._publish_all(events)
        self._core._wake()
        return RetryResult(jobs=jobs)

    def retry_batch(self, batch_id: str) -> RetryResult:
        """A new attempt of every failed and cancelled job in the batch."""
        with self._core._transactions.begin() as db:
            batch = self._core._get_batch(db, batch_id)
            rows = self._batch_jobs(db, batch.id, RETRYABLE)
            jobs, events = self._queue_copies(db, batch.id, rows)
        self._core._publish_all(events)
        self._core._wake()
        return RetryResult(jobs=jobs)

    def derive_job(self, job_id: str, options: RemoveOptions) -> Job:
        """A new job on the same original with other output options (the editor's "save as
        a new result"): it runs through the queue like any other job."""
        with self._core._transactions.begin() as db:
            row = self._core._get_job(db, job_id)
            new_options = options.model_dump(mode="json", exclude_defaults=True)
            jobs, events = self._queue_copies(db, row.batch_id, [row], new_options)
        self._core._publish_all(events)
        self._core._wake()
        return jobs[0]

    def set_priority(self, job_id: str, priority: int) -> Job:
        """Higher runs first; only for jobs that have not ended."""
        with self._core._transactions.begin() as db:
            changed = db.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status.in_(ACTIVE))
                .values(priority=priority),
                execution_options={"synchronize_session": False},
            )
            row = self._core._get_job(db, job_id)
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise InvalidTransition(job_id, row.status, "reprioritised")
            job = self._core._job(db, row)
        self._core._publish_all([notices.job_updated(job)])
        self._core._wake()
        return job

    def move_to_front(self, job_id: str) -> Job:
        """Make a pending job the next to run: top priority, first in line."""
        with self._core._transactions.begin() as db:
            row = self._core._get_job(db, job_id)
            front = db.execute(
                select(JobRow.priority, JobRow.queue_order)
                .where(JobRow.status == "pending")
                .order_by(JobRow.priority.desc(), JobRow.queue_order)
                .limit(1)
            ).first()
            changed = 0
            if front is not None and row.status == "pending":
                priority, order = front
                in_front = (row.priority, row.queue_order) == (priority, order)
                changed = db.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == "pending")
                    .values(
                        priority=max(row.priority, priority),
                        queue_order=row.queue_order if in_front else order - 1,
                    ),
                    execution_options={"synchronize_session": False},
                ).rowcount  # type: ignore[attr-defined]
            row = self._core._get_job(db, job_id)
            if changed != 1:
                raise InvalidTransition(job_id, row.status, "moved to the front")
            job = self._core._job(db, row)
        self._core._publish_all([notices.job_updated(job)])
        return job

    def delete_job(self, job_id: str) -> None:
        """Remove a job and its files; a running job is cancelled first."""
        with self._core._transactions.begin() as db:
            cancelled = self._cancel(db, [self._core._get_job(db, job_id)])
            row = self._core._get_job(db, job_id)
            maintenance.delete_rows(db, self._core.files, [row], self._core._now())
            events = [notices.job_deleted(job_id)]
            events += self._core._batch_and_session_events(db, row.batch_id)
        self._stop_held(cancelled)
        self._core._publish_all(events)

    def delete_jobs(self, statuses: Iterable[str]) -> int:
        """Delete every job in one of the given ended statuses (the history's "clear all")."""
        wanted = [s for s in statuses if s in TERMINAL]
        with self._core._transactions() as db:
            ids = db.scalars(select(JobRow.id).where(JobRow.status.in_(wanted))).all()
        deleted = 0
        for job_id in ids:
            try:
                self.delete_job(job_id)
                deleted += 1
            except NotFound:
                continue  # deleted meanwhile, here or by another process
        return deleted

    # --------------------------------------------------------------------- maintenance

    def cleanup(self) -> CleanupResult:
        """Delete ended jobs older than ``job_retention`` and their files."""
        now = self._core._now()
        cutoff = now - self._core.settings.job_retention
        return maintenance.cleanup(self._core._transactions, self._core.files, cutoff, now)

    def export_state(self) -> dict[str, Any]:
        return exchange.export_state(self._core._transactions, self._core._now())

    def import_state(self, state: QueueState) -> ImportResult:
        result = exchange.import_state(
            self._core._transactions, self._core.files, state, self._core._now()
        )
        self._core._wake()
        return result

    # ------------------------------------------------------------------------ internals

    def _store_upload(self, upload: Upload) -> _Stored:
        path = Path(upload.path)
        media_type, width, height = probe(path)
        frames = None
        if may_be_clip(media_type) and is_clip(path):
            clip = self._clip_headers(path, upload.file_name)
            if clip is not None:
                frames, width, height = clip.frames, clip.width, clip.height
        try:
            content_hash, size = self._core.files.add_original(path)
        except (OSError, StorageError) as exc:
            reason = outage_reason(exc)
            if reason is None:
                raise
            self._core.storage_gate.failed(reason)  # the queue waits too, as for a run
            raise StorageUnavailable(f"storing an upload: {exc}", reason) from exc
        return _Stored(content_hash, size, media_type, width, height, frames)

    def _clip_headers(self, path: Path, name: str) -> ClipInfo | None:
        """A clip's frames and upright size from its headers (no frame is decoded here),
        so its batch weighs it by its frames; None for one its run will fail with the
        reason (over a limit, unreadable)."""
        try:
            return open_clip(path, clip_limits(self._core.settings), name=name)
        except InputError:
            return None

    def _new_batch(self, db: Db, name: str, manual: bool, now: datetime) -> BatchRow:
        session = self._current_session(db, now)
        batch = BatchRow(
            id=new_id(),
            session_id=session.id,
            name=name,
            manual=manual,
            status="pending",
            created_at=now,
            **{f"{s}_jobs": 0 for s in ("total", *STATUSES)},
        )
        db.add(batch)
        db.flush()
        return batch

    def _current_session(self, db: Db, now: datetime) -> SessionRow:
        """The session active within the grouping window, or a new one."""
        cutoff = now - self._core.settings.auto_group_time_window
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
        batch = self._core._get_batch(db, batch_id)
        if not batch.manual:
            raise InvalidTransition(batch_id, "an automatic batch", "given more images")
        return batch

    def _batch_jobs(self, db: Db, batch_id: str, statuses: Iterable[str]) -> Sequence[JobRow]:
        """The batch's current jobs (not superseded) in these statuses, in queue order."""
        return db.scalars(
            select(JobRow)
            .where(
                JobRow.batch_id == batch_id,
                JobRow.status.in_(list(statuses)),
                JobRow.superseded.is_(False),
            )
            .order_by(JobRow.queue_order, JobRow.id)
        ).all()

    def _cancel(self, db: Db, rows: Sequence[JobRow]) -> list[JobRow]:
        """Cancel those of ``rows`` that have not ended (the database decides); a run held
        here keeps the percent it reached. Returns the rows cancelled."""
        now = self._core._now()
        reached = {
            row.id: max(row.progress, live.percent)
            for row in rows
            if (live := self._core._live_of(row)) is not None
        }
        cancelled = transitions.move_many(
            db,
            rows,
            "cancelled",
            now,
            allowed=ACTIVE,
            values={"end_time": now, **transitions.NOT_RUNNING},
        )
        for row in cancelled:
            if row.id in reached:
                db.execute(
                    update(JobRow).where(JobRow.id == row.id).values(progress=reached[row.id]),
                    execution_options={"synchronize_session": False},
                )
        return cancelled

    def _stop_held(self, cancelled: Iterable[JobRow]) -> None:
        """After the commit: stop the runs of cancelled jobs that this process holds, or,
        when runs are held by remote workers, tell those workers."""
        for row in cancelled:
            if self._core._drop(row.id) is not None or self._core._runs_elsewhere:
                self._core._cancel_running(row.id)

    def _queue_copies(
        self,
        db: Db,
        batch_id: str,
        rows: Sequence[JobRow],
        options: dict[str, Any] | None = None,
    ) -> tuple[list[Job], list[Published]]:
        """Queue a copy of each row: a retry (no new options) supersedes a failed or
        cancelled job and counts as the same image of the batch (a row another process
        retried first is skipped); a derivation (new options) is one more job."""
        now = self._core._now()
        retry = options is None
        copies: list[JobRow] = []
        deltas: Counter[str] = Counter()
        for row in rows:
            if retry:
                superseded = db.execute(
                    update(JobRow)
                    .where(
                        JobRow.id == row.id,
                        JobRow.status.in_(RETRYABLE),
                        JobRow.superseded.is_(False),
                    )
                    .values(superseded=True),
                    execution_options={"synchronize_session": False},
                ).rowcount  # type: ignore[attr-defined]
                if superseded != 1:
                    continue
                # The new attempt takes the old one's place in the batch's counts.
                deltas.update(transitions.removed(row))
            copies.append(row)
        if not copies:
            return [], []
        first = sequences.take(db, "queue_order", len(copies))
        new_rows = [
            copy_of(row, queue_order=first + index, now=now, retry=retry, options=options)
            for index, row in enumerate(copies)
        ]
        db.add_all(new_rows)
        db.flush()
        for new in new_rows:
            deltas.update(transitions.added(new))
        transitions.shift_batch(db, batch_id, deltas, now)
        batch = self._core._get_batch(db, batch_id)
        db.execute(
            update(SessionRow).where(SessionRow.id == batch.session_id).values(last_activity_at=now)
        )
        events: list[Published] = []
        for old, new in zip(copies, new_rows, strict=True):
            events.append(notices.job_updated(self._core._job(db, self._core._get_job(db, old.id))))
            events.append(notices.job_updated(self._core._job(db, new)))
        events += self._core._batch_and_session_events(db, batch_id)
        return self._core._jobs(db, new_rows, lambda _: None), events


def _auto_name(count: int, now: datetime) -> str:
    noun = "image" if count == 1 else "images"
    return f"{count} {noun} · {now.astimezone():%H:%M}"
