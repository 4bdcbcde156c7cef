"""What the parts of ``jobs_bench.py`` share: their plan, measuring helpers, inputs, and
a driver that runs batches through the real job system and records what happens."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
from PIL import Image

from bgremover import Settings
from bgremover.jobs.bus.base import Event
from bgremover.jobs.eta.clock import FIRST_RUN_SECONDS
from bgremover.jobs.schemas import BatchCreated, Job, Upload
from bgremover.jobs.states import TERMINAL
from bgremover.system import JobSystem
from bgremover.workers.base import Report, ReportSink
from bgremover.workers.local import LocalProcessExecutor
from common import (  # bench/ is on sys.path when run as a script
    SAMPLES,
    OthersCpuShare,
    PhotoSpec,
    write_photo,
)
from report import row

T = TypeVar("T")
PARTS = ("submit", "dispatch", "latency", "model", "scale", "memory")
CONTENTION_WARN = 0.05
"""Other processes' share of the CPUs above which a part's numbers are flagged."""
WAIT_S = 900.0
"""Longest wait for a batch to finish before the part is abandoned."""
ETA_CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 0.90)
DISPATCH_MARKS = (1, 2, 10, 100)
TRACE_FRAMES = 8
TRACED_JOBS = 2_000
"""Jobs submitted under tracemalloc (tracing is slow) to see what the service keeps."""
GB = 1e9
BIG_PHOTO_SIZE = (4240, 2832)
"""12.0 MP at 3:2, the aspect of the two samples that are upscaled to it."""
RSS_EVERY_S = 0.05


@dataclass(frozen=True)
class Plan:
    """How much work each part does."""

    submit_jobs: int = 10_000
    dispatch_jobs: int = 1_000
    raw_calls: int = 300
    backlog_jobs: int = 10_000
    """0: skip the dispatch-behind-a-backlog measurement."""
    backlog_measured: int = 500
    """Completions measured with the backlog queued."""
    many_batches: int = 100
    per_batch: int = 2
    latency_jobs: int = 300
    photos: int = 20
    scale_pending: tuple[int, ...] = (10, 10_000, 100_000)
    scale_measured: int = 300
    """Completions measured at each queue length (and per run of the two-process part)."""


FULL = Plan()
QUICK = Plan(
    dispatch_jobs=300,
    raw_calls=100,
    backlog_jobs=0,
    many_batches=50,
    latency_jobs=100,
    photos=8,
    scale_pending=(10, 10_000),
    scale_measured=150,
)


# --------------------------------------------------------------------------------------------
# Printing and measuring helpers


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def report_contention(meter: OthersCpuShare) -> None:
    """Other processes' CPU share during this part, flagged when it skews the ratios."""
    share = meter.share()
    flag = "  ← contended: ratios are skewed" if share > CONTENTION_WARN else ""
    row("other processes' CPU share during this part", f"{share:.0%}{flag}")


def contended(work: Callable[[], T]) -> tuple[T, float]:
    """``work()`` and other processes' CPU share while it ran."""
    meter = OthersCpuShare()
    result = work()
    return result, meter.share()


def report_sides(label: str, baseline: float, system: float) -> None:
    """Other processes' CPU share during a baseline and during the system run it is
    compared with; unequal shares make the ratio unfair."""
    flag = "  ← unequal: the ratio is skewed" if abs(baseline - system) > CONTENTION_WARN else ""
    row(f"other processes' CPU share: {label}", f"{baseline:.0%} / {system:.0%}{flag}")


# --------------------------------------------------------------------------------------------
# Inputs


def make_tiny_png(path: Path) -> Path:
    """A 16×16 crop of a real photo."""
    with Image.open(SAMPLES / "coffee.jpg") as photo:
        photo.convert("RGB").crop((200, 100, 216, 116)).save(path, "PNG")
    return path


# Sizes interleaved so that every stretch of the batch mixes small and 1–3 MP photos; the
# first PLAN.photos are used (8 in --quick).
PHOTOS: tuple[PhotoSpec, ...] = (
    PhotoSpec("astronaut", "samples/astronaut.jpg"),
    PhotoSpec("coffee-2mp", "samples/coffee.jpg", (1732, 1155)),
    PhotoSpec("rocket", "skimage.rocket"),
    PhotoSpec("chelsea-1.5mp", "samples/chelsea.jpg", (1500, 1000)),
    PhotoSpec("motorcycle-left", "skimage.motorcycle_left"),
    PhotoSpec("retina", "skimage.retina"),
    PhotoSpec("chelsea", "samples/chelsea.jpg"),
    PhotoSpec("motorcycle-3mp", "skimage.motorcycle_left", (2000, 1500)),
    PhotoSpec("camera", "skimage.camera"),
    PhotoSpec("rocket-2.4mp", "skimage.rocket", (1900, 1267)),
    PhotoSpec("coffee", "samples/coffee.jpg"),
    PhotoSpec("astronaut-1mp", "samples/astronaut.jpg", (1000, 1000)),
    PhotoSpec("hubble", "skimage.hubble_deep_field"),
    PhotoSpec("motorcycle-right", "skimage.motorcycle_right"),
    PhotoSpec("astronaut-3mp", "samples/astronaut.jpg", (1732, 1732)),
    PhotoSpec("immunohistochemistry", "skimage.immunohistochemistry"),
    PhotoSpec("coffee-3mp", "samples/coffee.jpg", (2121, 1414)),
    PhotoSpec("rocket-1.2mp", "skimage.rocket", (1344, 896)),
    PhotoSpec("motorcycle-right-1mp", "skimage.motorcycle_right", (1224, 826)),
    PhotoSpec("chelsea-2.5mp", "samples/chelsea.jpg", (1936, 1290)),
)


def write_photos(specs: Sequence[PhotoSpec], directory: Path) -> list[Path]:
    """JPEGs of the photos (bundled samples at native size are copied byte for byte)."""
    return [write_photo(spec, directory) for spec in specs]


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """A SQLite file in ``data_dir`` unless ``database_url`` is given."""
    overrides.setdefault("database_url", f"sqlite:///{data_dir / 'jobs.sqlite3'}")
    return Settings(data_dir=data_dir, **overrides)


def database_bytes(settings: Settings) -> tuple[int, int]:
    """Sizes of the SQLite file and its write-ahead log."""
    main = settings.data_dir / "jobs.sqlite3"
    wal = main.with_name(main.name + "-wal")
    return (main.stat().st_size if main.exists() else 0, wal.stat().st_size if wal.exists() else 0)


# --------------------------------------------------------------------------------------------
# Driving the real system and recording what happens


@dataclass(frozen=True)
class Arrival:
    """A worker report as it reached the parent process."""

    at: float
    """``time.time()`` when the executor's monitor thread handed it to the service."""
    report: Report
    handled_s: float
    """How long ``JobService.handle`` took with it (the monitor thread is blocked meanwhile)."""


class RecordingExecutor(LocalProcessExecutor):
    """The real local executor; it only notes when each report arrives and its handling time."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.arrivals: list[Arrival] = []

    def start(self, sink: ReportSink) -> None:
        def record(report: Report) -> None:
            at, started = time.time(), time.perf_counter()
            sink(report)
            self.arrivals.append(Arrival(at, report, time.perf_counter() - started))

        super().start(record)


@dataclass(frozen=True)
class Received:
    at: float
    """``time.time()`` when the subscriber got the event."""
    event: Event


class EventRecorder:
    """A subscriber on its own thread, as an SSE stream would be; keeps every event."""

    def __init__(self, system: JobSystem) -> None:
        self._subscription = system.bus.subscribe(maxsize=10_000_000)
        self.received: list[Received] = []
        self._ended_jobs: set[str] = set()
        self._ended_batches: set[str] = set()
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="bench-subscriber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            event = self._subscription.get(0.2)
            if event is None:
                if self._stopping:
                    return
                continue
            self.received.append(Received(time.time(), event))
            self._note_end(event)

    def _note_end(self, event: Event) -> None:
        if event.type == "job.updated" and event.data["job"].get("status") in TERMINAL:
            with self._changed:
                self._ended_jobs.add(event.data["job"]["id"])
                self._changed.notify_all()
        elif event.type == "batch.updated" and event.data["batch"]["status"] in TERMINAL:
            with self._changed:
                self._ended_batches.add(event.data["batch"]["id"])
                self._changed.notify_all()

    def wait(self, done: Callable[[set[str], set[str]], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: done(self._ended_jobs, self._ended_batches), timeout
            )

    def close(self) -> int:
        """Stop reading; returns how often the subscriber fell behind (should be 0)."""
        self._stopping = True
        self._subscription.close()
        self._thread.join()
        return self._subscription.overflows


@dataclass
class BatchRun:
    """What batches through a running ``JobSystem`` left behind."""

    created: list[BatchCreated]
    submitted_at: float
    created_at: float
    ready_s: float
    arrivals: list[Arrival]
    received: list[Received]
    claim_s: list[float]
    observations_before: int
    learned_seconds: dict[int, float]
    overflows: int

    @property
    def batch_id(self) -> str:
        return self.created[0].batch.id

    @property
    def jobs(self) -> list[Job]:
        return [job for created in self.created for job in created.jobs]


@contextlib.contextmanager
def running_system(settings: Settings) -> Iterator[tuple[JobSystem, RecordingExecutor, float]]:
    """A started system whose workers have loaded the model; yields it and the load time."""
    executor = RecordingExecutor(settings)
    system = JobSystem(settings, executor=executor)
    started = time.perf_counter()
    system.start()
    try:
        if not executor.wait_ready(120):
            raise RuntimeError("the workers did not load the model within 120 s")
        yield system, executor, time.perf_counter() - started
    finally:
        system.stop()


def timed_claims(system: JobSystem) -> list[float]:
    """Time every successful ``claim_next`` the scheduler makes (instance attribute only)."""
    durations: list[float] = []
    service = system.service
    claim = service.claim_next

    def timed(**kwargs: Any) -> Any:
        started = time.perf_counter()
        item = claim(**kwargs)
        if item is not None:
            durations.append(time.perf_counter() - started)
        return item

    service.claim_next = timed  # type: ignore[method-assign]
    return durations


def run_batch(
    settings: Settings,
    uploads: Sequence[Upload],
    *,
    backlog: Sequence[Upload] = (),
    stop_after: int | None = None,
) -> BatchRun:
    """``run_batches`` with one batch."""
    return run_batches(settings, [uploads], backlog=backlog, stop_after=stop_after)


def run_batches(
    settings: Settings,
    batches: Sequence[Sequence[Upload]],
    *,
    backlog: Sequence[Upload] = (),
    stop_after: int | None = None,
) -> BatchRun:
    """Submit each of ``batches`` with ``create_batch``, one after the other, to a system
    whose workers are ready, and wait until every job and batch has ended (or ``stop_after``
    jobs have). ``backlog`` is queued first, in its own batch, before the workers start."""
    with contextlib.ExitStack() as stack:
        if backlog:
            # Queue it while nothing runs, so that the measured batch has it ahead.
            queuing = JobSystem(settings)
            queuing.service.create_batch(backlog)
            queuing.stop()
        system, executor, ready_s = stack.enter_context(running_system(settings))
        claims = timed_claims(system)
        recorder = EventRecorder(system)
        observations = system.service.clock.observations
        submitted = time.time()
        created = [system.service.create_batch(uploads) for uploads in batches]
        created_at = time.time()
        batch_ids = {c.batch.id for c in created}
        wanted = stop_after or sum(len(c.jobs) for c in created)
        finished = recorder.wait(
            lambda jobs, ended: (
                len(jobs) >= wanted and (stop_after is not None or batch_ids <= ended)
            ),
            WAIT_S,
        )
        learned = {b: system.service.clock.job_seconds(b) for b in range(len(FIRST_RUN_SECONDS))}
        overflows = recorder.close()
        if not finished:
            raise RuntimeError(f"the batch did not finish within {WAIT_S:.0f} s")
    return BatchRun(
        created=created,
        submitted_at=submitted,
        created_at=created_at,
        ready_s=ready_s,
        arrivals=list(executor.arrivals),
        received=list(recorder.received),
        claim_s=claims,
        observations_before=observations,
        learned_seconds=learned,
        overflows=overflows,
    )


def first_status(run: BatchRun, statuses: Iterable[str]) -> dict[str, Received]:
    """Per job, the first ``job.updated`` that reported one of ``statuses``."""
    wanted, found = set(statuses), {}
    for received in run.received:
        event = received.event
        if event.type == "job.updated" and event.data["job"].get("status") in wanted:
            found.setdefault(event.data["job"]["id"], received)
    return found


def report_health(run: BatchRun) -> None:
    ended = first_status(run, TERMINAL)
    statuses = [r.event.data["job"]["status"] for r in ended.values()]
    failed = [s for s in statuses if s != "completed"]
    if failed:
        row("jobs that did not complete", f"{len(failed)} ({', '.join(sorted(set(failed)))})")
    if run.overflows:
        row("subscriber overflows (resync events)", str(run.overflows))
