"""The scale-out executor: runs go to Celery workers (``bgremover worker``) on any machine.

This side only dispatches. Workers take each run over in the job store, report to it
themselves and renew its lease, so a web process can die without losing a run. The job
store, not the broker, keeps the queue order: a run is sent only when a worker slot is free
(the slots are the live worker processes in Redis, shared by every dispatching process),
so priorities and reordering decide until the last moment what starts next.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict
from typing import Any

from ..config import Settings
from ..dependencies import Dependencies
from .base import Executor, Freed, ReportSink, WorkerInfo, WorkItem
from .celery_config import TASK, make_app
from .cluster import Channels, Listener, WorkerRegistry, redis_client

log = logging.getLogger(__name__)

SLOTS_CACHE_S = 0.5
"""How long a count of live workers is reused by a busy scheduler."""
KILL_GRACE_S = 30.0
"""Celery's hard time limit is the run's deadline plus this: the worker's own checks come
first, the pool's kill is the last resort for a run that hangs."""


class CeleryExecutor(Executor):
    remote = True

    def __init__(
        self,
        settings: Settings,
        *,
        app: Any | None = None,
        dependencies: Dependencies | None = None,
    ) -> None:
        self._settings = settings
        self._dependencies = dependencies or Dependencies()
        self._app = app if app is not None else make_app(settings)
        self._channels = Channels(settings.redis_namespace)
        self._redis = redis_client(settings)
        self._registry = WorkerRegistry(
            self._redis, self._channels, settings.worker_heartbeat.total_seconds()
        )
        # BGREMOVER_MAX_CONCURRENT_JOBS, when set, caps the cluster below its slots.
        explicit = "max_concurrent_jobs" in settings.model_fields_set
        self._cap = settings.max_concurrent_jobs if explicit else None
        self._lock = threading.Lock()
        self._slots: tuple[float, int] = (0.0, 0)
        self._listener: Listener | None = None

    def start(self, sink: ReportSink) -> None:
        self._listener = Listener(
            self._redis,
            self._channels.freed,
            lambda worker: sink(Freed(worker)),
            self._dependencies,
        ).start()

    def free_slots(self) -> int:
        """The cluster's slots; how many are free is the job store's count (``shared_slots``)."""
        return self.shared_slots()

    def shared_slots(self) -> int:
        with self._lock:
            at, slots = self._slots
            if time.monotonic() - at > SLOTS_CACHE_S:
                try:
                    # A worker helping with a clip's chunks is no slot: the clip's job
                    # counts once, as its holder's.
                    slots = sum(not w.helps for w in self._registry.live())
                except Exception as exc:  # Redis away: start nothing until it is back
                    self._dependencies.lost("redis", f"cannot count the workers: {exc}")
                    slots = 0
                else:
                    self._dependencies.regained("redis")
                self._slots = (time.monotonic(), slots)
        return min(slots, self._cap) if self._cap is not None else slots

    def submit(self, item: WorkItem) -> None:
        limit = time_limit(item)
        self._app.send_task(TASK, args=[asdict(item)], queue=self._channels.queue, time_limit=limit)

    def cancel(self, job_id: str) -> None:
        """Every worker hears it; the one running the job stops its inference."""
        self._redis.publish(self._channels.cancel, job_id)

    def shutdown(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self._redis.close()

    # Diagnostics.

    def workers(self) -> list[WorkerInfo]:
        return self._registry.live()

    def device(self) -> str:
        """The configured device: each worker machine resolves its own."""
        return self._settings.device

    def readiness(self) -> dict[str, str]:
        try:
            self._redis.ping()
        except Exception as exc:
            return {"redis": f"unreachable: {exc}"}
        return {"redis": "ok"}

    def health(self) -> dict[str, str]:
        checks = self.readiness()
        try:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {exc}"
        return checks


def time_limit(item: WorkItem) -> float | None:
    """Celery's hard limit for ``item``'s task: its deadline and a grace, fixed when it is
    sent. None for a clip, whose minutes of frames no photo-sized deadline covers; a lost
    clip worker is still found by its lease."""
    if item.clip or not item.deadline_s:
        return None
    return item.deadline_s + KILL_GRACE_S
