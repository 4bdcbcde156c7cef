"""Part 1 (d) of ``jobs_bench.py``: event latency."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bgremover.workers.base import Finished, StageProgress
from common import OthersCpuShare, percentile, spread, stage_uploads
from jobs_common import (
    Arrival,
    BatchRun,
    Plan,
    first_status,
    ms,
    report_contention,
    report_health,
    run_batch,
    settings_for,
)
from report import row, section
from tiny_model import build_tiny_model

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
    meter = OthersCpuShare()
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
    row(
        "job.progress, all: p50 / p99",
        f"{ms(percentile(everything, 50))} / {ms(percentile(everything, 99))}",
    )
    report_lifecycle(run)
    report_contention(meter)
