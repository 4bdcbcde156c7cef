"""Wires one process's job system: the job service (``jobs.opening``), the executor that runs
its jobs (local worker processes or Celery), the scheduler, presets, logins and webhooks.

It sits above the job core so that ``jobs`` never imports the concrete executors or the
webhook dispatcher: the core knows only the ``workers.base.Executor`` contract."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .dependencies import Dependencies, DependencyState
from .jobs.bus.base import Event, EventBus
from .jobs.database import session_factory
from .jobs.logins import LoginStore
from .jobs.opening import open_service
from .jobs.outages import StorageGate
from .jobs.presets import PresetStore
from .jobs.scheduler import Scheduler
from .storage import StorageError, outage_reason
from .webhooks.dispatcher import Dispatcher
from .webhooks.store import WebhookStore
from .workers.base import Executor

log = logging.getLogger(__name__)


def default_executor(settings: Settings, dependencies: Dependencies | None = None) -> Executor:
    """Celery workers when the cluster is configured, else local worker processes."""
    if settings.redis_url:
        from .workers.celery_executor import CeleryExecutor

        return CeleryExecutor(settings, dependencies=dependencies)
    from .workers.local import LocalProcessExecutor

    return LocalProcessExecutor(settings)


class OutageListener:
    """Remote workers announce a store that failed under their runs on the shared bus; the
    dispatching process hears it here and holds dispatch until its own probe passes."""

    def __init__(self, bus: EventBus, gate: StorageGate) -> None:
        self._bus = bus
        self._gate = gate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bgremover-outages", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with self._bus.subscribe() as events:
            while not self._stop.is_set():
                event = events.get(timeout=0.5)
                if event is not None:
                    self.heard(event)

    def heard(self, event: Event) -> None:
        """A failure another process announced holds this process's dispatch too."""
        storage = event.data.get("storage") or {} if event.type == "health.updated" else {}
        if storage.get("ok") is False and storage.get("error") and self._news(storage):
            self._gate.failed(str(storage["error"]), announce=False)

    def _news(self, storage: dict[str, Any]) -> bool:
        """Whether a failure began after this process last saw the store recover (its own
        announcement, echoed by the stream, is not)."""
        recovered = self._gate.state.since if self._gate.state.ok else None
        try:
            began = datetime.fromisoformat(str(storage.get("since")))
        except ValueError:
            return True
        return recovered is None or began > recovered


class JobSystem:
    """The running job system of one process; several may share one database. ``start``
    re-queues runs that no live process holds, then starts the workers, the scheduler and
    the webhook dispatcher;
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
        self.webhooks = WebhookStore(session_factory(self.engine))
        self.webhook_dispatcher = Dispatcher(settings, session_factory(self.engine), self.bus)
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
            progress_every=settings.batch_progress_interval.total_seconds(),
        )
        self._outages = OutageListener(self.bus, self.service.storage_gate)
        self.service.attach(
            cancel_running=self.executor.cancel,
            wake=self.scheduler.wake,
            runs_elsewhere=self.executor.remote,
        )

    def health(self) -> dict[str, Any]:
        """Each dependency ("database", and the executor's: "redis", "broker") with "ok" or
        what is wrong; "storage" as ``{"ok", "since", "error"}``, never with a path. Each
        check also tells ``service.dependencies``."""
        checks: dict[str, Any] = {"storage": self.storage_health()}
        checks |= self._observed({"database": self._database(), **self.executor.health()})
        return checks

    def readiness(self) -> dict[str, str]:
        """What this process serves nothing without, each "ok" or what is wrong: the
        database and, in the cluster, Redis (worker slots, cancels, events). Cheaper than
        ``health``: an orchestrator asks every few seconds. Each check also tells
        ``service.dependencies``."""
        return self._observed({"database": self._database(), **self.executor.readiness()})

    def _database(self) -> str:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return f"unreachable: {str(exc).splitlines()[0]}"
        return "ok"

    def _observed(self, checks: dict[str, str]) -> dict[str, str]:
        for name, state in checks.items():
            self.service.dependencies.observe(name, None if state == "ok" else state)
        return checks

    def storage_health(self) -> dict[str, Any]:
        """The store as the gate saw it last (a full disk, say), else whether it is usable."""
        state = self.service.storage_gate.state
        if state.ok:
            try:
                self.service.files.storage.check()
            except StorageError as exc:
                log.warning("storage check: %s", exc)
                reason = outage_reason(exc) or "results storage cannot be used"
                state = DependencyState(ok=False, error=reason)
        return state.as_json()

    def start(self) -> JobSystem:
        self.service.recover()
        self.executor.start(self.service.handle)
        if self.executor.remote:
            self._outages.start()
        self.scheduler.start()
        self.webhook_dispatcher.start()
        return self

    def stop(self) -> None:
        self.webhook_dispatcher.stop()
        self._outages.stop()
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
