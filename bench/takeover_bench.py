"""Take-over deadline: how long a job waits after its worker died between receiving the run's
message and taking the run over, until it completes on another worker.

One `bgremover serve` on a fresh PostgreSQL database with a private Redis (broker and event
stream), real `bgremover worker` processes and the tiny model. Worker A's pool process is
frozen, the job's message goes to A, A is killed (kill -9, the whole worker) and worker B is
started at once. Printed per run: from A's death to the job back in the queue (the take-over
deadline plus the next recovery round), to B's slot counting, and to the job completed on B.
Before the deadline existed the job stayed processing for good (the issue measured 196 s+,
tests/test_broker_faults.py failed on it after 240 s).

Run it by hand from the repository root (not a test; about a minute per run on 2 cores):

    .venv/bin/python bench/takeover_bench.py
    .venv/bin/python bench/takeover_bench.py --timeout 15 --timeout 5 --runs 2
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: reuse the tests' process helpers

from bench.tiny_model import build_tiny_model  # noqa: E402
from tests.cluster_support import (  # noqa: E402
    job_updates,
    private_cluster,
    received,
    upload_pngs,
    worker,
    worker_count,
)
from tests.redis_support import private_redis  # noqa: E402
from tests.waiting import until  # noqa: E402


def _at(events: list[dict[str, Any]], job_id: str, status: str, after: float) -> float | None:
    """When the SSE client first saw the job in ``status`` after ``after``."""
    for event in events:
        if event["event"] != "job.updated" or event["received_at"] < after:
            continue
        job = event["data"]["job"]
        if job["id"] == job_id and job["status"] == status:
            return float(event["received_at"])
    return None


def one_run(root: Path, model: Path, timeout_s: float) -> dict[str, float]:
    settings = {"BGREMOVER_TAKEOVER_TIMEOUT": str(timeout_s)}
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(root))
        url, env, listener = stack.enter_context(private_cluster(root, broker, model, **settings))
        (root / "a").mkdir()
        first = stack.enter_context(worker(root / "a", env))
        until(lambda: worker_count(url) == 1, what="worker A's slot")
        for child in _children(first.pid):
            os.kill(child, signal.SIGSTOP)
        job_id = upload_pngs(url, root / "in", 1)["jobs"][0]["id"]
        until(lambda: received(root / "a"), what="the message received by worker A")
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.time()
        first.wait()
        (root / "b").mkdir()
        second = stack.enter_context(worker(root / "b", env))
        until(lambda: _listed(url) & _children(second.pid), what="worker B's slot")
        b_ready = time.time()
        listener.wait_for(
            "the job completed",
            lambda seen: _at(seen, job_id, "completed", killed),
        )
        back = _at(listener.events, job_id, "pending", killed)
        done = _at(listener.events, job_id, "completed", killed)
        assert back is not None and done is not None
        attempts = {j["attempt"] for j in job_updates(listener.events, job_id)}
        assert attempts == {1}, attempts
        return {"requeued": back - killed, "b_ready": b_ready - killed, "completed": done - killed}


def _listed(url: str) -> set[int]:
    """The pids of the worker processes that count as slots."""
    return {int(w["pid"]) for w in httpx.get(f"{url}/api/stats", timeout=30).json()["workers"]}


def _children(pid: int) -> set[int]:
    return {child.pid for child in psutil.Process(pid).children(recursive=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, action="append", help="take-over deadline, s")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    timeouts = args.timeout or [15.0]
    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(Path(folder) / "tiny.onnx", matmuls=1)
        for timeout_s in timeouts:
            runs = []
            for index in range(args.runs):
                root = Path(folder) / f"t{timeout_s:g}-{index}"
                root.mkdir()
                runs.append(one_run(root, model, timeout_s))
            for key in ("requeued", "b_ready", "completed"):
                values = [run[key] for run in runs]
                shown = ", ".join(f"{v:.1f}" for v in values)
                print(
                    f"BGREMOVER_TAKEOVER_TIMEOUT={timeout_s:g}: worker A killed -> {key}: "
                    f"median {statistics.median(values):.1f} s ({shown})"
                )


if __name__ == "__main__":
    main()
