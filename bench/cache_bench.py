"""Mask reuse benchmark: what a derive and a second upload of a 12 MP photo cost against its
first run, through the whole job system (worker process, store, database), as a user waits.

One worker (``max_concurrent_jobs=1``) on the real model when it is in the cache
(``bgremover models pull``; else the tiny model, said so in the output), a fresh data dir.
After two untimed runs of another photo (the worker's start and first, slower runs), each
round, on a 12 MP photo written new for the round (so its first run cannot reuse anything):

1. ``first``: upload it (PNG cut-out) and wait for the job to complete: the baseline;
2. ``derive``: the editor's "Save as new result" of that job (``derive_job``: a colour
   background, JPEG), waited for likewise;
3. ``second upload``: the same bytes uploaded again (PNG cut-out).

Each time is the job's own ``end_time - start_time`` (the worker's run: decode, model or
kept mask, compositing, saving) and, beside it, upload → completed as the client sees it.
Prints the medians over ``--rounds`` and the ratios ``derive / first`` and
``second upload / first`` (the issue's goal: <= 0.35), and the masks' agreement: the second
upload's alpha against the first run's (IoU at 128, largest |delta|; must be IoU >= 0.999).

Before/after in one go (main has no mask reuse, so its ratios are the "before"):

    .venv/bin/python bench/cache_bench.py
    PYTHONPATH=/work/main/src .venv/bin/python bench/cache_bench.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.tiny_model when run as a script

from bgremover import Settings  # noqa: E402
from bgremover.engine import RemoveOptions  # noqa: E402
from bgremover.jobs.schemas import Upload  # noqa: E402
from bgremover.system import JobSystem  # noqa: E402

SIZE = (4000, 3000)
WAIT_S = 600.0


def model_settings(work: Path) -> tuple[dict[str, object], str]:
    """The real model when it is cached here, else the tiny one; and which, for people."""
    settings = Settings()
    real = settings.models_dir / "isnet-general-use-fp16.onnx"
    if settings.model_path is None and real.is_file():
        return {}, f"real model ({settings.model})"
    from bench.tiny_model import build_tiny_model

    tiny = build_tiny_model(work / "tiny.onnx", matmuls=1)
    return {"model_path": tiny}, "TINY model (the real one is not cached: bgremover models pull)"


def photo(round_index: int, directory: Path, sample: str = "coffee") -> Path:
    """A 12 MP JPEG of a sample, its bytes new each round (a JPEG comment that names the
    round: the pixels are the same, the content hash is not)."""
    with Image.open(REPO / "samples" / f"{sample}.jpg") as image:
        big = ImageOps.fit(image.convert("RGB"), SIZE, Image.Resampling.LANCZOS)
    path = directory / f"{sample}-12mp-{round_index}.jpg"
    big.save(path, "JPEG", quality=92, comment=f"cache_bench round {round_index}".encode())
    return path


def staged(source: Path, directory: Path) -> list[Upload]:
    copy = directory / f"upload-{time.monotonic_ns()}"
    copy.write_bytes(source.read_bytes())
    return [Upload(file_name=source.name, path=str(copy))]


def wait(system: JobSystem, job_id: str, submitted: float) -> tuple[float, float]:
    """(the run's seconds, upload → completed seconds) of a job, once it completes."""
    deadline = time.monotonic() + WAIT_S
    while True:
        job = system.service.get_job(job_id)
        if job.status in ("completed", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not end within {WAIT_S} s")
        time.sleep(0.02)
    seen = time.monotonic() - submitted
    if job.status != "completed" or job.start_time is None or job.end_time is None:
        raise SystemExit(f"job {job_id} ended {job.status}: {job.error}")
    return (job.end_time - job.start_time).total_seconds(), seen


def alpha(system: JobSystem, job_id: str) -> np.ndarray:
    _, key = system.service.job_files(job_id)
    assert key is not None
    with system.service.files.storage.open(key) as f, Image.open(f) as image:
        return np.asarray(image.getchannel("A"))


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    inside_a, inside_b = a >= 128, b >= 128
    union = np.logical_or(inside_a, inside_b).sum()
    iou = 1.0 if union == 0 else np.logical_and(inside_a, inside_b).sum() / union
    return float(iou), int(np.abs(a.astype(int) - b.astype(int)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp:
        work = Path(tmp)
        extra, which = model_settings(work)
        settings = Settings(
            data_dir=work / "data",
            database_url=f"sqlite:///{work / 'jobs.sqlite3'}",
            max_concurrent_jobs=1,
            **extra,  # type: ignore[arg-type]
        )
        import bgremover

        print(f"code: {Path(bgremover.__file__).parent}; {which}; {SIZE[0]}x{SIZE[1]} photo")
        runs: dict[str, list[float]] = {"first": [], "derive": [], "second upload": []}
        seen: dict[str, list[float]] = {name: [] for name in runs}
        masks: list[tuple[float, int]] = []
        with JobSystem(settings) as system:
            # Untimed: the worker's start and its first, slower runs (see engine_bench).
            for index in range(2):
                warm = photo(index, work, "chelsea")
                wait(system, system.service.create_batch(staged(warm, work)).jobs[0].id, 0.0)
            for index in range(args.rounds):
                source = photo(index, work)
                started = time.monotonic()
                first = system.service.create_batch(staged(source, work)).jobs[0].id
                timings = {"first": wait(system, first, started)}
                started = time.monotonic()
                editor = RemoveOptions(format="jpeg", background_color="#3366ff", quality=90)
                derived = system.service.derive_job(first, editor).id
                timings["derive"] = wait(system, derived, started)
                started = time.monotonic()
                again = system.service.create_batch(staged(source, work)).jobs[0].id
                timings["second upload"] = wait(system, again, started)
                for name, (run, waited) in timings.items():
                    runs[name].append(run)
                    seen[name].append(waited)
                masks.append(agreement(alpha(system, first), alpha(system, again)))
                print(
                    f"  round {index + 1}: "
                    + ", ".join(f"{n} {r:.2f} s (seen {w:.2f} s)" for n, (r, w) in timings.items())
                )
        base, base_seen = statistics.median(runs["first"]), statistics.median(seen["first"])
        print(f"\n{'':16}{'run s':>8}{'seen s':>8}{'run / first':>13}{'seen / first':>14}")
        for name in runs:
            run, waited = statistics.median(runs[name]), statistics.median(seen[name])
            print(f"{name:16}{run:8.2f}{waited:8.2f}{run / base:13.2f}{waited / base_seen:14.2f}")
        worst_iou = min(iou for iou, _ in masks)
        worst_delta = max(delta for _, delta in masks)
        print(f"\nsecond upload's mask against the first run's: IoU >= {worst_iou:.5f}, ", end="")
        print(f"largest |delta alpha| {worst_delta}")
        kept = [p.stat().st_size for p in (work / "data").rglob("masks/*/*.png")]
        if kept:
            print(f"{len(kept)} masks kept, {statistics.mean(kept) / 1e6:.2f} MB each on average")


if __name__ == "__main__":
    main()
