"""Helpers for job-system tests: databases on SQLite and PostgreSQL, services, uploads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common as bench_common
from bench.common import postgres_database as postgres_database  # shared with bench/

from bgremover import Settings
from bgremover.jobs.bus.base import Event, Subscription
from bgremover.jobs.bus.memory import InMemoryEventBus
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.schemas import Upload
from bgremover.jobs.sequences import EventSeq
from bgremover.jobs.service import JobService
from bgremover.storage import LocalStorage
from bgremover.storage.files import FileStore
from bgremover.workers.base import Finished, StageProgress, Started, WorkItem

from .waiting import Followed, until

WAIT_S = 120.0
"""How long a test waits for the next event before it calls the job stuck."""


def stage_uploads(root: Path, *sources: Path) -> list[Upload]:
    """Copies of ``sources`` in ``root``'s staging folder (``bench.common.stage_uploads``)."""
    return bench_common.stage_uploads(root / "staging", sources)


@dataclass
class Clock:
    """A controllable UTC clock for the service."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 29, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Harness:
    service: JobService
    bus: InMemoryEventBus
    clock: Clock
    settings: Settings
    url: str
    root: Path
    wakes: list[int] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)

    def uploads(self, *sources: Path) -> list[Upload]:
        return stage_uploads(self.root, *sources)

    def reopen(self) -> Harness:
        """A new service on the same database and files: a restart."""
        return build_harness(self.root, self.url, clock=self.clock, bus=self.bus)


def build_harness(
    root: Path,
    url: str,
    *,
    clock: Clock | None = None,
    bus: InMemoryEventBus | None = None,
    **settings: object,
) -> Harness:
    clock = clock or Clock()
    config = Settings(data_dir=root, cache_dir=root / "cache", database_url=url, **settings)  # type: ignore[arg-type]
    engine = connect(url)
    migrate(engine)
    if bus is None:
        seq = EventSeq(engine)
        bus = InMemoryEventBus(seq=seq.take, last=seq.last())
    service = JobService(
        transactions=session_factory(engine),
        files=FileStore(LocalStorage(root / "files"), root / "files"),
        bus=bus,
        settings=config,
        now=clock,
    )
    harness = Harness(service, bus, clock, config, url, root)
    service.attach(cancel_running=harness.cancels.append, wake=lambda: harness.wakes.append(1))
    return harness


def drain(subscription: Subscription, timeout: float = 0.05) -> list[Event]:
    events = []
    while (event := subscription.get(timeout)) is not None:
        events.append(event)
    return events


STAGE_TIMINGS = {
    "Loading": 0.05, "Preprocessing": 0.02, "AI model": 2.0, "Mask": 0.05,
    "Compositing": 0.01, "Saving": 0.1,
}  # fmt: skip


COFFEE_PIXELS = 600 * 400
"""samples/coffee.jpg, the size ``run_to_completion`` reports."""


def run_to_completion(
    h: Harness,
    item: WorkItem,
    *,
    size: tuple[int, int] = (600, 400),
    timings: dict[str, float] = STAGE_TIMINGS,
) -> None:
    """Report what a worker reports for a successful run (stages that took ``timings``), and
    write its result file."""
    result = h.root / "files" / item.result_key
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(b"result")
    h.service.handle(Started(item.job_id, item.dispatch_id, "test-worker"))
    for stage in timings:
        h.service.handle(StageProgress(item.job_id, item.dispatch_id, stage, 0.0, time.time()))
        h.service.handle(StageProgress(item.job_id, item.dispatch_id, stage, 1.0, time.time()))
    h.service.handle(Finished(item.job_id, item.dispatch_id, size[0], size[1], "png", 6, timings))


def claim(h: Harness) -> WorkItem:
    item = h.service.claim_next()
    assert item is not None
    return item


def wait_for_job(client: Any, job_id: str, test: Callable[[dict[str, Any]], bool]) -> Any:
    """The job as the API shows it once ``test`` holds, re-read after each event of the
    app's bus (subscribed before the first read, so no change slips between)."""
    source = Followed(client.app.state.system.bus, lambda: client.get(f"/api/jobs/{job_id}").json())
    return until(source, test, WAIT_S, f"job {job_id} in the expected state")
