"""Runs the broker loses: a `bgremover serve` and real `bgremover worker` processes on
PostgreSQL, with a private Redis (the broker and the event stream) that the test may freeze
clients of, stop and restart.

- A worker frozen while it waits for the next message (blocked in BRPOP): the dispatch's
  message goes to it, then it is killed, so the message is neither in the queue nor in the
  broker's unacknowledged set. No worker took the run over, so after the take-over deadline
  the job is queued again, uncounted, and completes once a worker is there, once.
- The broker restarted mid-batch (its queue and unacknowledged set lost): every job ends
  completed, none stuck, none run to completion twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from bench.tiny_model import build_tiny_model
from PIL import Image

from bgremover.workers.scratch import PREFIX
from tests.cluster_support import WAIT_S, Listener, worker
from tests.jobs_support import postgres_database
from tests.redis_support import PrivateRedis, private_redis
from tests.serving import UI, served

ENDED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def slow_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs of a second or so, so a batch is still running when the broker restarts."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "slow.onnx", matmuls=3)


@contextmanager
def cluster(
    tmp_path: Path, broker: PrivateRedis, model: Path, **extra: str
) -> Iterator[tuple[str, dict[str, str], Listener]]:
    """A web process on a fresh PostgreSQL database with ``broker`` as its Redis; yields its
    URL, the environment workers need, and an SSE listener on it."""
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        env = {
            "BGREMOVER_DATABASE_URL": database,
            "BGREMOVER_REDIS_URL": broker.url,
            "BGREMOVER_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
            "BGREMOVER_STORAGE_URL": (tmp_path / "storage").as_uri(),
            "BGREMOVER_MODEL_PATH": str(model),
            **extra,
        }
        web_root = tmp_path / "web"
        web_root.mkdir()
        # Its output goes on to a log (until it is stopped), so a server that logs a Redis
        # outage never blocks on a full pipe.
        log = stack.enter_context(open(web_root / "server.log", "w"))
        copiers: list[threading.Thread] = []
        stack.callback(lambda: [copier.join() for copier in copiers])
        url, process = stack.enter_context(served(web_root, env=env))
        copiers.append(threading.Thread(target=shutil.copyfileobj, args=(process.stdout, log)))
        copiers[0].start()
        listener = Listener(url)
        stack.callback(listener.close)
        listener.wait_for("the snapshot", lambda seen: seen)
        yield url, env, listener


def _upload(url: str, folder: Path, count: int) -> dict[str, Any]:
    folder.mkdir()
    rng = np.random.default_rng(11)
    files = []
    for index in range(count):
        pixels = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        path = folder / f"photo-{index:02}.png"
        Image.fromarray(pixels).save(path)
        files.append(("files", (path.name, path.read_bytes(), "image/png")))
    created = httpx.post(f"{url}/api/batches", files=files, headers=UI, timeout=60)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _updates(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [
        e["data"]["job"]
        for e in events
        if e["event"] == "job.updated" and e["data"]["job"]["id"] == job_id
    ]


def _requeued(updates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job as it went back to the queue after it was dispatched, if it did."""
    dispatched = next((i for i, j in enumerate(updates) if j["status"] == "processing"), None)
    if dispatched is None:
        return None
    return next((j for j in updates[dispatched:] if j["status"] == "pending"), None)


def _until(what: str, check: Any) -> Any:
    """Poll ``check()`` (the broker's or the API's state, which sends no events) until it
    returns something truthy."""
    stop = threading.Event()
    timer = threading.Timer(WAIT_S, stop.set)
    timer.start()
    try:
        while not stop.is_set():
            found = check()
            if found:
                return found
            stop.wait(0.05)
    finally:
        timer.cancel()
    pytest.fail(f"never saw {what}")


def _workers(url: str) -> int:
    return int(httpx.get(f"{url}/api/health", timeout=10).json()["workers"])


def _blocked_in_brpop(client: redis.Redis) -> bool:
    return any(c["cmd"] == "brpop" and "b" in c["flags"] for c in client.client_list())


def _freeze_while_waiting(process_group: int, client: redis.Redis) -> None:
    """Stop every process of the worker at a moment its main process is blocked in BRPOP on
    the queue, so the next message is popped for it by Redis and never read."""

    def frozen_waiting() -> bool:
        os.killpg(process_group, signal.SIGSTOP)
        if _blocked_in_brpop(client):
            return True
        os.killpg(process_group, signal.SIGCONT)  # between two BRPOPs: let it issue the next
        return False

    _until("the worker blocked in BRPOP while frozen", frozen_waiting)


def test_a_run_whose_worker_died_before_taking_it_over_is_queued_again_and_completes_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    settings = {
        "BGREMOVER_TAKEOVER_TIMEOUT": "2",
        # The frozen worker counts as a slot until the dispatch, and the dead one a while after.
        "BGREMOVER_WORKER_HEARTBEAT": "5",
    }
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, listener = stack.enter_context(cluster(tmp_path, broker, tiny_model, **settings))
        client = stack.enter_context(redis.Redis.from_url(broker.url))
        (tmp_path / "first").mkdir()
        first = stack.enter_context(worker(tmp_path / "first", env))
        _until("the first worker's slot", lambda: _workers(url) == 1)
        queue = f"{env['BGREMOVER_REDIS_NAMESPACE']}.jobs"

        first_processes = _children(first)
        _freeze_while_waiting(first.pid, client)
        job_id = _upload(url, tmp_path / "in", 1)["jobs"][0]["id"]
        # Redis pops the message for the frozen worker: it is in no queue, nobody will ack it.
        _until("the message handed to the frozen worker", lambda: not _blocked_in_brpop(client))
        assert client.llen(queue) == 0
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

        back = listener.wait_for(
            "the run that no worker took over back in the queue",
            lambda seen: _requeued(_updates(seen, job_id)),
        )
        assert back["attempt"] == 1, "a run that never started was counted as lost"

        (tmp_path / "second").mkdir()
        second = stack.enter_context(worker(tmp_path / "second", env))
        listener.wait_for(
            "the job's end",
            lambda seen: any(j["status"] in ENDED for j in _updates(seen, job_id)),
        )
        updates = _updates(listener.events, job_id)
        ended = [j for j in updates if j["status"] in ENDED]
        assert [(j["status"], j["attempt"]) for j in ended] == [("completed", 1)], ended
        taken = {j["worker"] for j in updates if j["status"] == "processing" and j["worker"]}
        assert taken == {f"{socket.gethostname()} (pid {pid})" for pid in _children(second)}
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
        assert (job["status"], job["attempt"]) == ("completed", 1)
        result = httpx.get(f"{url}/api/jobs/{job_id}/result", timeout=30)
        assert result.status_code == 200 and result.content[:8] == b"\x89PNG\r\n\x1a\n"
        # The killed worker's scratch folder went when the next worker process started.
        tmp = Path(tempfile.gettempdir())
        assert not [p for pid in first_processes for p in tmp.glob(f"{PREFIX}{pid}-*")]


def _children(process: Any) -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process(process.pid).children(recursive=True)}


def test_a_broker_restarted_mid_batch_loses_no_job(tmp_path: Path, slow_tiny_model: Path) -> None:
    settings = {"BGREMOVER_TAKEOVER_TIMEOUT": "3", "BGREMOVER_WORKER_HEARTBEAT": "0.5"}
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, _ = stack.enter_context(cluster(tmp_path, broker, slow_tiny_model, **settings))
        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(tmp_path / "worker", env, concurrency=2))
        _until("the worker's slots", lambda: _workers(url) == 2)
        created = _upload(url, tmp_path / "in", 8)
        batch_id = created["batch"]["id"]

        def batch() -> dict[str, Any]:
            answer: dict[str, Any] = httpx.get(f"{url}/api/batches/{batch_id}", timeout=30).json()
            return answer

        _until("two jobs completed", lambda: batch()["counts"]["completed"] >= 2)
        broker.stop()  # the queue, the unacknowledged messages and the slots are gone
        broker.start()
        ended = _until(
            "every job's end",
            lambda: (b := batch())["status"] in ENDED and b,
        )
        assert ended["counts"]["completed"] == 8, ended
        jobs = httpx.get(f"{url}/api/jobs", params={"batch_id": batch_id}, timeout=30).json()
        assert {(j["status"], j["attempt"]) for j in jobs["items"]} == {("completed", 1)}, jobs


def test_a_worker_process_that_dies_stops_counting_as_a_slot_at_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    # A silent slot would count for three heartbeats: here longer than the test waits.
    settings = {"BGREMOVER_WORKER_HEARTBEAT": "120"}
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, _ = stack.enter_context(cluster(tmp_path, broker, tiny_model, **settings))
        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(tmp_path / "worker", env, concurrency=2))
        _until("both slots", lambda: _workers(url) == 2)

        def slots() -> set[int]:
            listed = httpx.get(f"{url}/api/stats", timeout=30).json()["workers"]
            return {int(w["pid"]) for w in listed}

        dead = min(slots())
        os.kill(dead, signal.SIGKILL)
        _until("the dead process's slot gone", lambda: dead not in slots())
        # The pool's new process counts once its model is loaded.
        _until("its replacement's slot", lambda: len(slots()) == 2)
