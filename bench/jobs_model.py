"""Parts 2 and 3 of ``jobs_bench.py``: the real model, system against the engine's own loop,
and the ETA error on the same batch."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bgremover import Settings, load_remover
from bgremover.jobs.eta.clock import FIRST_RUN_SECONDS, size_bucket
from bgremover.jobs.states import TERMINAL
from bgremover.workers.base import Finished
from common import OthersCpuShare, stage_uploads
from jobs_common import (
    ETA_CHECKPOINTS,
    PHOTOS,
    BatchRun,
    Plan,
    contended,
    first_status,
    image_size,
    report_contention,
    report_health,
    report_sides,
    run_batch,
    settings_for,
    write_photos,
)
from report import note, row, section

# --------------------------------------------------------------------------------------------
# Part 2: the real model, system against the engine's own loop


def part_model(plan: Plan, root: Path) -> None:
    specs = PHOTOS[: plan.photos]
    section(f"2  {len(specs)} photos with the real model: JobSystem against the engine loop")
    meter = OthersCpuShare()
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
    report_contention(meter)
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
