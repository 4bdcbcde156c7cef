"""Pause → resume round trip across two web processes on one PostgreSQL database.

Two `bgremover serve` processes (the tiny model, one fresh database) and an SSE client on the
second. Each round pauses the queue on process A (``POST /api/queue/pause``) and times how
long until B's stream shows ``queue.updated`` with ``paused: true``; then the same for the
resume. Two ways the processes share events:

- ``database``: each process has its own in-process bus (nothing but the database shared);
  B hears of A's change at its next scheduler round (``pauses.follow_pauses``, about 1 s
  apart).
- ``redis``: both publish to one Redis stream; B's stream carries A's event itself.

Run it by hand from the repository root (not a test; about a minute on 2 cores):

    .venv/bin/python bench/pause_bench.py
    .venv/bin/python bench/pause_bench.py --rounds 50 --only redis
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: reuse the tests' process helpers

from bench.common import UI_HEADER, postgres_database  # noqa: E402
from bench.tiny_model import build_tiny_model  # noqa: E402
from tests.cluster_support import REDIS_URL, Listener, web_processes  # noqa: E402


def seen_after(listener: Listener, paused: bool, after: int) -> Any:
    """A ``wait_for`` condition: a ``queue.updated`` saying ``paused`` among the events
    from index ``after`` on; returns when it arrived."""

    def check(events: list[dict[str, Any]]) -> float | None:
        for event in events[after:]:
            if event["event"] == "queue.updated" and event["data"]["queue"]["paused"] is paused:
                return float(event["received_at"])
        return None

    return check


def round_trip(a: str, b: Listener, paused: bool) -> float:
    """Seconds from asking A to B's stream showing it. Each ask waits a random part of a
    second first, so the asks do not fall in step with B's scheduler rounds."""
    time.sleep(random.uniform(0, 1))
    after = len(b.events)
    started = time.time()
    answer = httpx.post(
        f"{a}/api/queue/{'pause' if paused else 'resume'}", headers=UI_HEADER, timeout=10
    )
    answer.raise_for_status()
    arrived: float = b.wait_for("the queue's state", seen_after(b, paused, after))
    return arrived - started


def measure(root: Path, mode: str, rounds: int, model: Path) -> dict[str, list[float]]:
    with postgres_database() as database:
        env = {
            "BGREMOVER_DATABASE_URL": database,
            "BGREMOVER_STORAGE_URL": (root / "storage").as_uri(),
            "BGREMOVER_MODEL_PATH": str(model),
        }
        if mode == "redis":
            env |= {
                "BGREMOVER_REDIS_URL": REDIS_URL,
                "BGREMOVER_REDIS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            }
        times: dict[str, list[float]] = {"pause": [], "resume": []}
        with web_processes(root, env) as (a, b):
            for _ in range(rounds):
                times["pause"].append(round_trip(a.url, b, True))
                times["resume"].append(round_trip(a.url, b, False))
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", choices=["database", "redis"])
    args = parser.parse_args()
    modes = [args.only] if args.only else ["database", "redis"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny.onnx")
        print(f"pause/resume on process A until process B's SSE shows it, {args.rounds} rounds")
        for mode in modes:
            (root / mode).mkdir()
            times = measure(root / mode, mode, args.rounds, model)
            for what, values in times.items():
                ms = [v * 1000 for v in values]
                print(
                    f"{mode:>8} {what:>6}: median {statistics.median(ms):7.1f} ms  "
                    f"max {max(ms):7.1f} ms"
                )


if __name__ == "__main__":
    main()
