"""The job store's contract: what each caller outside the job core may call, and what it
guarantees. ``service.JobService`` is the one implementation (on SQLite or PostgreSQL); mypy
checks that it keeps every promise here (the end of ``service.py``).

Every method is thread-safe and may run in any number of processes on one database: the
database decides each change, and events are published only after it commits. Methods that
take an id raise ``states.NotFound`` for an unknown one; a change the state machine does not
allow raises ``states.InvalidTransition``.

Callers: the web API and ``watch`` use ``Submitting``, ``Controlling`` and ``Reading``; the
command line's queue control ``Pausing``; the scheduler ``Scheduling``; executors and Celery
workers ``Running``; ``bgremover.system`` and ``celery_app`` open and wire the whole
``JobStore``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ..config import Settings
    from ..dependencies import Dependencies
    from ..engine.options import RemoveOptions
    from ..storage.files import FileStore
    from ..workers.base import Report, WorkItem
    from .analytics import Analytics
    from .bus.base import EventBus
    from .exchange import QueueState
    from .metrics import StoreMetrics
    from .outages import StorageGate
    from .schemas import (
        ActiveSnapshot,
        Batch,
        BatchCreated,
        CancelResult,
        CleanupResult,
        ImportResult,
        Job,
        Queue,
        RetryResult,
        Session,
        Stats,
        Upload,
    )


class Submitting(Protocol):
    """New work: uploads become jobs."""

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
        """Stores the originals and queues one pending job per upload, in one transaction."""

    def create_manual_batch(self, name: str) -> Batch:
        """An empty, named batch that later uploads can target."""

    def derive_job(self, job_id: str, options: RemoveOptions) -> Job:
        """A new pending job on the same original with other options."""


class Controlling(Protocol):
    """What users ask of existing jobs and batches."""

    def cancel_job(self, job_id: str) -> CancelResult:
        """A pending job ends at once; a running one's worker stops within a second."""

    def cancel_batch(self, batch_id: str) -> CancelResult:
        """Cancels every job of the batch that has not ended."""

    def retry_job(self, job_id: str) -> RetryResult:
        """A new pending attempt of a failed or cancelled job, linked to it."""

    def retry_batch(self, batch_id: str) -> RetryResult:
        """A new attempt of every failed and cancelled job of the batch."""

    def set_priority(self, job_id: str, priority: int) -> Job:
        """Higher runs first; only a job that has not ended."""

    def move_to_front(self, job_id: str) -> Job:
        """A pending job becomes the next to run."""

    def delete_job(self, job_id: str) -> None:
        """The job and the files no other job uses are gone (a running one is cancelled
        first); a ``job.deleted`` event follows."""

    def delete_jobs(self, statuses: Iterable[str]) -> int:
        """Deletes every job in one of the given ended statuses; returns how many."""

    def pause_batch(self, batch_id: str) -> Batch:
        """None of the batch's pending jobs starts until ``resume_batch``."""

    def resume_batch(self, batch_id: str) -> Batch:
        """The batch's pending jobs may start again."""

    def export_state(self) -> dict[str, Any]:
        """The whole queue as ``exchange.QueueState`` JSON."""

    def import_state(self, state: QueueState) -> ImportResult:
        """Adds the rows of an export that are not here; never a file outside the store."""


class Pausing(Protocol):
    """The whole queue's pause (every process on the database honours it)."""

    def queue(self) -> Queue:
        """Paused or not, by whom and since when, jobs by status."""

    def pause_queue(self, by: str, *, cancel_running: bool = False) -> Queue:
        """No pending job starts anywhere until ``resume_queue``."""

    def resume_queue(self) -> Queue:
        """Claims start pending jobs again, at once."""


class Reading(Protocol):
    """Reads: each answers from one transaction, so what it returns is consistent."""

    @property
    def bus(self) -> EventBus:
        """The events every change publishes after it commits."""

    def get_job(self, job_id: str) -> Job:
        """The job as the database has it, with this process's live progress."""

    def job_files(self, job_id: str) -> tuple[str, str | None]:
        """The storage keys of the original and (once completed) the result."""

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
        """Jobs matching every filter, newest first, and the total count."""

    def get_batch(self, batch_id: str) -> Batch:
        """The batch with its counts and progress."""

    def list_batches(
        self,
        *,
        session_id: str | None = None,
        status: Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Batch], int]:
        """Batches matching every filter, newest first, and the total count."""

    def get_session(self, session_id: str) -> Session:
        """The session with its counts and progress."""

    def list_sessions(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Session], int]:
        """Sessions, newest first, and the total count."""

    def active_snapshot(self, recent_jobs: int = 500) -> ActiveSnapshot:
        """Active and recently ended jobs with their batches and sessions, and the bus seq
        the snapshot is consistent with (a stream resumes after it)."""

    def stats(self) -> Stats:
        """Jobs by status and the accuracy of recent estimates."""

    def analytics(self, since: str | None = None) -> Analytics:
        """What happened from ``since`` (default: the last 24 hours) to now."""

    def metrics(self) -> StoreMetrics:
        """Totals and histograms that every process on the database reports alike."""

    def events_published(self) -> dict[str, int]:
        """Events this process published, by type."""


class Running(Protocol):
    """What executors and workers tell the store about runs."""

    def handle(self, report: Report) -> None:
        """Applies a worker's report while its run still holds the job; drops it otherwise."""

    def take_over(self, item: WorkItem, worker: str) -> bool:
        """A remote worker starts ``item``: True once, for the run the job still waits for."""

    def dispatched(self, job_id: str, dispatch_id: str) -> WorkItem | None:
        """The run as the job's row makes it, while the job runs exactly this dispatch."""


class Scheduling(Protocol):
    """The scheduler's rounds."""

    def claim_next(self, *, within: int | None = None) -> WorkItem | None:
        """Moves the best pending job to processing under a new dispatch id, or None."""

    def release_all(self) -> int:
        """Every run held here goes back to the queue, uncounted (a graceful stop)."""

    def renew_leases(self) -> None:
        """Extends the leases held here; stops runs whose job is no longer ours."""

    def recover(self) -> int:
        """Re-queues runs that no live process holds; returns how many."""

    def retry_unapplied(self) -> int:
        """Applies again the run ends the database could not take; returns how many wait."""

    def refresh_timings(self) -> None:
        """Adopts the stage timings other processes learned."""

    def follow_pauses(self) -> None:
        """Publishes pauses made by processes whose events this bus does not carry."""

    def publish_progress(self) -> int:
        """Publishes the time-following progress of active batches; returns how many."""

    def cleanup(self) -> CleanupResult:
        """Deletes ended jobs older than ``job_retention`` and their files."""

    @property
    def storage_gate(self) -> StorageGate:
        """Whether the results store takes writes (no claims while it does not)."""


class JobStore(Submitting, Controlling, Pausing, Reading, Running, Scheduling, Protocol):
    """The whole store, as the process that wires it (``bgremover.system``) holds it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def files(self) -> FileStore: ...

    @property
    def dependencies(self) -> Dependencies: ...

    @property
    def database(self) -> Engine: ...

    def attach(
        self,
        *,
        cancel_running: Callable[[str], None],
        wake: Callable[[], None],
        runs_elsewhere: bool = False,
    ) -> None:
        """Connects the executor's cancel and the scheduler's wake-up."""

    def close(self) -> None:
        """Releases the database connections and the bus."""
