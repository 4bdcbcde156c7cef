"""Wires the job store, files, event bus, service, scheduler and executor together."""

from __future__ import annotations

from types import TracebackType

from ..config import Settings
from ..workers.base import Executor
from .database import connect, default_url, migrate, session_factory
from .events import EventBus, InMemoryEventBus
from .files import FileStore
from .presets import PresetStore
from .scheduler import Scheduler
from .sequences import EventSeq
from .service import JobService


class JobSystem:
    """The running job system of one process; several may share one database. ``start``
    re-queues runs that no live process holds, then starts the workers and the scheduler;
    ``stop`` puts the runs it holds back in the queue before stopping the workers, so a stop
    never ends a job."""

    def __init__(
        self,
        settings: Settings,
        *,
        executor: Executor | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.engine = connect(settings.database_url or default_url(settings.data_dir))
        migrate(self.engine)
        if bus is None:
            seq = EventSeq(self.engine)
            bus = InMemoryEventBus(seq=seq.take, last=seq.last())
        self.bus = bus
        self.presets = PresetStore(session_factory(self.engine))
        self.service = JobService(
            sessions=session_factory(self.engine),
            files=FileStore(settings.data_dir),
            bus=self.bus,
            settings=settings,
        )
        if executor is None:
            from ..workers.local import LocalProcessExecutor

            executor = LocalProcessExecutor(settings)
        self.executor = executor
        self.scheduler = Scheduler(
            self.service,
            executor,
            cleanup_every=settings.cleanup_interval.total_seconds(),
            renew_every=settings.lease_duration.total_seconds() / 3,
        )
        self.service.attach(cancel_running=executor.cancel, wake=self.scheduler.wake)

    def start(self) -> JobSystem:
        self.service.recover()
        self.executor.start(self.service.handle)
        self.scheduler.start()
        return self

    def stop(self) -> None:
        self.scheduler.stop()
        self.service.release_all()
        self.executor.shutdown()
        self.engine.dispose()

    def __enter__(self) -> JobSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
