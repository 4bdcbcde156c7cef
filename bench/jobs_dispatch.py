"""Part 1 (b) of ``jobs_bench.py``: scheduling throughput against the raw engine call."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from bgremover import Settings, load_remover
from bgremover.jobs.states import TERMINAL
from bgremover.workers.base import Finished, Started
from common import SLOTS, OthersCpuShare, percentile, spread, stage_uploads
from jobs_common import (
    DISPATCH_MARKS,
    BatchRun,
    Plan,
    contended,
    first_status,
    ms,
    report_contention,
    report_health,
    report_sides,
    run_batch,
    run_batches,
    settings_for,
)
from jobs_latency import report_lifecycle
from report import row, section

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
    meter = OthersCpuShare()
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
    report_contention(meter)
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
            f"{ms(statistics.mean(run.claim_s))} / {ms(percentile(run.claim_s, 99))}",
        )
    events = len(run.received) / jobs
    row("events published per job", f"{events:.1f}")


def dispatch_behind_backlog(
    plan: Plan, root: Path, tiny_model: Path, tiny_png: Path, plain_rate: float
) -> None:
    n, backlog = plan.backlog_measured, plan.backlog_jobs
    section(f"1b' cheap jobs with {backlog:,} pending: the first {n:,} completions")
    meter = OthersCpuShare()
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
    report_contention(meter)


def dispatch_many_batches(
    plan: Plan, root: Path, tiny_model: Path, tiny_png: Path, plain_rate: float
) -> None:
    count, size = plan.many_batches, plan.per_batch
    section(
        f"1b'' {count * size:,} cheap jobs as {count} batches of {size} in one session "
        "(one upload request each)"
    )
    meter = OthersCpuShare()
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
    report_contention(meter)


def report_variant(run: BatchRun, rate: float, plain_rate: float) -> None:
    row("steady jobs/s", f"{rate:.1f} jobs/s = {rate / plain_rate:.2f}× the single-batch rate")
    if run.claim_s:
        row(
            "claim_next (scheduler thread), mean / p99",
            f"{ms(statistics.mean(run.claim_s))} / {ms(percentile(run.claim_s, 99))}",
        )
    finished = [a.handled_s for a in run.arrivals if isinstance(a.report, Finished)]
    row(
        "service.handle(Finished), mean / p99",
        f"{ms(statistics.mean(finished))} / {ms(percentile(finished, 99))}",
    )
