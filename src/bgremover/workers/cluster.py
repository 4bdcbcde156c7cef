"""What Celery workers and dispatching web processes share through Redis: who is alive
(the cluster's slots, and what each runs), cancels, and "a slot is free" wake-ups.

Every worker process is one slot. It writes a small record with a time to live and renews
it every heartbeat, so a slot whose process died (kill -9, a lost machine) stops counting
within three heartbeats without anyone having to notice the death. A death that the
worker's main process sees (one of its pool's processes) removes the slot at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..config import Settings
from ..dependencies import RETRY_CAP_S, RETRY_START_S, Dependencies
from .base import WorkerInfo

log = logging.getLogger(__name__)

MISSED_BEATS = 3
"""A worker silent for this many heartbeats no longer counts as a slot."""


def redis_client(settings: Settings) -> Any:
    """A client for ``settings.redis_url`` (imported here: one machine needs no Redis)."""
    if not settings.redis_url:
        raise ValueError("BGREMOVER_REDIS_URL is not set: the cluster needs Redis")
    import redis

    return redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, health_check_interval=30
    )


class Channels:
    """Names of the shared keys and channels, under ``settings.redis_namespace``."""

    def __init__(self, namespace: str) -> None:
        self.workers = f"{namespace}:workers"
        self.cancel = f"{namespace}:cancel"
        self.freed = f"{namespace}:freed"
        self.queue = f"{namespace}.jobs"

    def worker(self, name: str) -> str:
        return f"{self.workers}:{name}"


class WorkerRegistry:
    """The live worker processes: each renews its record; readers see only live ones."""

    def __init__(self, redis: Any, channels: Channels, heartbeat_s: float) -> None:
        self._redis = redis
        self._channels = channels
        self._ttl_s = heartbeat_s * MISSED_BEATS

    def beat(self, info: WorkerInfo) -> None:
        """Say ``info`` is alive (and what it runs) for the next few heartbeats."""
        expires = time.time() + self._ttl_s
        pipe = self._redis.pipeline()
        pipe.set(
            self._channels.worker(info.name), json.dumps(asdict(info)), px=int(self._ttl_s * 1000)
        )
        pipe.zadd(self._channels.workers, {info.name: expires})
        pipe.execute()

    def leave(self, name: str) -> None:
        pipe = self._redis.pipeline()
        pipe.delete(self._channels.worker(name))
        pipe.zrem(self._channels.workers, name)
        pipe.execute()

    def live(self) -> list[WorkerInfo]:
        """Every worker process that beat recently, by name."""
        now = time.time()
        self._redis.zremrangebyscore(self._channels.workers, "-inf", now)
        names = [n.decode() for n in self._redis.zrangebyscore(self._channels.workers, now, "+inf")]
        if not names:
            return []
        records = self._redis.mget([self._channels.worker(name) for name in names])
        workers = [WorkerInfo(**json.loads(r)) for r in records if r is not None]
        return sorted(workers, key=lambda w: w.name)


class ChildSlots:
    """In a worker's main process: the slot of each of its processes that dies is removed
    at once, so no dispatcher sends work to it in the heartbeats its record outlives it (the
    pool starts a new process, which counts once its model is loaded)."""

    def __init__(self, registry: WorkerRegistry, every_s: float = 0.2) -> None:
        self._registry = registry
        self._every_s = every_s
        self._host = socket.gethostname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-slots", daemon=True)

    def start(self) -> ChildSlots:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (a shutdown: the processes that exit now are not deaths)."""
        self._stop.set()

    def _run(self) -> None:
        import psutil

        me = psutil.Process(os.getpid())
        known: set[int] = set()
        while not self._stop.wait(self._every_s):
            alive = set()
            try:
                children = me.children()
            except psutil.Error as exc:  # try again next time, never stop watching
                log.warning("cannot list the worker's processes (%s)", exc)
                continue
            for child in children:
                try:
                    if child.status() != psutil.STATUS_ZOMBIE:
                        alive.add(child.pid)
                except psutil.NoSuchProcess:
                    pass
                except psutil.Error:  # AccessDenied and the like: count it as alive
                    alive.add(child.pid)
            for pid in sorted(known - alive):
                try:
                    self._registry.leave(f"{self._host}/{pid}")
                    log.warning("worker process %d died; its slot no longer counts", pid)
                except Exception as exc:  # Redis away: retry next time
                    log.warning("cannot remove the slot of dead process %d (%s)", pid, exc)
                    alive.add(pid)
            known = alive


class Listener:
    """Calls ``handle(message)`` for every message on ``channel``, from its own thread,
    reconnecting with backoff when Redis goes away (and telling ``dependencies``)."""

    def __init__(
        self,
        redis: Any,
        channel: str,
        handle: Callable[[str], None],
        dependencies: Dependencies | None = None,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._handle = handle
        self._dependencies = dependencies or Dependencies()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = RETRY_START_S
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                self._dependencies.regained("redis")
                delay = RETRY_START_S
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self._handle(message["data"].decode())
                pubsub.close()
            except Exception as exc:  # Redis down or restarted: retry with backoff
                self._dependencies.lost("redis", f"cannot listen on {self._channel}: {exc}")
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_CAP_S)
