"""The job service: every change to jobs, batches and sessions goes through here.

It keeps the contract in ``contract`` by composing four parts over one shared core
(``core.ServiceCore``, which it is): ``commands`` (what users ask: create, cancel, retry,
reprioritise, delete), ``runs`` (what workers tell: claims, progress, the end of a run,
leases and recovery), ``pauses`` (holding the queue or a batch) and ``queries`` (reads and
snapshots). Each method below hands the call to the one part that holds it.
The database decides every change, so any number of services in any number of processes can
share one database; events are published only after the change commits, and progress lives
in memory between the database writes at stage boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from ..dependencies import Dependencies
from ..storage.files import FileStore
from .bus.base import EventBus
from .commands import Commands
from .core import ServiceCore
from .eta.clock import StageClock
from .pauses import Pauses
from .queries import Queries
from .runs import Runs
from .times import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from datetime import datetime
    from typing import Any

    from sqlalchemy.orm import Session as Db

    from ..engine.options import RemoveOptions
    from ..workers.base import (
        Report,
        WorkItem,
    )
    from .analytics import Analytics
    from .contract import JobStore
    from .core import ServiceCore
    from .exchange import QueueState
    from .metrics import StoreMetrics
    from .runs import Runs
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


class JobService(ServiceCore):
    """Thread-safe; one per process (or several, on one database). The scheduler and
    executor are attached after creation."""

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
        super().__init__(
            transactions=transactions,
            files=files,
            bus=bus,
            settings=settings,
            clock=clock,
            now=now,
            owner=owner,
            dependencies=dependencies,
        )
        self._commands = Commands(self)
        self._runs = Runs(self)
        self._pauses = Pauses(self, self._runs)
        self._queries = Queries(self)

    # Commands (``commands``)
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
        return self._commands.create_batch(
            uploads,
            name=name,
            priority=priority,
            options=options,
            batch_id=batch_id,
            callback_url=callback_url,
        )

    def create_manual_batch(self, name: str) -> Batch:
        return self._commands.create_manual_batch(name)

    def cancel_job(self, job_id: str) -> CancelResult:
        return self._commands.cancel_job(job_id)

    def cancel_batch(self, batch_id: str) -> CancelResult:
        return self._commands.cancel_batch(batch_id)

    def retry_job(self, job_id: str) -> RetryResult:
        return self._commands.retry_job(job_id)

    def retry_batch(self, batch_id: str) -> RetryResult:
        return self._commands.retry_batch(batch_id)

    def derive_job(self, job_id: str, options: RemoveOptions) -> Job:
        return self._commands.derive_job(job_id, options)

    def set_priority(self, job_id: str, priority: int) -> Job:
        return self._commands.set_priority(job_id, priority)

    def move_to_front(self, job_id: str) -> Job:
        return self._commands.move_to_front(job_id)

    def delete_job(self, job_id: str) -> None:
        self._commands.delete_job(job_id)

    def delete_jobs(self, statuses: Iterable[str]) -> int:
        return self._commands.delete_jobs(statuses)

    def cleanup(self) -> CleanupResult:
        return self._commands.cleanup()

    def export_state(self) -> dict[str, Any]:
        return self._commands.export_state()

    def import_state(self, state: QueueState) -> ImportResult:
        return self._commands.import_state(state)

    # Runs (``runs``)
    def claim_next(self, *, within: int | None = None) -> WorkItem | None:
        return self._runs.claim_next(within=within)

    def take_over(self, item: WorkItem, worker: str) -> bool:
        return self._runs.take_over(item, worker)

    def dispatched(self, job_id: str, dispatch_id: str) -> WorkItem | None:
        return self._runs.dispatched(job_id, dispatch_id)

    def handle(self, report: Report) -> None:
        self._runs.handle(report)

    def retry_unapplied(self) -> int:
        return self._runs.retry_unapplied()

    def release_all(self) -> int:
        return self._runs.release_all()

    def renew_leases(self) -> None:
        self._runs.renew_leases()

    def recover(self) -> int:
        return self._runs.recover()

    # Pauses (``pauses``)
    def queue(self) -> Queue:
        return self._pauses.queue()

    def pause_queue(self, by: str, *, cancel_running: bool = False) -> Queue:
        return self._pauses.pause_queue(by, cancel_running=cancel_running)

    def resume_queue(self) -> Queue:
        return self._pauses.resume_queue()

    def pause_batch(self, batch_id: str) -> Batch:
        return self._pauses.pause_batch(batch_id)

    def resume_batch(self, batch_id: str) -> Batch:
        return self._pauses.resume_batch(batch_id)

    def follow_pauses(self) -> None:
        self._pauses.follow_pauses()

    # Queries (``queries``)
    def get_job(self, job_id: str) -> Job:
        return self._queries.get_job(job_id)

    def job_files(self, job_id: str) -> tuple[str, str | None]:
        return self._queries.job_files(job_id)

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
        return self._queries.list_jobs(
            status=status,
            batch_id=batch_id,
            session_id=session_id,
            since=since,
            until=until,
            q=q,
            include_superseded=include_superseded,
            limit=limit,
            offset=offset,
        )

    def get_batch(self, batch_id: str) -> Batch:
        return self._queries.get_batch(batch_id)

    def list_batches(
        self,
        *,
        session_id: str | None = None,
        status: Iterable[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Batch], int]:
        return self._queries.list_batches(
            session_id=session_id, status=status, limit=limit, offset=offset
        )

    def get_session(self, session_id: str) -> Session:
        return self._queries.get_session(session_id)

    def list_sessions(self, *, limit: int = 50, offset: int = 0) -> tuple[list[Session], int]:
        return self._queries.list_sessions(limit=limit, offset=offset)

    def active_snapshot(self, recent_jobs: int = 500) -> ActiveSnapshot:
        return self._queries.active_snapshot(recent_jobs)

    def stats(self) -> Stats:
        return self._queries.stats()

    def analytics(self, since: str | None = None) -> Analytics:
        return self._queries.analytics(since)

    def metrics(self) -> StoreMetrics:
        return self._queries.metrics()

    def events_published(self) -> dict[str, int]:
        return self._queries.events_published()


if TYPE_CHECKING:
    # mypy checks here that JobService keeps every promise of contract.JobStore.
    _KEEPS_THE_CONTRACT: type[JobStore] = JobService
