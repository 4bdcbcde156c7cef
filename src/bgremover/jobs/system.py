"""Wires the job store, files, event bus, service, scheduler and executor together."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ..config import Settings
from ..dependencies import Dependencies
from ..storage import StorageError, open_storage
from ..workers.base import Executor
from .database import connect, default_url, migrate, session_factory
from .events import EventBus, InMemoryEventBus
from .files import FileStore
from .logins import LoginStore
from .presets import PresetStore
from .scheduler import Scheduler
from .sequences import EventSeq
from .service import JobService


def open_bus(
    settings: Settings,
    engine: Engine,
    *,
    follow: bool = True,
    dependencies: Dependencies | None = None,
) -> EventBus:
    """The event bus, with seqs from the database: in this process; or the Redis stream
    every web process and worker shares, when ``redis_url`` is set (``follow=False``: a
    process that only publishes, a worker, reads nothing back)."""
    seq = EventSeq(engine)
    if settings.redis_url:
        from .redis_bus import RedisEventBus  # imports redis only when it is used

        prefix = f"{settings.redis_namespace}:events"
        return RedisEventBus(
            settings.redis_url, seq=seq, prefix=prefix, follow=follow, dependencies=dependencies
        )
    return InMemoryEventBus(seq=seq.take, last=seq.last())


def open_service(
    settings: Settings, *, bus: EventBus | None = None, follow: bool = True
) -> JobService:
    """A job service on the configured database (migrated), store and bus."""
    engine = connect(settings.database_url or default_url(settings.data_dir))
    migrate(engine)
    dependencies = Dependencies()
    if bus is None:
        bus = open_bus(settings, engine, follow=follow, dependencies=dependencies)
    return JobService(
        sessions=session_factory(engine),
        files=FileStore(
            open_storage(settings),
            settings.data_dir,
            thumbnail_cache_bytes=settings.thumbnail_cache_bytes,
        ),
        bus=bus,
        settings=settings,
        dependencies=dependencies,
    )


def default_executor(settings: Settings, dependencies: Dependencies | None = None) -> Executor:
    """Celery workers when the cluster is configured, else local worker processes."""
    if settings.redis_url:
        from ..workers.celery_executor import CeleryExecutor

        return CeleryExecutor(settings, dependencies=dependencies)
    from ..workers.local import LocalProcessExecutor

    return LocalProcessExecutor(settings)


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
        self.service = open_service(settings, bus=bus)
        self.bus = self.service.bus
        self.engine = self.service.database
        self.presets = PresetStore(session_factory(self.engine), settings.max_presets)
        self.logins = LoginStore(session_factory(self.engine))
        self.executor = (
            executor
            if executor is not None
            else default_executor(settings, self.service.dependencies)
        )
        self.scheduler = Scheduler(
            self.service,
            self.executor,
            cleanup_every=settings.cleanup_interval.total_seconds(),
            renew_every=settings.lease_duration.total_seconds() / 3,
        )
        self.service.attach(
            cancel_running=self.executor.cancel,
            wake=self.scheduler.wake,
            runs_elsewhere=self.executor.remote,
        )

    def health(self) -> dict[str, str]:
        """Each dependency ("database", "storage", and the executor's: "redis", "broker")
        with "ok" or what is wrong; each check also tells ``service.dependencies``."""
        checks = {"database": "ok", "storage": "ok"}
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            checks["database"] = f"unreachable: {str(exc).splitlines()[0]}"
        try:
            self.service.files.storage.check()
        except StorageError as exc:
            checks["storage"] = str(exc)
        checks |= self.executor.health()
        for name, state in checks.items():
            self.service.dependencies.observe(name, None if state == "ok" else state)
        return checks

    def start(self) -> JobSystem:
        self.service.recover()
        self.executor.start(self.service.handle)
        self.scheduler.start()
        return self

    def stop(self) -> None:
        self.scheduler.stop()
        self.service.release_all()
        self.executor.shutdown()
        self.service.close()

    def __enter__(self) -> JobSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
