"""Full-disk benchmark: a batch of 8 photos while the results disk is full for 15 s.

A real ``bgremover serve`` (2 local worker processes, a tiny ISNet-shaped model) keeps its
results on a 48 MB tmpfs; once the first result is stored the disk is filled to the last byte,
kept full for ``--full`` seconds, then freed. Twice: the results store alone on that disk
(``BGREMOVER_STORAGE_URL``, the database elsewhere), and the whole data dir there (the SQLite
database cannot write either). Prints how many jobs completed and failed, the runs started
(attempts), the time from the space freed to the first completion, and whether the database
passes ``PRAGMA integrity_check``. Needs root (it mounts a tmpfs).

Run it by hand from the repository root (about a minute):

    .venv/bin/python bench/full_disk_bench.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: reuse the tests' process helpers

from bench.tiny_model import build_tiny_model  # noqa: E402
from tests.disk_support import ON_DISK, serve_and_fill, small_disk  # noqa: E402

BATCH = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", type=float, default=15.0, help="seconds the disk stays full")
    args = parser.parse_args()
    photo = ROOT / "samples" / "chelsea.jpg"
    with tempfile.TemporaryDirectory(prefix="bgremover-full-disk-") as folder:
        root = Path(folder)
        model = build_tiny_model(root / "tiny.onnx", matmuls=1)
        print(f"batch of {BATCH}, disk full for {args.full:.0f} s, 2 local workers")
        for where in ON_DISK:
            with small_disk(root / where.replace(" ", "-"), size_mb=48) as disk:
                outcome = serve_and_fill(
                    disk,
                    root,
                    model,
                    [photo] * BATCH,
                    where,
                    while_full=lambda: time.sleep(args.full),  # the outage's length
                )
            statuses = list(outcome.statuses.values())
            first = outcome.freed_to_first_completion_s
            print(
                f"{where:>16}: {statuses.count('completed')} completed, "
                f"{statuses.count('failed')} failed, {outcome.runs} runs; "
                f"full {outcome.full_s:.1f} s; freed → first completion "
                f"{f'{first:.1f} s' if first is not None else 'none'}; "
                f"integrity_check {outcome.integrity}; storage said "
                f"{[s['error'] or 'ok' for s in outcome.announced]}"
            )


if __name__ == "__main__":
    main()
