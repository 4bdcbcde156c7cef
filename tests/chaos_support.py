"""A small cluster of its own for fault injection: one `bgremover serve`, one
`bgremover worker`, a private PostgreSQL, a private Redis (event stream, worker slots,
cancels) and a private Redis as the Celery broker (or the same one, as an operator who set
only BGREMOVER_REDIS_URL has it). Every server here may be killed and restarted without
touching the machine's own services. Shared by tests/test_faults.py and
bench/chaos_bench.py."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from .cluster_support import Listener, worker, worker_count
from .postgres_support import PrivatePostgres, private_postgres
from .redis_support import PrivateRedis, private_redis
from .serving import UI, free_port, served
from .waiting import Polled, until

ENDED = ("completed", "failed", "cancelled")
READY_TIMEOUT_S = 300.0


@dataclass
class Chaos:
    """The running cluster and what a scenario needs to hurt it and to judge the outcome."""

    root: Path
    env: dict[str, str]
    postgres: PrivatePostgres
    redis: PrivateRedis
    broker: PrivateRedis
    port: int
    stack: ExitStack
    web: subprocess.Popen[str] | None = None
    workers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_web(self) -> None:
        """`bgremover serve` on the cluster's port (the same one after a restart, as a
        load balancer would send clients back to)."""
        _, self.web = self.stack.enter_context(
            served(self.root / "web", env=self.env, port=self.port, log=self.root / "web.log")
        )

    def kill_web(self) -> None:
        assert self.web is not None
        self.web.kill()
        self.web.wait()

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[str]:
        """A new `bgremover worker`, counted once its processes have loaded the model."""
        folder = self.root / f"worker-{len(self.workers) + 1}"
        folder.mkdir()
        process = self.stack.enter_context(worker(folder, self.env, concurrency))
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[str]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def worker_log(self, process: subprocess.Popen[str]) -> str:
        index = self.workers.index(process) + 1
        return (self.root / f"worker-{index}" / "worker.log").read_text(errors="replace")

    def wait_workers(self, count: int) -> None:
        """Until /api/health counts ``count`` worker processes."""

        def counted() -> int:
            try:
                return worker_count(self.url)
            except (httpx.HTTPError, ValueError):
                return 0

        until(counted, lambda n: n >= count, READY_TIMEOUT_S, f"{count} workers ({self.root})")

    def upload(self, photos: list[Path]) -> set[str]:
        """One batch of ``photos``; the ids of its jobs."""
        files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
        created = httpx.post(f"{self.url}/api/batches", files=files, headers=UI, timeout=120)
        created.raise_for_status()
        return {job["id"] for job in created.json()["jobs"]}

    def jobs(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """The database's word (the truth) on ``ids``: status, attempt, error, end time."""
        with psycopg.connect(self.postgres.url.replace("+psycopg", ""), connect_timeout=10) as db:
            rows = db.execute(
                "SELECT id, status, attempt, error_code, error_message, start_time, end_time"
                " FROM jobs WHERE id = ANY(%s)",
                (list(ids),),
            ).fetchall()
        return {
            row[0]: {
                "status": row[1],
                "attempt": row[2],
                "error": f"{row[3]}: {row[4]}" if row[3] else None,
                # Stored as UTC without a zone.
                "start_time": row[5].replace(tzinfo=UTC) if row[5] else None,
                "end_time": row[6].replace(tzinfo=UTC) if row[6] else None,
            }
            for row in rows
        }

    def wait_jobs(
        self, ids: set[str], holds: Callable[[dict[str, dict[str, Any]]], bool], timeout: float
    ) -> dict[str, dict[str, Any]]:
        """Poll the database until ``holds(jobs)`` or ``timeout``; the jobs then (the caller
        judges them: a bench reports jobs that never ended rather than failing)."""
        seen: dict[str, dict[str, Any]] = {}

        def read() -> dict[str, dict[str, Any]]:
            nonlocal seen
            with contextlib.suppress(psycopg.OperationalError):  # it may be the fault under test
                seen = self.jobs(ids)
            return seen

        Polled(read).watch(lambda: bool(read()) and holds(seen), timeout)
        return seen

    def listen(self, last_event_id: str | None = None) -> Listener:
        listener = Listener(self.url, last_event_id)
        self.stack.callback(listener.close)
        return listener


def named_copies(sources: list[Path], folder: Path, count: int) -> list[Path]:
    """``count`` photos under names of their own in ``folder`` (``sources`` repeated): a
    batch whose jobs a test or the bench can tell apart."""
    copies = []
    for index in range(count):
        copy = folder / f"photo-{index}.jpg"
        copy.write_bytes(sources[index % len(sources)].read_bytes())
        copies.append(copy)
    return copies


def all_ended(jobs: dict[str, dict[str, Any]]) -> bool:
    return all(job["status"] in ENDED for job in jobs.values())


def first_after(jobs: dict[str, dict[str, Any]], field: str, moment: datetime) -> datetime | None:
    """The earliest ``field`` ("start_time": a run's claim, "end_time") after ``moment``."""
    times = [j[field] for j in jobs.values() if j[field] and j[field] > moment]
    return min(times, default=None)


def id_order_breaks(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Consecutive SSE ids that did not increase, as (before, after) pairs."""
    ids = [int(e["id"]) for e in events if e.get("id")]
    return [(a, b) for a, b in itertools.pairwise(ids) if b <= a]


@contextmanager
def chaos_cluster(
    root: Path,
    model: Path | None,
    *,
    separate_broker: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Chaos]:
    """The web process and nothing else started yet; ``model`` None is the real model.
    ``separate_broker`` False: Celery's broker is the event stream's Redis."""
    with ExitStack() as stack:
        postgres = stack.enter_context(private_postgres())
        (root / "redis").mkdir(parents=True)
        (root / "broker").mkdir()
        (root / "web").mkdir()
        redis = stack.enter_context(private_redis(root / "redis"))
        broker = stack.enter_context(private_redis(root / "broker")) if separate_broker else redis
        settings = {
            "BGREMOVER_DATABASE_URL": postgres.url,
            "BGREMOVER_REDIS_URL": redis.url,
            "BGREMOVER_BROKER_URL": broker.url,
            "BGREMOVER_REDIS_NAMESPACE": f"chaos-{uuid.uuid4().hex[:8]}",
            "BGREMOVER_STORAGE_URL": (root / "store").as_uri(),
            "BGREMOVER_WORKER_HEARTBEAT": "0.5",
            **({"BGREMOVER_MODEL_PATH": str(model)} if model is not None else {}),
            **(env or {}),
        }
        chaos = Chaos(root, settings, postgres, redis, broker, free_port(), stack)
        chaos.start_web()
        yield chaos
