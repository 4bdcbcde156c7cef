"""Part 5 of ``jobs_bench.py``: memory of a served system running two 12 MP jobs at once."""

from __future__ import annotations

import functools
import io
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from common import SAMPLES, UI_HEADER, ResourceSampler, Server, cpu_seconds, mask_agreement
from jobs_common import BIG_PHOTO_SIZE, GB, RSS_EVERY_S, WAIT_S, contended, report_sides
from report import note, row, section

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
