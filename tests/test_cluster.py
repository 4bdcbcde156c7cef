"""The cluster as users run it: two `bgremover serve` and two `bgremover worker` processes,
all separate OS processes, sharing PostgreSQL, Redis (event stream, worker slots, cancels),
a broker (Redis or RabbitMQ) and an S3 server; each worker has a data dir of its own.

20 photos go to web 1 while an SSE client listens on web 2 and another on web 1. One running
job is cancelled through web 2, one worker process is killed mid-job (its main process
reports the run lost), a whole `bgremover worker` is killed mid-job (its run's lease runs
out), and web 1 is killed mid-batch. Every job must end completed except the cancelled one;
the client on web 2 must see every job's end; the client of web 1 reconnects to web 2 with
its Last-Event-ID and must miss no event. A tiny ISNet-shaped model with enough arithmetic
to be caught mid-run keeps this quick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from tests.cluster_support import (
    RABBITMQ_URL,
    REDIS_URL,
    S3_CREDENTIALS,
    Listener,
    ensure_service,
    jobs_seen,
    s3_server,
    worker,
)
from tests.jobs_support import postgres_database
from tests.serving import UI, served
from tests.waiting import until

PHOTOS = 20
TIMEOUT_S = 240.0
ENDED = ("completed", "failed", "cancelled")
LIFECYCLE = ("job.updated", "batch.updated", "session.updated", "notification")


def _running_on(pids: set[int], exclude: set[str]) -> Callable[[list[dict[str, Any]]], Any]:
    """A wait condition: a job that a worker process with one of ``pids`` has taken over."""

    def check(events: list[dict[str, Any]]) -> str | None:
        for job_id, job in jobs_seen(events).items():
            worker = job.get("worker") or ""
            running = job["status"] == "processing" and job_id not in exclude
            if running and any(f"(pid {pid})" in worker for pid in pids):
                return job_id
        return None

    return check


def _children(process: subprocess.Popen[str]) -> set[int]:
    return {child.pid for child in psutil.Process(process.pid).children(recursive=True)}


def _photos(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(7)
    paths = []
    for index in range(PHOTOS):
        pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        path = folder / f"photo-{index:02}.jpg"
        Image.fromarray(pixels).save(path, quality=85)
        paths.append(path)
    return paths


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_cluster_loses_no_job_and_no_event_when_processes_die(
    broker: str, tmp_path: Path, slow_tiny_model: Path
) -> None:
    ensure_service("redis", 6379)
    if broker == "rabbitmq":
        ensure_service("rabbitmq", 5672)
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        s3 = stack.enter_context(s3_server(tmp_path))
        namespace = f"test-{uuid.uuid4().hex[:8]}"
        env = {
            **S3_CREDENTIALS,
            "BGREMOVER_DATABASE_URL": database,
            "BGREMOVER_REDIS_URL": REDIS_URL,
            "BGREMOVER_REDIS_NAMESPACE": namespace,
            "BGREMOVER_STORAGE_URL": s3.url(namespace),
            "BGREMOVER_S3_ENDPOINT_URL": s3.endpoint,
            "BGREMOVER_MODEL_PATH": str(slow_tiny_model),
            "BGREMOVER_LEASE_DURATION": "4",
            "BGREMOVER_WORKER_HEARTBEAT": "0.5",
        }
        if broker == "rabbitmq":
            env["BGREMOVER_BROKER_URL"] = RABBITMQ_URL
        roots = {name: tmp_path / name for name in ("web1", "web2", "worker-a", "worker-b")}
        for root in roots.values():
            root.mkdir()
        web1, web1_process = stack.enter_context(served(roots["web1"], env=env))
        web2, _ = stack.enter_context(served(roots["web2"], env=env))
        worker_a = stack.enter_context(worker(roots["worker-a"], env))
        worker_b = stack.enter_context(worker(roots["worker-b"], env))
        # Listening before anything runs: from web 2 throughout, and from web 1 until it dies.
        on_web2 = Listener(web2)
        on_web1 = Listener(web1)
        stack.callback(on_web2.close)
        stack.callback(on_web1.close)
        for listener in (on_web1, on_web2):
            listener.wait_for("the snapshot", lambda seen: seen)
        _wait_for_workers(web2, 2)
        listed = httpx.get(f"{web2}/api/stats", timeout=30).json()["workers"]
        assert {w["pid"] for w in listed} == _children(worker_a) | _children(worker_b)

        files = [
            ("files", (p.name, p.read_bytes(), "image/jpeg")) for p in _photos(tmp_path / "in")
        ]
        created = httpx.post(f"{web1}/api/batches", files=files, headers=UI, timeout=60)
        assert created.status_code == 201, created.text
        job_ids = {job["id"] for job in created.json()["jobs"]}

        # Cancel a running job through web 2.
        cancelled = on_web2.wait_for(
            "a running job", _running_on(_children(worker_a) | _children(worker_b), set())
        )
        answer = httpx.post(f"{web2}/api/jobs/{cancelled}/cancel", headers=UI, timeout=30)
        assert answer.status_code == 200, answer.text

        # Kill worker A's process mid-job: its main process reports the run lost.
        killed_child = on_web2.wait_for(
            "a job on worker A", _running_on(_children(worker_a), {cancelled})
        )
        os.kill(_pid_running(on_web2, killed_child), signal.SIGKILL)

        # Kill the whole of worker B mid-job: its run's lease runs out.
        killed_whole = on_web2.wait_for(
            "a job on worker B", _running_on(_children(worker_b), {cancelled, killed_child})
        )
        os.killpg(worker_b.pid, signal.SIGKILL)

        # Kill web 1 mid-batch; its client resumes on web 2 from its last event id.
        on_web2.wait_for(
            "a few jobs ending",
            lambda seen: sum(j["status"] == "completed" for j in jobs_seen(seen).values()) >= 4,
        )
        web1_process.kill()
        web1_process.wait()
        on_web1.wait_for("web 1 going away", lambda seen: on_web1.broken.is_set())
        last_id = next(e["id"] for e in reversed(on_web1.events) if e.get("id"))
        resumed = Listener(web2, last_event_id=f"{last_id}-0")  # as the Redis stream id
        stack.callback(resumed.close)

        def all_ended(seen: list[dict[str, Any]]) -> bool:
            jobs = jobs_seen(seen)
            return all(jobs.get(job_id, {}).get("status") in ENDED for job_id in job_ids)

        on_web2.wait_for("every job's end", all_ended)
        resumed.wait_for(
            "every job's end, before web 1 died or after resuming",
            lambda seen: all_ended(on_web1.events + seen),
        )

        final = jobs_seen(on_web2.events)
        ended = {job_id: final[job_id]["status"] for job_id in job_ids}
        assert ended[cancelled] == "cancelled"
        assert {s for j, s in ended.items() if j != cancelled} == {"completed"}, ended
        for job_id in (killed_child, killed_whole):
            history = [
                (e["event"], e["data"].get("job", {}).get("status"), e["data"].get("body"))
                for e in on_web2.events
                if job_id in (e["data"].get("job", {}).get("id"), e["data"].get("job_id"))
            ]
            assert final[job_id]["attempt"] == 2, f"{job_id} lost more than one run: {history}"

        # The resumed client got no snapshot and every lifecycle event web 2's client saw
        # after its last one from web 1.
        assert not [e for e in resumed.events if e["event"] in ("snapshot", "resync")]
        after = int(last_id)
        wanted = {
            int(e["id"]) for e in on_web2.events if e["event"] in LIFECYCLE and int(e["id"]) > after
        }
        # Both streams go on (progress is published every few seconds): compare once the
        # resumed client has caught up with what web 2's own client saw.
        newest = max(wanted, default=after)
        resumed.wait_for(
            f"event {newest}", lambda seen: any(int(e.get("id") or 0) >= newest for e in seen)
        )
        got = {int(e["id"]) for e in on_web1.events + resumed.events if e["event"] in LIFECYCLE}
        assert wanted <= got, f"missed after resuming: {sorted(wanted - got)[:10]}"

        # Results are in the shared store and served by the surviving web process.
        for job_id in job_ids - {cancelled}:
            result = httpx.get(f"{web2}/api/jobs/{job_id}/result", timeout=30)
            assert result.status_code == 200 and result.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert not any(root.joinpath("originals").exists() for root in roots.values())


def _pid_running(listener: Listener, job_id: str) -> int:
    worker = jobs_seen(listener.events)[job_id]["worker"]
    return int(worker.rsplit("(pid ", 1)[1].rstrip(")"))


def _wait_for_workers(url: str, count: int) -> None:
    """Until /api/health counts ``count`` workers (each beats once its model is loaded)."""
    health = until(
        lambda: httpx.get(f"{url}/api/health", timeout=10).json(),
        lambda health: health["workers"] >= count,
        TIMEOUT_S,
        f"{count} workers ready",
    )
    assert health["redis"] == "ok" and health["broker"] == "ok", health


def test_a_worker_without_a_cluster_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGREMOVER_")}
    result = subprocess.run(
        [sys.executable, "-m", "bgremover", "worker"],
        env={**env, "BGREMOVER_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "BGREMOVER_REDIS_URL" in result.stderr


def test_a_worker_that_cannot_reach_the_database_waits_and_says_so(
    tmp_path: Path, slow_tiny_model: Path
) -> None:
    ensure_service("redis", 6379)
    env = {
        "BGREMOVER_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        "BGREMOVER_REDIS_URL": REDIS_URL,
        "BGREMOVER_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
        "BGREMOVER_MODEL_PATH": str(slow_tiny_model),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bgremover", "worker", "--concurrency", "1"],
        env={**os.environ, **env, "BGREMOVER_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        said = next(line for line in iter(process.stdout.readline, "") if "retrying in" in line)
        assert "cannot reach the database" in said
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
