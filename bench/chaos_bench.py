"""Chaos benchmark: what a batch goes through when the infrastructure under it fails.

Each scenario starts a cluster of its own (tests/chaos_support.py): `bgremover serve` and
`bgremover worker --concurrency 2` on a private PostgreSQL (initdb + pg_ctl on a free port)
and a private Redis (event stream, worker slots, cancels, and the Celery broker, as with only
BGREMOVER_REDIS_URL set; the broker row has a Redis of its own as the broker). It uploads 8
photos (samples/, the real model unless ``--tiny``), injects one fault mid-batch and prints:
jobs completed / failed / stuck (not ended ``--deadline`` s after the fault) / duplicated
(completed twice), re-runs (attempts beyond the first), whether the SSE ids one client saw
only increased, the recovery time: from the end of the fault to the first completion
(a run's duration included), and when work resumed: the first run started after the fault.

Scenarios: redis-killed (10 s), redis-restart (at once: stream, queue, slots lost),
postgres-crash (``pg_ctl stop -m immediate`` for 10 s), postgres-restart (fast),
worker-killed (SIGKILL mid-run, a new worker started), worker-killed-after-dispatch (SIGKILL
right after a run was sent, before a worker took it over; a new one started), web-killed
(SIGKILL, restarted; the client resumes with Last-Event-ID), disk-full (results storage on a
size-limited tmpfs, filled for 15 s; needs root and mount, skipped with the reason
otherwise), broker-restart (the broker's Redis restarted mid-batch).

Run it by hand from the repository root (not a test; about a minute per scenario):

    .venv/bin/python bench/chaos_bench.py
    .venv/bin/python bench/chaos_bench.py --tiny --only redis-killed --only postgres-crash

Measured on main after issue 23 (2 cores, a test run beside it), every row 8 completed, 0
failed, 0 stuck, 0 duplicated, SSE ids only increasing; re-runs, recovery / resumed:
- real model: redis-killed 0, 9.0 / 0.1 s (a run's duration after the first claim);
  redis-restart 0, 0.8 / 0.9 s; postgres-crash 0, 0.1 / 0.2 s (before: 2 re-runs, 23.8 s);
  postgres-restart 0, 1.0 / 0.8 s (before: 1 re-run, 3.6 s); worker-killed 1, 18.3 / 12.2 s
  (the new worker loads the model first); worker-killed-after-dispatch 0, 18.9 / 0.0 s (the
  15 s take-over deadline; before: stuck); web-killed 0, 7.1 / 7.1 s; disk-full 2, 7.6 / 1.0 s
  (before: 3 failed); broker-restart 0, 0.0 / 0.1 s.
- --tiny: 2.4 / 1.1, 0.4 / 0.4, 1.0 / 1.1, 0.8 / 0.0, 4.2 / 4.2 (1 re-run), 4.7 / 0.0,
  0.7 / 0.7, 2.9 / 1.7 (2 re-runs), 0.0 / 0.1 s in the same order.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: reuse the tests' process helpers

from bench.tiny_model import build_tiny_model  # noqa: E402
from tests.chaos_support import (  # noqa: E402
    Chaos,
    all_ended,
    chaos_cluster,
    first_after,
    id_order_breaks,
    named_copies,
)
from tests.cluster_support import Listener, jobs_seen  # noqa: E402

PHOTOS = 8
OUTAGE_S = 10.0
DISK_FULL_S = 15.0


@dataclass
class Outcome:
    completed: int = 0
    failed: int = 0
    stuck: int = 0
    duplicated: int = 0
    reruns: int = 0
    ids_increase: bool = True
    recovery_s: float | None = None
    """From the end of the fault to the first completion (includes a run's duration)."""
    resumed_s: float | None = None
    """From the end of the fault to the first run started (claimed) after it."""
    note: str = ""


class Skip(Exception):
    """The scenario cannot run here; the message says why."""


def running(events: list[dict[str, Any]]) -> bool:
    """Mid-batch: a job done and one running on a worker."""
    jobs = jobs_seen(events).values()
    done = any(j["status"] == "completed" for j in jobs)
    return done and any(j["status"] == "processing" and j["worker"] for j in jobs)


def just_dispatched(events: list[dict[str, Any]]) -> bool:
    """A run sent to the broker that no worker has taken over yet."""
    return any(j["status"] == "processing" and not j["worker"] for j in jobs_seen(events).values())


def duplicated(events: list[dict[str, Any]]) -> int:
    """Jobs that completed more than once (two different end times)."""
    ends: dict[str, set[str]] = {}
    for event in events:
        if event["event"] == "job.updated" and event["data"]["job"]["status"] == "completed":
            job = event["data"]["job"]
            ends.setdefault(job["id"], set()).add(job["end_time"])
    return sum(len(times) > 1 for times in ends.values())


# Faults: each returns when the fault has ended (the clock for recovery starts then).


def redis_killed(chaos: Chaos, listener: Listener) -> None:
    chaos.redis.stop()
    time.sleep(OUTAGE_S)
    chaos.redis.start()


def redis_restart(chaos: Chaos, listener: Listener) -> None:
    chaos.redis.stop()
    chaos.redis.start()


def postgres_crash(chaos: Chaos, listener: Listener) -> None:
    chaos.postgres.crash()
    time.sleep(OUTAGE_S)
    chaos.postgres.start()


def postgres_restart(chaos: Chaos, listener: Listener) -> None:
    chaos.postgres.restart()


def worker_killed(chaos: Chaos, listener: Listener) -> None:
    chaos.kill_worker(chaos.workers[-1])
    chaos.start_worker()


def worker_killed_after_dispatch(chaos: Chaos, listener: Listener) -> None:
    listener.wait_for("a run sent but not taken over", just_dispatched)
    chaos.kill_worker(chaos.workers[-1])
    chaos.start_worker()


def web_killed(chaos: Chaos, listener: Listener) -> None:
    chaos.kill_web()
    chaos.start_web()


def broker_restart(chaos: Chaos, listener: Listener) -> None:
    chaos.broker.stop()
    chaos.broker.start()


def disk_full(chaos: Chaos, listener: Listener) -> None:
    filler = Path(chaos.env["BGREMOVER_STORAGE_URL"].removeprefix("file://")) / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass  # full
    time.sleep(DISK_FULL_S)
    filler.unlink()


Fault = Callable[[Chaos, Listener], None]
SCENARIOS: dict[str, tuple[Fault, dict[str, Any]]] = {
    "redis-killed": (redis_killed, {}),
    "redis-restart": (redis_restart, {}),
    "postgres-crash": (postgres_crash, {}),
    "postgres-restart": (postgres_restart, {}),
    "worker-killed": (worker_killed, {}),
    "worker-killed-after-dispatch": (worker_killed_after_dispatch, {"trigger": "dispatch"}),
    "web-killed": (web_killed, {}),
    "disk-full": (disk_full, {"tmpfs": True}),
    "broker-restart": (broker_restart, {"separate_broker": True}),
}


def mount_tmpfs(folder: Path) -> None:
    """A 256 MB tmpfs at ``folder`` (root only)."""
    if os.geteuid() != 0:
        raise Skip("needs root to mount a size-limited tmpfs")
    folder.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def run(name: str, root: Path, model: Path | None, photos: list[Path], deadline: float) -> Outcome:
    fault, options = SCENARIOS[name]
    store = root / "store"
    if options.get("tmpfs"):
        mount_tmpfs(store)
    try:
        with chaos_cluster(
            root, model, separate_broker=options.get("separate_broker", False)
        ) as chaos:
            return measure(chaos, fault, photos, deadline, options.get("trigger"))
    finally:
        if options.get("tmpfs"):
            subprocess.run(["umount", "-l", str(store)], check=False)


def measure(
    chaos: Chaos, fault: Fault, photos: list[Path], deadline: float, trigger: str | None
) -> Outcome:
    chaos.start_worker(concurrency=2)
    chaos.wait_workers(2)
    listener = chaos.listen()
    listener.wait_for("the snapshot", lambda seen: seen)
    ids = chaos.upload(photos)
    if trigger is None:
        listener.wait_for("a job done and one running", running)
    fault(chaos, listener)
    fault_end = datetime.now(UTC)
    events = listener.events
    if listener.broken.is_set():  # the web process died: resume where the client was
        last = next(e["id"] for e in reversed(listener.events) if e.get("id"))
        resumed = chaos.listen(last_event_id=last)
        events = listener.events + resumed.events
    jobs = chaos.wait_jobs(ids, all_ended, deadline)
    time.sleep(1.0)  # the last events reach the client
    statuses = [j["status"] for j in jobs.values()]
    end = first_after(jobs, "end_time", fault_end)
    start = first_after(jobs, "start_time", fault_end)
    return Outcome(
        completed=statuses.count("completed"),
        failed=statuses.count("failed"),
        stuck=len(ids) - statuses.count("completed") - statuses.count("failed"),
        duplicated=duplicated(events),
        reruns=sum(j["attempt"] - 1 for j in jobs.values()),
        ids_increase=not id_order_breaks(events),
        recovery_s=(end - fault_end).total_seconds() if end else None,
        resumed_s=(start - fault_end).total_seconds() if start else None,
        note="; ".join(sorted({j["error"] for j in jobs.values() if j["error"]}))[:200],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[])
    parser.add_argument("--tiny", action="store_true", help="a tiny model: a quick run")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds: then stuck")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as folder:
        base = Path(folder)
        model = build_tiny_model(base / "tiny.onnx", matmuls=4) if args.tiny else None
        photos = named_copies(sorted((ROOT / "samples").glob("*.jpg")), base, PHOTOS)
        print(f"{PHOTOS} photos per scenario, {'tiny' if args.tiny else 'real'} model")
        print(
            f"{'scenario':<30}{'done':>5}{'failed':>7}{'stuck':>6}{'dup':>4}{'re-runs':>8}"
            f"{'ids up':>7}{'recovery':>10}{'resumed':>9}"
        )
        for name in args.only or list(SCENARIOS):
            try:
                outcome = run(name, base / name, model, photos, args.deadline)
            except Skip as why:
                print(f"{name:<30}skipped: {why}")
                continue
            recovery = f"{outcome.recovery_s:.1f} s" if outcome.recovery_s is not None else "-"
            resumed = f"{outcome.resumed_s:.1f} s" if outcome.resumed_s is not None else "-"
            print(
                f"{name:<30}{outcome.completed:>5}{outcome.failed:>7}{outcome.stuck:>6}"
                f"{outcome.duplicated:>4}{outcome.reruns:>8}"
                f"{'yes' if outcome.ids_increase else 'NO':>7}{recovery:>10}{resumed:>9}"
                + (f"  {outcome.note}" if outcome.note else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
