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

This file is the command line; each part is a module beside it (``jobs_submit.py``,
``jobs_dispatch.py``, ``jobs_latency.py``, ``jobs_model.py`` for parts 2 and 3,
``jobs_scale.py``, ``jobs_memory.py``), and what they share is ``jobs_common.py``.

Run it by hand from the repository root (it is not a test):

    .venv/bin/python bench/jobs_bench.py                  # everything, about 6-10 min on 2 cores
    .venv/bin/python bench/jobs_bench.py --quick          # smaller counts, about 3 min
    .venv/bin/python bench/jobs_bench.py --only dispatch --only latency
    .venv/bin/python bench/jobs_bench.py --only scale      # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/jobs_bench.py --only memory     # real model, about 5 min
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from jobs_common import FULL, PARTS, QUICK, make_tiny_png
from jobs_dispatch import part_dispatch
from jobs_latency import part_latency
from jobs_memory import part_memory
from jobs_model import part_model
from jobs_scale import part_scale
from jobs_submit import part_submit
from report import row
from tiny_model import build_tiny_model


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
