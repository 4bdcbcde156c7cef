"""SSE fan-out benchmark: many browsers following /api/events while a batch runs.

It starts a real ``python -m bgremover serve`` process (fresh temporary data dir, SQLite,
``BGREMOVER_MAX_CONCURRENT_JOBS=2``, ``BGREMOVER_MODEL_PATH`` pointing at a tiny ISNet-shaped
ONNX model built here with the ``onnx`` package), connects SSE clients to ``/api/events``
(``httpx.AsyncClient`` streams on asyncio, in one or more client processes), waits until every
client has its ``snapshot``, uploads one batch of tiny PNGs (16×16 crops of the photos in
``samples/``) with ``POST /api/batches``, and follows it until every client has seen every job
end. The same is done twice in one run, each time with a fresh server: first with 1 client
(the baseline), then with ``--clients`` clients; ratios are printed between the two.

What it measures, per phase:

- events delivered per second: all clients together, and per client (from the upload until
  that client saw the last job end);
- ``job.progress`` latency: the worker's progress call (``data["sent_at"]``, ``time.time()``
  in the worker process) → the client parsed the event; p50 / p90 / p99 / max;
- ``job.updated`` latency for the two lifecycle events that carry a server-side timestamp:
  the claim (``status == "processing"``, from the job's ``start_time``) and the end (terminal
  status, from ``end_time``). Both timestamps are taken inside the database transaction, so
  these include the commit as well as publish → client. Stage-change ``job.updated`` events
  carry no timestamp and are not measured;
- server RSS (the ``serve`` process, and with its worker children) idle, with the clients
  connected, and at peak (sampled every 100 ms); CPU seconds of the server process, of the
  workers, of the client processes, and other processes' share of the machine;
- whether the clients keep up: each client process's CPU use and event-loop lag (an
  ``asyncio.sleep`` probe). When a client process is saturated, latencies include client-side
  queueing; run with more ``--client-procs`` to spread the clients;
- integrity, per client: mid-run ``snapshot`` events (a slow-client overflow resync), ``seq``
  gaps and reordering, progress going backwards, ``job.progress`` after the job ended.

The tiny model gets ``--matmuls`` 1024×1024 MatMuls (default 1, ~80 ms on one idle core) so
inference lasts long enough for the worker to send ``job.progress`` (its end-of-inference
report, and 100 ms ticks when it runs longer); ``--matmuls 2`` gives more progress events per
job and slower jobs; with ``--matmuls 0`` jobs are nearly free and ``job.progress`` is rare.

Needs the ``onnx`` package (``.venv/bin/pip install onnx``). Run it by hand from the
repository root; it stops by itself (``--budget`` seconds, default 280) and always kills the
server and the client processes:

    .venv/bin/python bench/sse_bench.py                         # 100 clients, 200 jobs
    .venv/bin/python bench/sse_bench.py --clients 100 --jobs 200 --client-procs 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import numpy as np
import psutil

from bgremover.jobs.states import TERMINAL
from common import (
    MIB,
    SLOTS,
    STOP_GRACE_S,
    UI_HEADER,
    ResourceSampler,
    Server,
    cpu_seconds,
    percentile,
    spread,
    tiny_pngs,
)
from report import note, row, section  # bench/ is on sys.path when run as a script
from tiny_model import build_tiny_model

WARMUP_JOBS = 2
SERVER_START_S = 60.0
CONNECT_S = 60.0
"""Longest wait for every client's first ``snapshot``."""
LAG_PROBE_S = 0.05
HEALTH_TIMEOUT_S = 10.0
LATE_JOIN_AFTER_S = 5.0
"""A late client connects this long after the upload, while most jobs are still active."""
LATE_TIMEOUT_S = 30.0
BASELINE_SHARE = 0.4
"""Share of the time left that the 1-client phase may use."""


# --------------------------------------------------------------------------------------------
# Printing and statistics


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b and np.isfinite(a) and np.isfinite(b) else "n/a"


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


# --------------------------------------------------------------------------------------------
# Inputs: the tiny model and tiny PNGs


class HealthProbe:
    """Times ``GET /api/health`` every 0.5 s on a thread: how responsive the server's event
    loop is while it streams."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
            while not self._stop.wait(0.5):
                started = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{self._url}/api/health")
                self.times.append(time.perf_counter() - started)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class LateJoiner:
    """One client that connects mid-run: what a fresh snapshot costs with the batch active."""

    seconds: float | None = None
    bytes: int = 0
    jobs: int = 0
    error: str | None = None


def late_join(url: str, after: float, out: LateJoiner) -> None:
    time.sleep(after)
    started = time.perf_counter()
    try:
        with httpx.stream("GET", f"{url}/api/events", timeout=LATE_TIMEOUT_S) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    out.seconds = time.perf_counter() - started
                    out.bytes = len(line)
                    out.jobs = len(json.loads(line.removeprefix("data:"))["jobs"])
                    return
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# SSE clients (they run in client processes)


def parse_time(value: str | None) -> float | None:
    """An ISO timestamp from the API as ``time.time()`` seconds (naive ones are UTC)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class ClientResult:
    """What one SSE client saw; plain data so it crosses process boundaries."""

    counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    snapshots: int = 0
    resync_snapshots: int = 0
    """``snapshot`` events after the first: the server's answer to a buffer overflow."""
    resync_skipped: int = 0
    """Events (``seq`` numbers) a resync replaced with a snapshot."""
    resync_at: list[float] = field(default_factory=list)
    gaps: int = 0
    """Events missing between consecutive ``seq`` numbers (outside resyncs)."""
    reordered: int = 0
    progress_backwards: int = 0
    progress_after_end: int = 0
    """``job.progress`` for a job this client had already seen end."""
    progress_latency: list[float] = field(default_factory=list)
    claim_latency: list[float] = field(default_factory=list)
    end_latency: list[float] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    """Job id → terminal status, for the jobs whose end this client saw as an event."""
    batch_ended: bool = False
    """Saw the batch end (in ``batch.updated`` or a resync snapshot)."""
    snapshot_at: float | None = None
    last_end_at: float | None = None
    last_event_at: float | None = None
    error: str | None = None


class SseClient:
    """Follows /api/events, parsing and timing every event, until it has seen the batch of
    ``expected`` jobs end: every job's terminal ``job.updated``, or (after a resync, which
    loses the events in between) the batch's terminal ``batch.updated`` or snapshot entry.
    Jobs and batches in ``exclude`` (the warm-up) are ignored."""

    def __init__(self, expected: int, exclude: frozenset[str]) -> None:
        self.result = ClientResult()
        self._expected = expected
        self._exclude = exclude
        self._counts: Counter[str] = Counter()
        self._last_seq = 0
        self._progress: dict[str, float] = {}
        self._claimed: set[str] = set()
        self.snapshot = asyncio.Event()
        self.done = asyncio.Event()

    async def follow(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            async with client.stream("GET", f"{url}/api/events") as response:
                response.raise_for_status()
                fields: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if line:
                        if not line.startswith(":"):
                            key, _, value = line.partition(":")
                            value = value.removeprefix(" ")
                            fields[key] = f"{fields[key]}\n{value}" if key in fields else value
                        continue
                    if "data" in fields:
                        self._on_event(
                            time.time(),
                            fields.get("event", "message"),
                            int(fields.get("id") or 0),
                            fields["data"],
                        )
                        if self.done.is_set():
                            return
                    fields = {}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.result.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.result.counts = dict(self._counts)
            self.snapshot.set()  # never leave the connect wait hanging on a failed client

    def _on_event(self, at: float, kind: str, seq: int, raw: str) -> None:
        result = self.result
        result.bytes += len(raw)
        result.last_event_at = at
        data = json.loads(raw)
        if kind == "snapshot":
            result.snapshots += 1
            if result.snapshots == 1:
                result.snapshot_at = at
                self.snapshot.set()
            else:
                result.resync_snapshots += 1
                result.resync_skipped += max(0, seq - self._last_seq)
                result.resync_at.append(at)
                for batch in data.get("batches", []):
                    self._on_batch(at, batch)
            self._last_seq = seq
            return
        self._counts[kind] += 1
        if seq <= self._last_seq:
            result.reordered += 1
        else:
            result.gaps += seq - self._last_seq - 1
            self._last_seq = seq
        if kind == "job.progress":
            self._on_progress(at, data)
        elif kind == "job.updated":
            self._on_job(at, data["job"])
        elif kind == "batch.updated":
            self._on_batch(at, data["batch"])

    def _on_progress(self, at: float, data: dict[str, Any]) -> None:
        job_id = data["id"]
        if "sent_at" in data:
            self.result.progress_latency.append(at - float(data["sent_at"]))
        if job_id in self.result.ended:
            self.result.progress_after_end += 1
        self._check_progress(job_id, float(data["progress"]))

    def _on_job(self, at: float, job: dict[str, Any]) -> None:
        job_id, status = job["id"], job["status"]
        if job_id in self._exclude:
            return
        if status == "processing":
            if job_id not in self._claimed:
                self._claimed.add(job_id)
                started = parse_time(job.get("start_time"))
                if started is not None:
                    self.result.claim_latency.append(at - started)
            self._check_progress(job_id, float(job["progress"]))
        elif status in TERMINAL and job_id not in self.result.ended:
            self.result.ended[job_id] = status
            ended = parse_time(job.get("end_time"))
            if ended is not None:
                self.result.end_latency.append(at - ended)
            if status == "completed":
                self._check_progress(job_id, float(job["progress"]))
            if len(self.result.ended) >= self._expected:
                self._finish(at)

    def _on_batch(self, at: float, batch: dict[str, Any]) -> None:
        ours = batch["id"] not in self._exclude and batch["counts"]["total"] == self._expected
        if ours and batch["status"] in TERMINAL:
            self.result.batch_ended = True
            self._finish(at)

    def _finish(self, at: float) -> None:
        if not self.done.is_set():
            self.result.last_end_at = at
            self.done.set()

    def _check_progress(self, job_id: str, progress: float) -> None:
        if progress < self._progress.get(job_id, 0.0) - 1e-9:
            self.result.progress_backwards += 1
        self._progress[job_id] = max(progress, self._progress.get(job_id, 0.0))


async def probe_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late the event loop wakes a ``sleep``: time this process's clients queue for."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        lags.append(max(0.0, loop.time() - started - LAG_PROBE_S))


async def run_clients(
    url: str,
    count: int,
    expected: int,
    exclude: frozenset[str],
    deadline: float,
    queue: Any,
    index: int,
) -> None:
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=count + 4)
    timeout = httpx.Timeout(30.0, read=60.0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        clients = [SseClient(expected, exclude) for _ in range(count)]
        tasks = [asyncio.create_task(c.follow(http, url)) for c in clients]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(c.snapshot.wait() for c in clients)),
                timeout=max(1.0, min(CONNECT_S, deadline - time.time())),
            )
        connected = sum(c.result.snapshots > 0 for c in clients)
        queue.put(("ready", index, connected))
        cpu_start, wall_start = time.process_time(), time.time()
        lags: list[float] = []
        stop_probe = asyncio.Event()
        probe = asyncio.create_task(probe_lag(lags, stop_probe))
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.time()))
        cpu = time.process_time() - cpu_start
        wall = time.time() - wall_start
        stop_probe.set()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, probe, return_exceptions=True)
        for client, task in zip(clients, tasks, strict=True):
            if task in pending and client.result.error is None:
                client.result.error = "did not finish before the deadline"
        results = [asdict(c.result) for c in clients]
        queue.put(("result", index, {"clients": results, "lags": lags, "cpu": cpu, "wall": wall}))


def client_process(
    url: str,
    count: int,
    expected: int,
    exclude: frozenset[str],
    deadline: float,
    queue: Any,
    index: int,
) -> None:
    """Entry point of one client process."""
    try:
        asyncio.run(run_clients(url, count, expected, exclude, deadline, queue, index))
    except BaseException as exc:
        queue.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise


# --------------------------------------------------------------------------------------------
# One phase: a fresh server, N clients, one batch


@dataclass
class Phase:
    clients: int
    jobs: int
    procs: int
    results: list[ClientResult] = field(default_factory=list)
    connected: int = 0
    connect_s: float = 0.0
    upload_s: float = 0.0
    uploaded_at: float = 0.0
    batch: dict[str, Any] = field(default_factory=dict)
    rss_idle: tuple[int, int] = (0, 0)
    rss_connected: tuple[int, int] = (0, 0)
    rss_peak: tuple[int, int] = (0, 0)
    peak_threads: int = 0
    server_cpu: float = 0.0
    worker_cpu: float = 0.0
    client_cpu: list[float] = field(default_factory=list)
    client_wall: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    others_share: float = 0.0
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)
    graceful_exit: int | None = None
    health: list[float] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)
    """Every job's ``start_time`` (when the scheduler claimed it), sorted."""
    late: LateJoiner = field(default_factory=LateJoiner)

    def all(self, name: str) -> list[float]:
        return [value for r in self.results for value in getattr(r, name)]

    @property
    def finished(self) -> list[ClientResult]:
        return [r for r in self.results if r.last_end_at is not None]

    @property
    def delivered(self) -> int:
        return sum(sum(r.counts.values()) for r in self.results)

    def per_client_rates(self) -> list[float]:
        """Events per second of each client, from the upload to its last event (the batch's
        end for a client that finished)."""
        return [
            sum(r.counts.values()) / (r.last_event_at - self.uploaded_at)
            for r in self.results
            if r.last_event_at is not None and r.last_event_at > self.uploaded_at
        ]


def warm_up(server: Server, deadline: float) -> frozenset[str]:
    """Two jobs before measuring: workers spawned, model loaded, first ETAs learnt."""
    created = httpx.post(
        f"{server.url}/api/batches",
        files=_files(tiny_pngs(WARMUP_JOBS, "warmup")),
        headers=UI_HEADER,
        timeout=60,
    )
    created.raise_for_status()
    body = created.json()
    batch_id = body["batch"]["id"]
    while time.time() < deadline:
        batch = httpx.get(f"{server.url}/api/batches/{batch_id}", timeout=10).json()
        if batch["status"] in TERMINAL:
            time.sleep(0.5)  # let the batch's last events go out before anyone subscribes
            return frozenset([batch_id, *(job["id"] for job in body["jobs"])])
        time.sleep(0.1)
    raise RuntimeError(f"warm-up batch did not finish\n{server.tail()}")


def _files(files: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/png")) for name, data in files]


def claim_times(url: str, batch_id: str) -> list[float]:
    """The batch's jobs' ``start_time`` values, sorted."""
    starts: list[float] = []
    offset = 0
    while True:
        page = httpx.get(
            f"{url}/api/jobs",
            params={"batch_id": batch_id, "limit": 1000, "offset": offset},
            timeout=30,
        ).json()
        starts += [t for job in page["items"] if (t := parse_time(job.get("start_time")))]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return sorted(starts)


def others_cpu(start: tuple[float, float], end: tuple[float, float], wall: float) -> float:
    """Share of all CPUs busy with processes other than ours."""
    system = end[0] - start[0]
    ours = end[1] - start[1]
    return max(0.0, system - ours) / max(1e-9, wall * (os.cpu_count() or 1))


def system_busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run_phase(
    clients: int,
    jobs: int,
    procs: int,
    root: Path,
    model: Path,
    deadline: float,
    registry: list[Any],
) -> Phase:
    phase = Phase(clients=clients, jobs=jobs, procs=min(procs, clients))
    server = Server(root / f"data-{clients}", model)
    registry.append(server)
    started = time.monotonic()
    client_procs: list[mp.process.BaseProcess] = []
    try:
        server.wait_ready(SERVER_START_S)
        exclude = warm_up(server, deadline)
        with ResourceSampler(server) as sampler, contextlib.ExitStack() as probing:
            phase.rss_idle = sampler.sample()
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            shares = [
                clients // phase.procs + (i < clients % phase.procs) for i in range(phase.procs)
            ]
            connect_started = time.monotonic()
            for index, share in enumerate(shares):
                proc = ctx.Process(
                    target=client_process,
                    args=(server.url, share, jobs, exclude, deadline, queue, index),
                    name=f"sse-clients-{index}",
                    daemon=True,
                )
                proc.start()
                client_procs.append(proc)
                registry.append(proc)
            ready = 0
            while ready < len(client_procs) and time.time() < deadline:
                with contextlib.suppress(Empty):
                    kind, index, payload = queue.get(timeout=1)
                    if kind == "ready":
                        ready += 1
                        phase.connected += payload
                    elif kind == "error":
                        phase.errors.append(f"client process {index}: {payload}")
                        ready += 1
            phase.connect_s = time.monotonic() - connect_started
            phase.rss_connected = sampler.sample()
            client_ps = [psutil.Process(w.pid) for w in client_procs if w.pid is not None]
            ours = [server.ps, *server.children(), psutil.Process(), *client_ps]
            cpu_before = (system_busy(), sum(cpu_seconds(p) for p in ours))
            server_before = cpu_seconds(server.ps)
            children_before = {c.pid: cpu_seconds(c) for c in server.children()}
            wall_started = time.monotonic()

            files = _files(tiny_pngs(jobs, "job"))
            probe = probing.enter_context(HealthProbe(server.url))
            phase.uploaded_at = time.time()
            response = httpx.post(
                f"{server.url}/api/batches", files=files, headers=UI_HEADER, timeout=120
            )
            response.raise_for_status()
            phase.upload_s = time.time() - phase.uploaded_at
            batch_id = response.json()["batch"]["id"]
            late = threading.Thread(
                target=late_join, args=(server.url, LATE_JOIN_AFTER_S, phase.late), daemon=True
            )
            late.start()

            reported = 0
            while reported < len(client_procs) and time.time() < deadline + STOP_GRACE_S:
                with contextlib.suppress(Empty):
                    kind, index, payload = queue.get(timeout=1)
                    if kind == "result":
                        reported += 1
                        phase.results += [ClientResult(**r) for r in payload["clients"]]
                        phase.lags += payload["lags"]
                        phase.client_cpu.append(payload["cpu"])
                        phase.client_wall.append(payload["wall"])
                    elif kind == "error":
                        phase.errors.append(f"client process {index}: {payload}")
                        reported += 1
                if all(not w.is_alive() for w in client_procs) and queue.empty():
                    break
            phase.wall = time.monotonic() - wall_started
            probing.close()
            phase.health = probe.times
            late.join(timeout=1)
            ours = [server.ps, *server.children(), psutil.Process(), *client_ps]
            cpu_after = (system_busy(), sum(cpu_seconds(p) for p in ours))
            phase.others_share = others_cpu(cpu_before, cpu_after, phase.wall)
            phase.server_cpu = cpu_seconds(server.ps) - server_before
            phase.worker_cpu = sum(
                cpu_seconds(c) - children_before.get(c.pid, 0.0) for c in server.children()
            )
            phase.rss_peak = (sampler.peak_main, sampler.peak_total)
            phase.peak_threads = sampler.peak_threads
        with contextlib.suppress(httpx.HTTPError, ValueError):
            phase.batch = httpx.get(f"{server.url}/api/batches/{batch_id}", timeout=10).json()
            phase.claims = claim_times(server.url, batch_id)
    except Exception as exc:
        phase.errors.append(f"{type(exc).__name__}: {exc}\n{server.tail()}")
    finally:
        for proc in client_procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        phase.graceful_exit = server.stop()
    phase.wall = phase.wall or time.monotonic() - started
    return phase


# --------------------------------------------------------------------------------------------
# Report


def report_phase(phase: Phase) -> None:
    section(f"{phase.clients} client(s), {phase.jobs} jobs, {phase.procs} client process(es)")
    for error in phase.errors:
        note(f"ERROR {error}")
    row("clients connected (snapshot received) / asked", f"{phase.connected} / {phase.clients}")
    row("time to connect all clients", f"{phase.connect_s:.2f} s")
    row("upload (POST /api/batches) took", f"{phase.upload_s:.2f} s")
    batch = phase.batch
    if batch:
        counts = batch.get("counts", {})
        duration = batch.get("duration") or float("nan")
        row("batch status, counts", f"{batch.get('status')}, {counts}")
        row(
            "batch duration (first start → last end), jobs/s",
            f"{duration:.1f} s, {phase.jobs / duration:.2f} jobs/s",
        )
    finished = phase.finished
    row("clients that saw every job end", f"{len(finished)} / {phase.clients}")
    errors = Counter(r.error for r in phase.results if r.error)
    for error, n in errors.items():
        note(f"{n} client(s): {error}")
    per_client = phase.per_client_rates()
    if per_client:
        last = max(r.last_event_at or 0.0 for r in phase.results)
        window = last - phase.uploaded_at
        if len(finished) == phase.clients:
            row("upload → last client saw the last job end", f"{window:.1f} s")
        else:
            row("upload → last event any client received", f"{window:.1f} s")
        row(
            "events delivered, all clients: total, per second",
            f"{phase.delivered:,}, {phase.delivered / window:,.0f}/s",
        )
        row(
            "per client: events/s mean (min–max)",
            f"{np.mean(per_client):.1f} ({min(per_client):.1f}–{max(per_client):.1f})",
        )
    types: Counter[str] = Counter()
    for r in phase.results:
        types.update(r.counts)
    if phase.results:
        n = len(phase.results)
        by_type = ", ".join(f"{k} {v / n:.0f}" for k, v in sorted(types.items()))
        row("events per client by type (mean)", by_type)
        row("payload per client (mean)", mib(sum(r.bytes for r in phase.results) / n))
    row(
        "job.progress: worker sent_at → client", spread(phase.all("progress_latency"), counted=True)
    )
    row("job.updated claim: start_time → client", spread(phase.all("claim_latency"), counted=True))
    row("job.updated end: end_time → client", spread(phase.all("end_latency"), counted=True))
    note("stage-change job.updated events carry no timestamp: not measured")
    resync = [r.resync_snapshots for r in phase.results]
    row(
        "mid-run snapshot (overflow resync): clients, total",
        f"{sum(1 for x in resync if x)}, {sum(resync)}",
    )
    if any(resync):
        skipped = [r.resync_skipped for r in phase.results if r.resync_snapshots]
        at = [t - phase.uploaded_at for r in phase.results for t in r.resync_at]
        row("  events replaced by resync snapshots, per such client", f"{np.mean(skipped):.0f}")
        row("  resyncs happened at (s after upload)", f"{min(at):.1f} – {max(at):.1f}")
        unseen = [phase.jobs - len(r.ended) for r in phase.results]
        row("  jobs whose end event a client never got, mean", f"{np.mean(unseen):.1f}")
    row(
        "seq gaps / reordered (outside resyncs), all clients",
        f"{sum(r.gaps for r in phase.results)} / {sum(r.reordered for r in phase.results)}",
    )
    row(
        "progress backwards / job.progress after the job ended",
        f"{sum(r.progress_backwards for r in phase.results)} / "
        f"{sum(r.progress_after_end for r in phase.results)}",
    )
    if len(phase.claims) > 1:
        gaps = np.diff(phase.claims)
        row(
            "scheduler: gap between job claims p50 / max, gaps > 1 s",
            f"{np.median(gaps) * 1000:.0f} ms / {gaps.max():.1f} s, {int((gaps > 1).sum())}",
        )
    row("GET /api/health (a threadpool route) during the run", spread(phase.health, counted=True))
    late = phase.late
    if late.seconds is not None:
        row(
            f"late client {LATE_JOIN_AFTER_S:.0f} s after upload: snapshot in, size, jobs",
            f"{late.seconds * 1000:.0f} ms, {late.bytes / 1024:.0f} KiB, {late.jobs}",
        )
    else:
        row("late client: no snapshot", late.error or "?")
    row("server RSS idle (process / with workers)", _rss(phase.rss_idle))
    row("server RSS with clients connected", _rss(phase.rss_connected))
    row("server RSS peak", _rss(phase.rss_peak))
    row("server threads, peak", str(phase.peak_threads))
    delivered = max(1, phase.delivered)
    row(
        "server process CPU: s, per delivered event",
        f"{phase.server_cpu:.2f} s, {phase.server_cpu / delivered * 1e6:.0f} µs",
    )
    row("worker processes CPU", f"{phase.worker_cpu:.2f} s")
    for index, (cpu, wall) in enumerate(zip(phase.client_cpu, phase.client_wall, strict=True)):
        busy = f"{cpu:.1f} / {wall:.1f} ({cpu / max(wall, 1e-9):.0%})"
        row(f"client process {index}: CPU s / wall s (busy share)", busy)
    row("client event-loop lag (50 ms sleep probe)", spread(phase.lags, counted=True))
    flag = "  ← contended machine" if phase.others_share > 0.05 else ""
    row("other processes' CPU share during the run", f"{phase.others_share:.0%}{flag}")
    if phase.graceful_exit is None:
        note("the server did not stop on Ctrl-C within the grace period; it was killed")


def _rss(pair: tuple[int, int]) -> str:
    return f"{mib(pair[0])} / {mib(pair[1])}"


def report_comparison(base: Phase, many: Phase) -> None:
    section(f"{many.clients} clients against 1 (same run, fresh server each)")
    metrics = (
        ("job.progress latency p50", "progress_latency", 50),
        ("job.progress latency p99", "progress_latency", 99),
        ("job.updated claim latency p99", "claim_latency", 99),
        ("job.updated end latency p99", "end_latency", 99),
    )
    for label, name, q in metrics:
        a, b = percentile(many.all(name), q), percentile(base.all(name), q)
        row(f"{label}: {many.clients} / 1", f"{a * 1000:.1f} / {b * 1000:.1f} ms = {ratio(a, b)}")
    rates_many, rates_base = many.per_client_rates(), base.per_client_rates()
    if rates_many and rates_base:
        a, b = float(np.mean(rates_many)), float(np.mean(rates_base))
        row(f"per-client events/s: {many.clients} / 1", f"{a:.1f} / {b:.1f} = {ratio(a, b)}")
    da, db = (many.batch.get("duration"), base.batch.get("duration"))
    if da and db:
        row(f"batch duration: {many.clients} / 1", f"{da:.1f} / {db:.1f} s = {ratio(da, db)}")
    a, b = many.server_cpu, base.server_cpu
    row(f"server process CPU: {many.clients} / 1", f"{a:.2f} / {b:.2f} s = {ratio(a, b)}")
    extra = many.delivered - base.delivered
    if extra > 0:
        row(
            "server CPU per extra delivered event (marginal)",
            f"{(many.server_cpu - base.server_cpu) / extra * 1e6:.0f} µs",
        )
    a, b = many.rss_peak[0] - many.rss_idle[0], base.rss_peak[0] - base.rss_idle[0]
    row(f"server RSS growth idle → peak: {many.clients} / 1", f"{mib(a)} / {mib(b)}")


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="SSE clients (default 100)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs in the batch (default 200)")
    parser.add_argument(
        "--client-procs", type=int, default=1, help="processes the clients are spread over"
    )
    parser.add_argument(
        "--matmuls", type=int, default=1, help="1024² MatMuls in the tiny model (default 1)"
    )
    parser.add_argument(
        "--budget", type=float, default=280.0, help="seconds before everything is stopped"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="only the N-client phase")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.jobs < 1 or args.client_procs < 1 or args.matmuls < 0:
        parser.error("--clients, --jobs and --client-procs must be ≥ 1, --matmuls ≥ 0")
    return args


@contextlib.contextmanager
def watchdog(budget: float, registry: list[Any]) -> Iterator[None]:
    """Kill everything this run started if it overruns its budget by 30 s."""

    def fire() -> None:
        print(f"\n!! over budget ({budget:.0f} s + 30 s): killing the server and clients")
        for item in registry:
            with contextlib.suppress(Exception):
                item.stop() if isinstance(item, Server) else item.kill()
        os._exit(3)

    timer = threading.Timer(budget + 30, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.time()
    deadline = began + args.budget
    print(
        f"bgremover SSE benchmark: {args.clients} clients over {args.client_procs} process(es), "
        f"{args.jobs} jobs, tiny model with {args.matmuls} MatMuls, max_concurrent_jobs={SLOTS}"
    )
    print(f"  machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    registry: list[Any] = []
    phases: list[Phase] = []
    with watchdog(args.budget, registry), tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny.onnx", args.matmuls)
        try:
            if not args.skip_baseline:
                left = deadline - time.time()
                base_deadline = time.time() + left * BASELINE_SHARE
                phases.append(run_phase(1, args.jobs, 1, root, model, base_deadline, registry))
                report_phase(phases[-1])
            many = run_phase(
                args.clients, args.jobs, args.client_procs, root, model, deadline, registry
            )
            phases.append(many)
            report_phase(many)
            if len(phases) == 2:
                report_comparison(phases[0], many)
        finally:
            for item in registry:
                with contextlib.suppress(Exception):
                    item.stop() if isinstance(item, Server) else item.kill()
    print(f"\ndone in {time.time() - began:.0f} s")
    ok = all(not p.errors and len(p.finished) == p.clients for p in phases)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
