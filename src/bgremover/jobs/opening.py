"""Opens the job service on the configured database, file store and event bus: what every
process that touches jobs starts from (the server through ``bgremover.system``, a Celery
worker, the command line's queue control)."""

from __future__ import annotations

from sqlalchemy import Engine

from ..config import Settings
from ..dependencies import Dependencies
from ..storage import open_storage
from ..storage.files import FileStore
from .bus.base import EventBus
from .bus.memory import InMemoryEventBus
from .database import connect, default_url, migrate, session_factory
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
        from .bus.redis import RedisEventBus  # imports redis only when it is used

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
        transactions=session_factory(engine),
        files=FileStore(
            open_storage(settings),
            settings.data_dir,
            thumbnail_cache_bytes=settings.thumbnail_cache_bytes,
        ),
        bus=bus,
        settings=settings,
        dependencies=dependencies,
    )
