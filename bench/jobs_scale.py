"""Part 4 of ``jobs_bench.py``: the queue at scale, on SQLite and PostgreSQL, and two
processes on one database."""

from __future__ import annotations

import contextlib
import multiprocessing
import statistics
import time
from pathlib import Path
from typing import Any

from bgremover import Settings
from bgremover.jobs.states import TERMINAL
from bgremover.system import JobSystem
from bgremover.workers.local import LocalProcessExecutor
from common import SLOTS, OthersCpuShare, percentile, postgres_database, stage_uploads
from jobs_common import (
    Plan,
    first_status,
    make_tiny_png,
    ms,
    report_contention,
    run_batch,
    running_system,
    settings_for,
)
from report import row, section
from tiny_model import build_tiny_model

# --------------------------------------------------------------------------------------------
# Part 4: the queue at scale, on SQLite and PostgreSQL, and two processes on one database


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
        meter = OthersCpuShare()
        base_rate = None
        for pending in plan.scale_pending:
            with contextlib.ExitStack() as stack:
                data = root / f"scale-{backend}-{pending}"
                url = (
                    stack.enter_context(postgres_database("bgremover_bench"))
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
                f"{ms(statistics.mean(claims))} / {ms(percentile(claims, 99))}",
            )
            row(
                f"{pending:>7,} pending: scheduling rate",
                f"{rate:.1f} jobs/s = {rate / base_rate:.2f}× the {plan.scale_pending[0]}-job rate"
                " (goal ≥ 0.9×)",
            )
        report_contention(meter)
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
    meter = OthersCpuShare()
    model, staging = engine_bound_model(root), root / "staging"
    tiny_png = make_tiny_png(root / "tiny-2.png")
    rates = {}
    context = multiprocessing.get_context("spawn")
    for processes in (1, 2):
        with postgres_database("bgremover_bench") as url:
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
    report_contention(meter)
