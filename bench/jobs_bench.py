"""Job-system benchmark: submission, scheduling overhead, memory, event latency, ETA error.

Every number is measured in the run; speed figures are printed beside a baseline measured in
the same run. Each part uses a fresh temporary ``data_dir`` with its own SQLite database.

Part 1 measures the system itself, with an engine stage that costs next to nothing: a tiny
ISNet-compatible ONNX model (``input`` float32 [1,3,1024,1024] → ReduceMean over channels →
Sigmoid → ``output`` float32 [1,1,1024,1024]), built by ``bench/tiny_model.py`` with ``onnx``, run
through ``Settings(model_path=...)``, on a 16×16 PNG crop of ``samples/coffee.jpg``.

- ``submit``   (a) time of ``JobService.create_batch`` with 10,000 uploads (copies of the tiny
               PNG; staging the copies is not timed), (c) RSS growth of this process and the
               SQLite file size for those 10,000 pending jobs, plus what one ``active_snapshot``
               (every SSE connect) and one ``claim_next`` cost with them queued; then 2,000 more
               under ``tracemalloc`` for the heap the service keeps, by allocating line.
- ``dispatch`` (b) time until the scheduler has dispatched the first N jobs of a 1,000-job
               batch and the end-to-end jobs/s (claims, reports, DB writes, events) with the real
               ``LocalProcessExecutor`` at ``max_concurrent_jobs=2``, against the same engine call
               in a loop in this process (1 intra-op thread, as each worker gets); where the time
               goes (worker busy share, report handling, claims); the same throughput with
               10,000 jobs pending (full run only) and with the jobs submitted as many small
               batches in one session (as one upload request per file makes them).
- ``latency``  (d) worker progress call (``StageProgress.sent_at``) → subscriber receiving
               ``job.progress``, p50/p90/p99, split into worker→parent, parent→publish and
               publish→subscriber; the same for ``job.updated`` at stage changes and at
               completion (from the ``Finished`` report's arrival). The tiny model gets three
               1024×1024 MatMuls here so inference lasts long enough for progress ticks.

Part 2 (``model``) runs the real ISNet model: a 20-photo batch (``samples/*.jpg``,
scikit-image sample photos, several resized to 1–3 MP with LANCZOS) through ``JobSystem``
(default settings, ``max_concurrent_jobs=2``) against ``load_remover(Settings()).process``
over the same photos in one process on all cores: images/s for both and the ratio. Part 3
reuses that batch's events: the batch ETA (``batch.updated``) at 10/25/50/75/90 % of the
batch's wall time and per-job ETAs (``job.progress`` ``eta``, ``job.updated``
``estimated_time_remaining`` while processing) against the actual remaining time; first half
against second half, and jobs started before any ETA learning (defaults) against later ones.

Part 4 (``scale``) measures the queue at scale on SQLite and on PostgreSQL: with 10, 10,000
and 100,000 jobs pending (plus the measured ones, queued before the workers start),
``claim_next`` alone (50 claims, no workers) and the scheduling rate of the first completions
with 2 workers (cheap model), each against the 10-job rate; then two processes sharing one
PostgreSQL database (the second a spawned ``JobSystem`` of its own), with an engine-bound
model (three MatMuls, one worker of one thread each), against one process: completions/s of
the same batch.

Part 5 (``memory``) starts a real ``bgremover serve`` (2 workers, the real model) on a
temporary data dir, four times: with ``BGREMOVER_LEAN_MODEL_MEMORY=0`` (the old behaviour) and
with the default, in the order before, after, after, before. Each first runs the two bundled
samples (so both workers have loaded and warmed up), then uploads two 12 MP photos (samples
upscaled with LANCZOS) in one batch and samples the whole process tree's RSS (web process +
workers, summed) every 50 ms until both jobs end: peak total RSS, idle RSS before, wall time
from upload to both ended and the tree's CPU seconds in that time, side by side, plus how far
the two servers' masks differ (IoU at 128, max |Δalpha|).

Other processes' CPU use during each part is printed: this is a shared 2-core machine, and
contention skews ratios.

Builds the tiny model with the ``onnx`` package (a project dependency since the fp32 copy).

Run it by hand from the repository root (it is not a test):

    .venv/bin/python bench/jobs_bench.py                  # everything, about 6-10 min on 2 cores
    .venv/bin/python bench/jobs_bench.py --quick          # smaller counts, about 3 min
    .venv/bin/python bench/jobs_bench.py --only dispatch --only latency
    .venv/bin/python bench/jobs_bench.py --only scale      # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/jobs_bench.py --only memory     # real model, about 5 min
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import psutil
from PIL import Image, ImageOps

from bgremover import Settings, load_remover
from bgremover.jobs.bus.base import Event
from bgremover.jobs.eta.clock import FIRST_RUN_SECONDS, size_bucket
from bgremover.jobs.schemas import BatchCreated, Job, Upload
from bgremover.jobs.states import TERMINAL
from bgremover.system import JobSystem
from bgremover.workers.base import Finished, Report, ReportSink, StageProgress, Started
from bgremover.workers.local import LocalProcessExecutor
from engine_bench import mask_agreement  # bench/ is on sys.path when run as a script
from report import note, row, section
from sse_bench import ResourceSampler, Server, cpu_seconds
from tiny_model import build_tiny_model

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
PARTS = ("submit", "dispatch", "latency", "model", "scale", "memory")
MIB = 1024 * 1024
CONTENTION_WARN = 0.05
"""Other processes' share of the CPUs above which a part's numbers are flagged."""
WAIT_S = 900.0
"""Longest wait for a batch to finish before the part is abandoned."""
ETA_CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 0.90)
DISPATCH_MARKS = (1, 2, 10, 100)
SLOTS = 2
"""``max_concurrent_jobs`` everywhere here, as the issue asks."""
TRACE_FRAMES = 8
TRACED_JOBS = 2_000
"""Jobs submitted under tracemalloc (tracing is slow) to see what the service keeps."""
GB = 1e9
BIG_PHOTO_SIZE = (4240, 2832)
"""12.0 MP at 3:2, the aspect of the two samples that are upscaled to it."""
RSS_EVERY_S = 0.05
UI_HEADER = {"X-BGRemover-Request": "1"}


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


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """p50 / p90 / p99 / max of durations in seconds, as milliseconds."""
    if not values:
        return "no samples"
    p50, p90, p99 = (pct(values, q) * 1000 for q in (50, 90, 99))
    return f"p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max(values) * 1000:.1f} ms"


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def _system_busy_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMeter:
    """Share of all CPUs used by processes other than this one and its reaped children."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._busy = _system_busy_s()
        self._own = _own_cpu_s()

    def others_share(self) -> float:
        wall = time.monotonic() - self._wall
        others = (_system_busy_s() - self._busy) - (_own_cpu_s() - self._own)
        return max(0.0, others) / (wall * (os.cpu_count() or 1))

    def report(self) -> None:
        share = self.others_share()
        flag = "  ← contended: ratios are skewed" if share > CONTENTION_WARN else ""
        row("other processes' CPU share during this part", f"{share:.0%}{flag}")


def contended(work: Callable[[], T]) -> tuple[T, float]:
    """``work()`` and other processes' CPU share while it ran."""
    meter = CpuMeter()
    result = work()
    return result, meter.others_share()


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


def stage_uploads(staging: Path, sources: Iterable[Path]) -> list[Upload]:
    """Copies in a staging folder, as the web layer hands uploads to ``create_batch``."""
    staging.mkdir(parents=True, exist_ok=True)
    uploads = []
    for source in sources:
        copy = staging / uuid.uuid4().hex
        shutil.copyfile(source, copy)
        uploads.append(Upload(file_name=source.name, path=str(copy)))
    return uploads


@dataclass(frozen=True)
class PhotoSpec:
    name: str
    origin: str
    """``samples/<file>`` or ``skimage.<function>``."""
    size: tuple[int, int] | None = None
    """Centre-cropped to this aspect and LANCZOS-resized; None keeps the photo as it is."""


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


def load_origin(origin: str) -> Image.Image:
    if origin.startswith("samples/"):
        with Image.open(REPO / origin) as image:
            return image.convert("RGB")
    from skimage import data

    name = origin.removeprefix("skimage.")
    if name in ("motorcycle_left", "motorcycle_right"):
        array = data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
    else:
        array = getattr(data, name)()
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def write_photos(specs: Sequence[PhotoSpec], directory: Path) -> list[Path]:
    """JPEGs of the photos (bundled samples at native size are copied byte for byte)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = directory / f"{spec.name}.jpg"
        if spec.size is None and spec.origin.startswith("samples/"):
            shutil.copyfile(REPO / spec.origin, path)
        else:
            image = load_origin(spec.origin)
            if spec.size is not None:
                image = ImageOps.fit(image, spec.size, Image.Resampling.LANCZOS)
            image.save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


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


# --------------------------------------------------------------------------------------------
# Part 1 (a) and (c): submitting 10,000 jobs


def part_submit(plan: Plan, root: Path, tiny_model: Path, tiny_png: Path) -> None:
    section(f"1a/1c  submitting {plan.submit_jobs:,} jobs (service only, nothing running)")
    meter = CpuMeter()
    settings = settings_for(root / "submit", model_path=tiny_model)
    system = JobSystem(settings)  # not started: no workers, no scheduler
    try:
        service = system.service
        service.create_batch(stage_uploads(root / "staging", [tiny_png]))  # warm-up
        rss_before, db_before = rss(), sum(database_bytes(settings))
        seq_before = system.bus.last_seq
        uploads = stage_uploads(root / "staging", [tiny_png] * plan.submit_jobs)
        started = time.perf_counter()
        created = service.create_batch(uploads)
        submit_s = time.perf_counter() - started
        rss_held = rss()
        batch_id = created.batch.id
        del created
        rss_after = rss()
        main_db, wal = database_bytes(settings)
        with system.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpointed, _ = database_bytes(settings)
        n = plan.submit_jobs
        row("create_batch wall time", f"{submit_s:.2f} s  ({n / submit_s:,.0f} jobs/s)")
        row(
            "RSS growth of this process, BatchCreated held",
            f"{(rss_held - rss_before) / MIB:.1f} MiB",
        )
        row(
            "RSS growth after dropping BatchCreated",
            f"{(rss_after - rss_before) / MIB:.1f} MiB  "
            f"({(rss_after - rss_before) / n / 1024:.2f} KiB/job)",
        )
        note(
            "RSS keeps what the allocator got during the call; what the service itself "
            "still holds is the tracemalloc figure below (the in-memory bus keeps the last "
            f"10,000 events for replay; this call published {system.bus.last_seq - seq_before:,})"
        )
        row("SQLite file + WAL after the batch", f"{main_db / MIB:.1f} + {wal / MIB:.1f} MiB")
        row(
            "SQLite file after a WAL checkpoint",
            f"{checkpointed / MIB:.1f} MiB  ({(checkpointed - db_before) / n:.0f} B/job)",
        )
        measure_queries(system, batch_id)
    finally:
        system.stop()
    retained_by_site(root / "submit-traced", tiny_model, tiny_png, TRACED_JOBS)
    meter.report()


def retained_by_site(data_dir: Path, tiny_model: Path, tiny_png: Path, n: int) -> None:
    """The same submission again on a fresh database, under tracemalloc: the Python memory
    still held once the caller has dropped the result, by allocating line."""
    system = JobSystem(settings_for(data_dir, model_path=tiny_model))
    try:
        system.service.create_batch(stage_uploads(data_dir / "staging", [tiny_png]))
        uploads = stage_uploads(data_dir / "staging", [tiny_png] * n)
        gc.collect()
        tracemalloc.start(TRACE_FRAMES)
        try:
            created = system.service.create_batch(uploads)
            del created
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    finally:
        system.stop()
    by_site = project_sites(snapshot)
    kept = sum(by_site.values())
    row(
        f"heap kept after a {n:,}-job create_batch (tracemalloc)",
        f"{kept / MIB:.1f} MiB  ({kept / n / 1024:.2f} KiB/job)",
    )
    for site, size in sorted(by_site.items(), key=lambda item: -item[1])[:3]:
        row(f"  allocated under {site}", f"{size / MIB:.1f} MiB")


def project_sites(snapshot: tracemalloc.Snapshot) -> dict[str, int]:
    """Live bytes per innermost line of this project's code that led to the allocation."""
    sites: dict[str, int] = {}
    source = str(REPO / "src")
    for stat in snapshot.statistics("traceback"):
        frames = [f for f in stat.traceback if f.filename.startswith(source)]
        frame = frames[-1] if frames else stat.traceback[-1]
        where = f"{Path(frame.filename).relative_to(source) if frames else frame.filename}"
        key = f"{where}:{frame.lineno}"
        sites[key] = sites.get(key, 0) + stat.size
    return sites


def measure_queries(system: JobSystem, batch_id: str) -> None:
    """What reads and claims cost with the big batch queued."""
    service = system.service
    started = time.perf_counter()
    snapshot = service.active_snapshot()
    row(
        f"active_snapshot() (every SSE connect), {len(snapshot.jobs):,} active jobs",
        f"{time.perf_counter() - started:.2f} s",
    )
    started = time.perf_counter()
    service.get_batch(batch_id)
    row("get_batch() of the big batch", ms(time.perf_counter() - started))
    claims = []
    for _ in range(20):
        started = time.perf_counter()
        service.claim_next()
        claims.append(time.perf_counter() - started)
    row("claim_next() with the batch queued (20 claims)", f"mean {ms(statistics.mean(claims))}")


# --------------------------------------------------------------------------------------------
# Part 1 (b): scheduling throughput against the raw engine call


def raw_engine_loop(model: Path, image: Path, calls: int, out: Path) -> float:
    """Seconds per ``Remover.process`` call in a loop here (1 thread, as each worker runs)."""
    remover = load_remover(Settings(model_path=model, intra_op_threads=1))
    for _ in range(3):
        remover.process(image, destination=out)
    started = time.perf_counter()
    for _ in range(calls):
        remover.process(image, destination=out)
    return (time.perf_counter() - started) / calls


def part_dispatch(plan: Plan, root: Path, tiny_model: Path, tiny_png: Path) -> None:
    n = plan.dispatch_jobs
    section(f"1b  scheduling {n:,} cheap jobs: LocalProcessExecutor, max_concurrent_jobs=2")
    meter = CpuMeter()
    raw_s, raw_others = contended(
        lambda: raw_engine_loop(tiny_model, tiny_png, plan.raw_calls, root / "raw.png")
    )
    settings = settings_for(root / "dispatch", model_path=tiny_model, max_concurrent_jobs=2)
    uploads = stage_uploads(root / "staging", [tiny_png] * n)
    run, run_others = contended(lambda: run_batch(settings, uploads))
    report_health(run)
    row("worker start (spawn + model load), both ready", f"{run.ready_s:.2f} s")
    row(f"create_batch of {n:,} (included below)", ms(run.created_at - run.submitted_at))
    report_dispatch_marks(run)
    system_rate = report_throughput(run, raw_s, plan.raw_calls)
    report_sides("raw loop / system run", raw_others, run_others)
    report_overheads(run, raw_s)
    report_lifecycle(run)
    meter.report()
    if plan.backlog_jobs:
        dispatch_behind_backlog(plan, root, tiny_model, tiny_png, system_rate)
    dispatch_many_batches(plan, root, tiny_model, tiny_png, system_rate)


def dispatch_times(run: BatchRun) -> list[float]:
    """Publish times of each job's move to processing (the claim), in order."""
    return sorted(r.event.at for r in first_status(run, ["processing"]).values())


def report_dispatch_marks(run: BatchRun) -> None:
    dispatched = dispatch_times(run)
    marks = [m for m in DISPATCH_MARKS if m <= len(dispatched)] + [len(dispatched)]
    for mark in dict.fromkeys(marks):
        at = dispatched[mark - 1]
        row(
            f"first {mark:,} dispatched (s after submit / after create returned)",
            f"{at - run.submitted_at:.3f} s / {at - run.created_at:.3f} s",
        )
    gaps = np.diff(dispatched) if len(dispatched) > 1 else np.array([0.0])
    row(
        "gap between dispatches: p50 / max / count > 0.5 s",
        f"{ms(float(np.median(gaps)))} / {ms(float(gaps.max()))} / {int((gaps > 0.5).sum())}",
    )
    row("freed slot → next job claimed (Finished arrival →)", spread(refill_delays(run)))


def refill_delays(run: BatchRun) -> list[float]:
    """Per ``Finished`` report while jobs were still pending, the wait for the next claim."""
    dispatched = dispatch_times(run)
    freed = sorted(a.at for a in run.arrivals if isinstance(a.report, Finished))
    delays = []
    for at in freed[: max(0, len(dispatched) - SLOTS)]:
        index = int(np.searchsorted(dispatched, at))
        if index < len(dispatched):
            delays.append(dispatched[index] - at)
    return delays


def report_throughput(run: BatchRun, raw_s: float, raw_calls: int) -> float:
    ends = sorted(r.at for r in first_status(run, TERMINAL).values())
    n = len(ends)
    e2e = n / (ends[-1] - run.submitted_at)
    steady = (n - 1) / (ends[-1] - ends[0]) if n > 1 else float("nan")
    raw_rate = 1 / raw_s
    row(
        f"raw engine call in a loop here ({raw_calls} calls, 1 thread)",
        f"{ms(raw_s)}/call  = {raw_rate:.1f} jobs/s",
    )
    row(
        "system, end to end (submit → last job seen ended)",
        f"{e2e:.1f} jobs/s  = {1000 / e2e:.1f} ms/job",
    )
    row("system, steady state (first → last completion)", f"{steady:.1f} jobs/s")
    row("ratio system e2e / raw loop (2 workers: 2.0 would be ideal)", f"{e2e / raw_rate:.2f}×")
    row("system time per job / raw time per call", f"{raw_rate / e2e:.2f}×")
    return steady


def report_overheads(run: BatchRun, raw_s: float) -> None:
    """Where a job's time goes: in the worker, in the monitor thread, in claims."""
    started = {a.report.job_id: a.at for a in run.arrivals if isinstance(a.report, Started)}
    finished = [a for a in run.arrivals if isinstance(a.report, Finished)]
    busy = [a.at - started[a.report.job_id] for a in finished if a.report.job_id in started]
    engine = [sum(a.report.timings.values()) for a in finished if isinstance(a.report, Finished)]
    ends = sorted(r.at for r in first_status(run, TERMINAL).values())
    span = ends[-1] - dispatch_times(run)[0]
    row(
        "worker: Started → Finished arrival, mean",
        f"{ms(statistics.mean(busy))}  "
        f"(engine stages {ms(statistics.mean(engine))}, raw loop {ms(raw_s)})",
    )
    row(
        "worker busy share (Σ Started→Finished / 2 slots / span)",
        f"{sum(busy) / (SLOTS * span):.0%}",
    )
    by_kind: dict[str, list[float]] = {}
    for arrival in run.arrivals:
        by_kind.setdefault(type(arrival.report).__name__, []).append(arrival.handled_s)
    jobs = max(1, len(finished))
    for kind, handled in by_kind.items():
        row(
            f"service.handle({kind}): per job × mean",
            f"{len(handled) / jobs:.1f} × {ms(statistics.mean(handled))}",
        )
    monitor = sum(sum(h) for h in by_kind.values())
    row("monitor thread busy in service.handle / span", f"{monitor / span:.0%}")
    if run.claim_s:
        row(
            "claim_next (scheduler thread), mean / p99",
            f"{ms(statistics.mean(run.claim_s))} / {ms(pct(run.claim_s, 99))}",
        )
    events = len(run.received) / jobs
    row("events published per job", f"{events:.1f}")


def dispatch_behind_backlog(
    plan: Plan, root: Path, tiny_model: Path, tiny_png: Path, plain_rate: float
) -> None:
    n, backlog = plan.backlog_measured, plan.backlog_jobs
    section(f"1b' cheap jobs with {backlog:,} pending: the first {n:,} completions")
    meter = CpuMeter()
    settings = settings_for(root / "backlog", model_path=tiny_model, max_concurrent_jobs=2)
    # The backlog is queued before the workers start and one more batch after, so claims
    # and reports run with ~10,000 jobs pending; the first n completions are measured.
    run = run_batch(
        settings,
        stage_uploads(root / "staging", [tiny_png]),
        backlog=stage_uploads(root / "staging", [tiny_png] * backlog),
        stop_after=n,
    )
    ends = sorted(r.at for r in first_status(run, TERMINAL).values())[:n]
    report_variant(run, (len(ends) - 1) / (ends[-1] - ends[0]), plain_rate)
    meter.report()


def dispatch_many_batches(
    plan: Plan, root: Path, tiny_model: Path, tiny_png: Path, plain_rate: float
) -> None:
    count, size = plan.many_batches, plan.per_batch
    section(
        f"1b'' {count * size:,} cheap jobs as {count} batches of {size} in one session "
        "(one upload request each)"
    )
    meter = CpuMeter()
    settings = settings_for(root / "many", model_path=tiny_model, max_concurrent_jobs=2)
    batches = [stage_uploads(root / "staging", [tiny_png] * size) for _ in range(count)]
    run = run_batches(settings, batches)
    report_health(run)
    row(
        f"submitting the {count} batches (create_batch × {count})",
        ms(run.created_at - run.submitted_at),
    )
    # Measured once every batch is in: completions after the last create_batch returned.
    ends = sorted(r.at for r in first_status(run, TERMINAL).values() if r.at > run.created_at)
    rate = (len(ends) - 1) / (ends[-1] - run.created_at) if len(ends) > 1 else float("nan")
    report_variant(run, rate, plain_rate)
    meter.report()


def report_variant(run: BatchRun, rate: float, plain_rate: float) -> None:
    row("steady jobs/s", f"{rate:.1f} jobs/s = {rate / plain_rate:.2f}× the single-batch rate")
    if run.claim_s:
        row(
            "claim_next (scheduler thread), mean / p99",
            f"{ms(statistics.mean(run.claim_s))} / {ms(pct(run.claim_s, 99))}",
        )
    finished = [a.handled_s for a in run.arrivals if isinstance(a.report, Finished)]
    row(
        "service.handle(Finished), mean / p99",
        f"{ms(statistics.mean(finished))} / {ms(pct(finished, 99))}",
    )


# --------------------------------------------------------------------------------------------
# Part 1 (d): event latency


@dataclass
class Latencies:
    """Seconds from a source moment to the subscriber, with the parts in between."""

    total: list[float] = field(default_factory=list)
    to_parent: list[float] = field(default_factory=list)
    to_publish: list[float] = field(default_factory=list)
    to_subscriber: list[float] = field(default_factory=list)

    def add(self, source: float, arrived: float | None, published: float, got: float) -> None:
        self.total.append(got - source)
        if arrived is not None:
            self.to_parent.append(arrived - source)
            self.to_publish.append(published - arrived)
        self.to_subscriber.append(got - published)

    def print(self, label: str) -> None:
        row(f"{label}: n", f"{len(self.total):,}")
        row("  total", spread(self.total))
        if self.to_parent:
            row("  worker → parent (pipe, monitor thread)", spread(self.to_parent))
            row("  parent → published (service, throttle)", spread(self.to_publish))
        row("  published → subscriber", spread(self.to_subscriber))


def progress_latencies(run: BatchRun) -> tuple[Latencies, Latencies]:
    """``job.progress``: published at once, and held by the throttle first."""
    arrived = {
        (a.report.job_id, a.report.sent_at): a.at
        for a in run.arrivals
        if isinstance(a.report, StageProgress)
    }
    direct, held = Latencies(), Latencies()
    for received in run.received:
        event = received.event
        if event.type != "job.progress" or "sent_at" not in event.data:
            continue
        sent = float(event.data["sent_at"])
        arrival = arrived.get((event.data["id"], sent))
        # A held update waits for the throttle's timer; one published at once does not.
        bucket = held if arrival is not None and event.at - arrival > 0.02 else direct
        bucket.add(sent, arrival, event.at, received.at)
    return direct, held


def stage_change_latencies(run: BatchRun) -> Latencies:
    """``job.updated`` at a stage change, from the worker's first report of that stage."""
    first_report: dict[tuple[str, str], Arrival] = {}
    for arrival in run.arrivals:
        report = arrival.report
        if isinstance(report, StageProgress):
            first_report.setdefault((report.job_id, report.stage), arrival)
    latencies, seen = Latencies(), set()
    for received in run.received:
        event = received.event
        job = event.data.get("job", {})
        if event.type != "job.updated" or job.get("status") != "processing":
            continue
        key = (job["id"], job.get("stage"))
        if key in seen or key not in first_report:
            continue
        seen.add(key)
        arrival = first_report[key]
        assert isinstance(arrival.report, StageProgress)
        latencies.add(arrival.report.sent_at, arrival.at, event.at, received.at)
    return latencies


def completion_latencies(run: BatchRun) -> Latencies:
    """``job.updated`` completed, from the ``Finished`` report's arrival in the parent."""
    finished = {a.report.job_id: a.at for a in run.arrivals if isinstance(a.report, Finished)}
    latencies = Latencies()
    for job_id, received in first_status(run, ["completed"]).items():
        if job_id in finished:
            latencies.add(finished[job_id], None, received.event.at, received.at)
    return latencies


def report_lifecycle(run: BatchRun) -> None:
    stage_change_latencies(run).print("job.updated at a stage change (worker sent_at →)")
    completion_latencies(run).print("job.updated completed (Finished arrival →)")


def part_latency(plan: Plan, root: Path, tiny_png: Path) -> None:
    n = plan.latency_jobs
    section(f"1d  event latency over {n:,} jobs (tiny model + 3 MatMuls, 2 workers)")
    meter = CpuMeter()
    model = build_tiny_model(root / "tiny-slow.onnx", matmuls=3)
    settings = settings_for(root / "latency", model_path=model, max_concurrent_jobs=2)
    run = run_batch(settings, stage_uploads(root / "staging", [tiny_png] * n))
    report_health(run)
    engine = [
        a.report.timings.get("AI model", 0.0)
        for a in run.arrivals
        if isinstance(a.report, Finished)
    ]
    row("inference per job in the workers, mean", ms(statistics.mean(engine)))
    direct, held = progress_latencies(run)
    direct.print("job.progress published at once (worker sent_at →)")
    held.print("job.progress held by the 100 ms throttle first")
    everything = direct.total + held.total
    row("job.progress, all: p50 / p99", f"{ms(pct(everything, 50))} / {ms(pct(everything, 99))}")
    report_lifecycle(run)
    meter.report()


# --------------------------------------------------------------------------------------------
# Part 2: the real model, system against the engine's own loop


def part_model(plan: Plan, root: Path) -> None:
    specs = PHOTOS[: plan.photos]
    section(f"2  {len(specs)} photos with the real model: JobSystem against the engine loop")
    meter = CpuMeter()
    photos = write_photos(specs, root / "photos")
    sizes = [image_size(p) for p in photos]
    megapixels = [w * h / 1e6 for w, h in sizes]
    row(
        "photos: count, MP min / median / max",
        f"{len(photos)}, {min(megapixels):.2f} / {statistics.median(megapixels):.2f} / "
        f"{max(megapixels):.2f}",
    )
    settings = settings_for(root / "model")
    uploads = stage_uploads(root / "staging", photos)
    run, run_others = contended(lambda: run_batch(settings, uploads))
    report_health(run)
    batch_end = batch_end_time(run)
    system_s = batch_end - run.submitted_at
    loop_s, loop_others = contended(lambda: engine_loop(photos, root / "loop"))
    row("worker start (spawn + model load), both ready", f"{run.ready_s:.2f} s")
    row(
        "JobSystem: submit → batch completed",
        f"{system_s:.1f} s = {len(photos) / system_s:.3f} images/s",
    )
    row(
        "engine loop: load_remover(Settings()).process × n",
        f"{loop_s:.1f} s = {len(photos) / loop_s:.3f} images/s",
    )
    row("ratio JobSystem / engine loop (images/s)", f"{loop_s / system_s:.2f}×")
    report_sides("engine loop / JobSystem run", loop_others, run_others)
    meter.report()
    part_eta(run, photos, sizes)


def engine_loop(photos: Sequence[Path], out: Path) -> float:
    """Seconds for the engine alone over the photos, sequentially, all cores, model loaded."""
    out.mkdir(parents=True, exist_ok=True)
    remover = load_remover(Settings())
    started = time.perf_counter()
    for index, photo in enumerate(photos):
        remover.process(photo, destination=out / f"{index}.png")
    return time.perf_counter() - started


def batch_end_time(run: BatchRun) -> float:
    """Publish time of the batch's first terminal ``batch.updated``."""
    for received in run.received:
        event = received.event
        batch = event.data.get("batch", {})
        if (
            event.type == "batch.updated"
            and batch.get("id") == run.batch_id
            and batch.get("status") in TERMINAL
        ):
            return event.at
    raise RuntimeError("the batch never ended")


# --------------------------------------------------------------------------------------------
# Part 3: ETA error on the same batch


@dataclass(frozen=True)
class EtaSample:
    at: float
    """Publish time of the event that carried the estimate."""
    eta: float
    actual: float
    """Seconds from ``at`` until the job or batch really ended."""
    source: str = "batch.updated"

    @property
    def error(self) -> float:
        return self.eta - self.actual


def mae(samples: Sequence[EtaSample]) -> str:
    if not samples:
        return "no samples"
    abs_err = [abs(s.error) for s in samples]
    share = sum(abs_err) / max(1e-9, sum(s.actual for s in samples))
    bias = statistics.mean(s.error for s in samples)
    return (
        f"MAE {statistics.mean(abs_err):.2f} s = {share:.0%} of actual remaining, "
        f"bias {bias:+.2f} s  (n={len(samples)})"
    )


def batch_eta_samples(run: BatchRun, end: float) -> list[EtaSample]:
    samples = []
    for received in run.received:
        event = received.event
        batch = event.data.get("batch", {})
        eta = batch.get("estimated_time_remaining")
        ours = event.type == "batch.updated" and batch.get("id") == run.batch_id
        if ours and eta is not None and event.at <= end:
            samples.append(EtaSample(event.at, float(eta), end - event.at))
    return samples


def job_eta_samples(run: BatchRun) -> dict[str, list[EtaSample]]:
    """Per job, every ETA published while it was processing."""
    ends = {job_id: r.event.at for job_id, r in first_status(run, TERMINAL).items()}
    samples: dict[str, list[EtaSample]] = {}
    for received in run.received:
        event = received.event
        if event.type == "job.progress":
            job_id, eta = event.data["id"], event.data.get("eta")
        elif event.type == "job.updated" and event.data["job"].get("status") == "processing":
            job_id, eta = event.data["job"]["id"], event.data["job"]["estimated_time_remaining"]
        else:
            continue
        if eta is not None and job_id in ends:
            samples.setdefault(job_id, []).append(
                EtaSample(event.at, float(eta), ends[job_id] - event.at, event.type)
            )
    return samples


def part_eta(run: BatchRun, photos: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
    section("3  ETA error on that batch (estimates vs the actual remaining time)")
    end = batch_end_time(run)
    wall = end - run.submitted_at
    row(
        "ETA learning before the batch (StageClock.observations)",
        f"{run.observations_before} → the first jobs used the defaults "
        f"{', '.join(f'{s:.0f}' for s in FIRST_RUN_SECONDS)} s per size bucket"
        if run.observations_before == 0
        else str(run.observations_before),
    )
    row(
        "learned seconds per job after the batch, per bucket",
        ", ".join(f"b{b}: {s:.1f} s" for b, s in run.learned_seconds.items()),
    )
    report_batch_eta(run, end, wall)
    report_job_eta(run, photos, sizes, end)


def report_batch_eta(run: BatchRun, end: float, wall: float) -> None:
    samples = batch_eta_samples(run, end)
    print(f"  batch ETA (batch.updated), wall time {wall:.1f} s, {len(samples)} estimates:")
    print(f"    {'at':>5} {'shown':>8} {'actual':>8} {'error':>8} {'error %':>8}")
    picked = []
    for fraction in ETA_CHECKPOINTS:
        moment = run.submitted_at + fraction * wall
        before = [s for s in samples if s.at <= moment]
        if not before:
            continue
        sample = before[-1]
        picked.append(sample)
        print(
            f"    {fraction:>5.0%} {sample.eta:>7.1f}s {sample.actual:>7.1f}s "
            f"{sample.error:>+7.1f}s {abs(sample.error) / sample.actual:>8.0%}"
        )
    note(
        "each row: the last estimate published by then, against the time that was left "
        "when it was published"
    )
    row("checkpoints", mae(picked))
    half = run.submitted_at + wall / 2
    row(
        "every batch estimate, first half of the wall time",
        mae([s for s in samples if s.at < half]),
    )
    row("every batch estimate, second half", mae([s for s in samples if s.at >= half]))


def report_job_eta(
    run: BatchRun,
    photos: Sequence[Path],
    sizes: Sequence[tuple[int, int]],
    end: float,
) -> None:
    samples = job_eta_samples(run)
    starts = {job_id: r.event.at for job_id, r in first_status(run, ["processing"]).items()}
    first_learning = min(
        (a.at for a in run.arrivals if isinstance(a.report, Finished)), default=end
    )
    order = sorted(starts, key=starts.__getitem__)
    print("  per job, in dispatch order (estimate at start vs processing time):")
    print(
        f"    {'#':>2} {'photo':<22} {'MP':>5} {'bkt':>3} {'est.':>6} {'actual':>7} "
        f"{'error':>7} {'MAE while running':>18}"
    )
    index_of = {job.id: i for i, job in enumerate(run.jobs)}
    for rank, job_id in enumerate(order, 1):
        i = index_of[job_id]
        width, height = sizes[i]
        job_samples = samples.get(job_id, [])
        at_start = job_samples[0] if job_samples else None
        mean_err = statistics.mean(abs(s.error) for s in job_samples) if job_samples else 0.0
        defaults = "*" if starts[job_id] < first_learning else " "
        est = f"{at_start.eta:>5.1f}s" if at_start else "     -"
        actual = f"{at_start.actual:>6.1f}s" if at_start else "      -"
        error = f"{at_start.error:>+6.1f}s" if at_start else "      -"
        print(
            f"    {rank:>2} {photos[i].stem:<22.22} {width * height / 1e6:>5.2f} "
            f"{size_bucket(width, height):>3} {est} {actual} {error} "
            f"{mean_err:>17.2f}s{defaults}"
        )
    note("* started before any job had finished: its estimates are the first-run defaults")
    every = [s for job_id in order for s in samples.get(job_id, [])]
    half = len(order) // 2
    first_jobs, last_jobs = set(order[:half]), set(order[half:])
    defaults = {j for j in order if starts[j] < first_learning}
    row("per-job ETAs while processing, all", mae(every))
    row("  jobs dispatched in the first half", mae(_of(samples, first_jobs)))
    row("  jobs dispatched in the second half", mae(_of(samples, last_jobs)))
    row(f"  jobs started on defaults ({len(defaults)})", mae(_of(samples, defaults)))
    row("  jobs started after learning", mae(_of(samples, set(order) - defaults)))
    row("  from job.progress only", mae([s for s in every if s.source == "job.progress"]))
    row("  from job.updated only", mae([s for s in every if s.source == "job.updated"]))


def _of(samples: dict[str, list[EtaSample]], jobs: set[str]) -> list[EtaSample]:
    return [s for job_id in jobs for s in samples.get(job_id, [])]


# --------------------------------------------------------------------------------------------
# Entry point


# --------------------------------------------------------------------------------------------
# Part 4: the queue at scale, on SQLite and PostgreSQL, and two processes on one database

POSTGRES_ADMIN = os.environ.get(
    "BGREMOVER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one measurement, dropped afterwards."""
    import psycopg

    name = f"bgremover_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queue_pending(settings: Settings, staging: Path, tiny_png: Path, count: int) -> None:
    """``count`` pending jobs, queued in batches of 10,000 so memory stays bounded."""
    queuing = JobSystem(settings)
    for start in range(0, count, 10_000):
        queuing.service.create_batch(
            stage_uploads(staging, [tiny_png] * min(10_000, count - start))
        )
    queuing.stop()


def claim_latencies(settings: Settings, claims: int = 50) -> list[float]:
    """``claim_next`` alone (claim, batch counters, events with the batch ETA), no workers."""
    system = JobSystem(settings)
    durations = []
    for _ in range(claims):
        started = time.perf_counter()
        system.service.claim_next()
        durations.append(time.perf_counter() - started)
    system.service.release_all()
    system.stop()
    return durations


def part_scale(plan: Plan, root: Path, tiny_model: Path, tiny_png: Path) -> None:
    staging = root / "staging"
    for backend in ("sqlite", "postgresql"):
        section(
            f"4   the queue at scale on {backend}: claim latency and the scheduling rate of "
            f"the first {plan.scale_measured} completions, cheap jobs, 2 workers"
        )
        meter = CpuMeter()
        base_rate = None
        for pending in plan.scale_pending:
            with contextlib.ExitStack() as stack:
                data = root / f"scale-{backend}-{pending}"
                url = (
                    stack.enter_context(postgres_url())
                    if backend == "postgresql"
                    else f"sqlite:///{data / 'jobs.sqlite3'}"
                )
                settings = settings_for(
                    data, database_url=url, model_path=tiny_model, max_concurrent_jobs=SLOTS
                )
                # The measured jobs queue behind the others, so the queue never holds fewer.
                queue_pending(settings, staging, tiny_png, pending + plan.scale_measured)
                claims = claim_latencies(settings)
                run = run_batch(settings, [], stop_after=plan.scale_measured)
            ends = sorted(r.at for r in first_status(run, TERMINAL).values())
            rate = (len(ends) - 1) / (ends[-1] - ends[0])
            base_rate = base_rate or rate
            row(
                f"{pending:>7,} pending: claim_next mean / p99",
                f"{ms(statistics.mean(claims))} / {ms(pct(claims, 99))}",
            )
            row(
                f"{pending:>7,} pending: scheduling rate",
                f"{rate:.1f} jobs/s = {rate / base_rate:.2f}× the {plan.scale_pending[0]}-job rate"
                " (goal ≥ 0.9×)",
            )
        meter.report()
    part_two_processes(plan, root)


def engine_bound_model(root: Path) -> Path:
    """A tiny model with three 1024×1024 MatMuls: the engine, not the system, sets the pace."""
    return build_tiny_model(root / "tiny-3.onnx", matmuls=3)


def serve_until(settings: Settings, started: Any, stop: Any) -> None:
    """A second process: a job system of its own on the same database, until told to stop."""
    system = JobSystem(settings).start()
    assert isinstance(system.executor, LocalProcessExecutor)
    system.executor.wait_ready(120)
    started.set()
    stop.wait()
    system.stop()


def completion_rate(settings: Settings, staging: Path, tiny_png: Path, jobs: int) -> float:
    """Jobs/s until a batch of ``jobs`` has ended, from the database (it sees every
    process's completions), with the systems already running."""
    submitter = JobSystem(settings)
    created = submitter.service.create_batch(stage_uploads(staging, [tiny_png] * jobs))
    started = time.perf_counter()
    with submitter.bus.subscribe() as events:
        while submitter.service.get_batch(created.batch.id).status not in TERMINAL:
            events.get(0.05)
    elapsed = time.perf_counter() - started
    submitter.engine.dispose()
    return jobs / elapsed


def part_two_processes(plan: Plan, root: Path) -> None:
    section(
        "4'  two processes on one PostgreSQL database, engine-bound jobs "
        "(tiny model with 3 MatMuls), 1 worker each, 1 intra-op thread"
    )
    meter = CpuMeter()
    model, staging = engine_bound_model(root), root / "staging"
    tiny_png = make_tiny_png(root / "tiny-2.png")
    rates = {}
    context = multiprocessing.get_context("spawn")
    for processes in (1, 2):
        with postgres_url() as url:
            settings = settings_for(
                root / f"two-{processes}",
                database_url=url,
                model_path=model,
                max_concurrent_jobs=1,
                intra_op_threads=1,
            )
            stop = context.Event()
            children = []
            for _ in range(processes - 1):
                started = context.Event()
                child = context.Process(target=serve_until, args=(settings, started, stop))
                child.start()
                started.wait(120)
                children.append(child)
            with running_system(settings):
                rates[processes] = completion_rate(settings, staging, tiny_png, plan.scale_measured)
            stop.set()
            for child in children:
                child.join(120)
        row(f"{processes} process(es)", f"{rates[processes]:.2f} jobs/s")
    row("2 processes against 1", f"{rates[2] / rates[1]:.2f}× (goal ≥ 1.6×)")
    meter.report()


# --------------------------------------------------------------------------------------------
# Part 5: memory of a served system running two 12 MP jobs at once


@dataclass
class MemoryRun:
    idle: int
    """Total RSS of the process tree after the warm-up, before the upload."""
    peak: int
    peak_web: int
    wall: float
    cpu: float
    """CPU seconds of the whole process tree from upload to both ended: on a shared machine,
    with niced workers, a steadier measure of the work than the wall time."""
    masks: list[np.ndarray]


def big_photos(directory: Path) -> list[Path]:
    """The 3:2 samples upscaled to 12 MP with LANCZOS."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("chelsea", "coffee"):
        with Image.open(SAMPLES / f"{name}.jpg") as photo:
            big = photo.convert("RGB").resize(BIG_PHOTO_SIZE, Image.Resampling.LANCZOS)
        path = directory / f"{name}-12mp.jpg"
        big.save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


def run_served(url: str, photos: Sequence[Path]) -> list[str]:
    """Upload ``photos`` as one batch and wait until every job has ended; their ids."""
    files = [("files", (path.name, path.read_bytes())) for path in photos]
    created = httpx.post(f"{url}/api/batches", files=files, headers=UI_HEADER, timeout=120)
    created.raise_for_status()
    ids = [job["id"] for job in created.json()["jobs"]]
    deadline = time.monotonic() + WAIT_S
    for job_id in ids:
        while (status := httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()["status"]) in (
            "pending",
            "processing",
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {status} after {WAIT_S:.0f} s")
            time.sleep(0.1)
        if status != "completed":
            raise RuntimeError(f"job {job_id} ended {status}")
    return ids


def alpha_of_result(url: str, job_id: str) -> np.ndarray:
    response = httpx.get(f"{url}/api/jobs/{job_id}/result", timeout=60)
    response.raise_for_status()
    with Image.open(io.BytesIO(response.content)) as image:
        return np.asarray(image.getchannel("A"))


def measure_served_memory(root: Path, lean: bool, photos: Sequence[Path]) -> MemoryRun:
    server = Server(
        root / f"memory-{'lean' if lean else 'kept'}",
        None,
        settings={"BGREMOVER_LEAN_MODEL_MEMORY": "1" if lean else "0"},
    )
    try:
        server.wait_ready(120)
        # One small job per worker: both have loaded the model and run once, as in service.
        run_served(server.url, [SAMPLES / "chelsea.jpg", SAMPLES / "coffee.jpg"])
        sampler = ResourceSampler(server, every=RSS_EVERY_S)
        _, idle = sampler.sample()
        sampler.peak_main = sampler.peak_total = 0
        tree = [server.ps, *server.children()]
        cpu_before = sum(map(cpu_seconds, tree))
        started = time.perf_counter()
        with sampler:
            ids = run_served(server.url, photos)
        wall = time.perf_counter() - started
        cpu = sum(map(cpu_seconds, tree)) - cpu_before
        masks = [alpha_of_result(server.url, job_id) for job_id in ids]
    finally:
        server.stop()
    return MemoryRun(idle, sampler.peak_total, sampler.peak_main, wall, cpu, masks)


def part_memory(root: Path) -> None:
    section(
        "5  memory: a served system (web process + 2 workers, real model) running two 12 MP "
        "jobs at once, RSS of the whole process tree sampled every 50 ms"
    )
    photos = big_photos(root / "big")
    runs: dict[str, list[MemoryRun]] = {"before": [], "after": []}
    shares: dict[str, list[float]] = {"before": [], "after": []}
    # Two rounds, the second in the other order, against a drifting load on a shared machine.
    for label in ("before", "after", "after", "before"):
        run, share = contended(
            functools.partial(measure_served_memory, root, label == "after", photos)
        )
        runs[label].append(run)
        shares[label].append(share)
        row(
            f"{label}: peak total RSS / wall / CPU",
            f"{run.peak / GB:.2f} GB (web {run.peak_web / GB:.2f}, idle before "
            f"{run.idle / GB:.2f}) / {run.wall:.1f} s / {run.cpu:.1f} s (others {share:.0%})",
        )
    note("before: BGREMOVER_LEAN_MODEL_MEMORY=0 (the old behaviour); after: the default")
    peak = {label: max(run.peak for run in done) for label, done in runs.items()}
    wall = {label: sum(run.wall for run in done) for label, done in runs.items()}
    cpu = {label: sum(run.cpu for run in done) for label, done in runs.items()}
    row("peak total RSS after", f"{peak['after'] / GB:.2f} GB (goal ≤ 2.6 GB)")
    row("peak total RSS after/before", f"{peak['after'] / peak['before']:.2f}×")
    row("wall after/before, both rounds", f"{wall['after'] / wall['before']:.2f}× (goal ≤ 1.0×)")
    row("CPU seconds after/before, both rounds", f"{cpu['after'] / cpu['before']:.2f}×")
    before, after = runs["before"][0], runs["after"][0]
    for photo, old, new in zip(photos, before.masks, after.masks, strict=True):
        iou, delta, over = mask_agreement(old, new)
        row(
            f"mask after vs before, {photo.name}",
            f"IoU {iou:.4f}, max |Δalpha| {delta}/255, {over} pixels off by > 2",
        )
    report_sides("before / after", *(statistics.mean(values) for values in shares.values()))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about 3 min)")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    return parser.parse_args(argv)


def describe_machine() -> None:
    import onnxruntime

    row("python / onnxruntime", f"{sys.version.split()[0]} / {onnxruntime.__version__}")
    row("CPUs / memory", f"{os.cpu_count()} / {psutil.virtual_memory().total / 2**30:.0f} GiB")
    row("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    parts = args.only or list(PARTS)
    logging.basicConfig(level=logging.WARNING, format="  [%(levelname)s %(name)s] %(message)s")
    print(
        f"bgremover job-system benchmark ({'quick' if args.quick else 'full'}): {', '.join(parts)}"
    )
    describe_machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bgremover-jobs-bench-") as tmp:
        root = Path(tmp)
        tiny_model = build_tiny_model(root / "tiny.onnx")
        tiny_png = make_tiny_png(root / "tiny.png")
        if "submit" in parts:
            part_submit(plan, root, tiny_model, tiny_png)
        if "dispatch" in parts:
            part_dispatch(plan, root, tiny_model, tiny_png)
        if "latency" in parts:
            part_latency(plan, root, tiny_png)
        if "model" in parts:
            part_model(plan, root)
        if "scale" in parts:
            part_scale(plan, root, tiny_model, tiny_png)
        if "memory" in parts:
            part_memory(root)
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
