"""Runs the broker loses: a `bgremover serve` and real `bgremover worker` processes on
PostgreSQL, with a private Redis (the broker and the event stream) that the test may read,
stop and restart.

- A worker whose pool process is frozen receives the dispatch's message and is killed before
  the run is taken over. No worker took the run over, so after the take-over deadline the job
  is queued again, uncounted; the broker's redelivery of the old message is dropped by its
  dispatch id, and the job completes once a worker is there, once.
- The broker restarted mid-batch (its queue and unacknowledged set lost): every job ends
  completed, none stuck, none counted as lost; the web process is not ready while Redis is
  down; the worker's log (BGREMOVER_LOG_FORMAT=json) is JSON throughout, its runs' lines
  naming the run.
- A pool process that dies stops counting as a worker slot at once.
- A run the broker does not take (it is down) waits in the queue, uncounted, and is sent
  once the broker answers.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from bench.tiny_model import build_tiny_model

from bgremover.workers.scratch import PREFIX
from tests.cluster_support import (
    job_updates,
    private_cluster,
    received,
    upload_pngs,
    worker,
    worker_count,
)
from tests.redis_support import private_redis
from tests.serving import json_lines
from tests.waiting import until

ENDED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def steady_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs of a second or so, so a batch is still running when the broker restarts."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "slow.onnx", matmuls=3)


def _requeues(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job each time it went back to the queue after it was dispatched."""
    back, previous = [], None
    for job in updates:
        if job["status"] == "pending" and previous == "processing":
            back.append(job)
        previous = job["status"]
    return back


def test_a_run_whose_worker_died_before_taking_it_over_is_queued_again_and_completes_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    settings = {
        "BGREMOVER_TAKEOVER_TIMEOUT": "2",
        # The frozen worker counts as a slot until the dispatch, and the dead one a while after.
        "BGREMOVER_WORKER_HEARTBEAT": "10",
    }
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, listener = stack.enter_context(
            private_cluster(tmp_path, broker, tiny_model, **settings)
        )
        client = stack.enter_context(redis.Redis.from_url(broker.url))
        (tmp_path / "first").mkdir()
        first = stack.enter_context(worker(tmp_path / "first", env))
        until(lambda: worker_count(url) == 1, what="the first worker's slot")
        queue = f"{env['BGREMOVER_REDIS_NAMESPACE']}.jobs"

        # The worker's main process takes the message; its pool process, frozen, never
        # takes the run over; then the whole worker is killed, and the message with it.
        first_processes = _children(first)
        for pid in first_processes:
            os.kill(pid, signal.SIGSTOP)
        job_id = upload_pngs(url, tmp_path / "in", 1)["jobs"][0]["id"]
        until(lambda: received(tmp_path / "first"), what="the message received by the worker")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert client.llen(queue) == 0, "the message went to no worker"

        # Back in the queue after the deadline, uncounted (it may be sent again to the dead
        # worker's slot while that still counts, and come back again: a stale message then
        # waits for the next worker, which must drop it).
        requeues = listener.wait_for(
            "the run that no worker took over back in the queue",
            lambda seen: _requeues(job_updates(seen, job_id)),
        )
        assert [job["attempt"] for job in requeues] == [1] * len(requeues), (
            "a run that never started was counted as lost"
        )

        (tmp_path / "second").mkdir()
        second = stack.enter_context(worker(tmp_path / "second", env))
        listener.wait_for(
            "the job's end",
            lambda seen: any(j["status"] in ENDED for j in job_updates(seen, job_id)),
        )
        updates = job_updates(listener.events, job_id)
        ended = [j for j in updates if j["status"] in ENDED]
        assert [(j["status"], j["attempt"]) for j in ended] == [("completed", 1)], ended
        taken = {j["worker"] for j in updates if j["status"] == "processing" and j["worker"]}
        assert taken == {f"{socket.gethostname()} (pid {pid})" for pid in _children(second)}
        until(lambda: client.llen(queue) == 0, what="the stale message consumed")
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


def test_a_broker_restarted_mid_batch_loses_no_job(tmp_path: Path, steady_tiny_model: Path) -> None:
    settings = {
        "BGREMOVER_TAKEOVER_TIMEOUT": "3",
        "BGREMOVER_WORKER_HEARTBEAT": "0.5",
        "BGREMOVER_LOG_FORMAT": "json",
    }
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, _ = stack.enter_context(
            private_cluster(tmp_path, broker, steady_tiny_model, **settings)
        )
        client = stack.enter_context(redis.Redis.from_url(broker.url))
        (tmp_path / "worker").mkdir()
        main = stack.enter_context(worker(tmp_path / "worker", env, concurrency=2))
        until(lambda: worker_count(url) == 2, what="the worker's slots")
        queue = f"{env['BGREMOVER_REDIS_NAMESPACE']}.jobs"
        created = upload_pngs(url, tmp_path / "in", 8)
        batch_id = created["batch"]["id"]

        def batch() -> dict[str, Any]:
            answer: dict[str, Any] = httpx.get(f"{url}/api/batches/{batch_id}", timeout=30).json()
            return answer

        until(lambda: batch()["counts"]["completed"] >= 2, what="two jobs completed")
        # The worker's main process stops taking messages; its pool processes end their
        # runs and free their slots, so the next runs' messages wait in the broker.
        os.kill(main.pid, signal.SIGSTOP)
        until(lambda: client.llen(queue), what="a message waiting in the broker")
        broker.stop()  # the queue and the slots are gone
        # Without Redis a web process of the cluster serves nothing: not ready meanwhile.
        ready = httpx.get(f"{url}/api/health/ready", timeout=30)
        assert ready.status_code == 503, ready.text
        assert ready.json()["dependencies"]["redis"].startswith("unreachable"), ready.text
        broker.start()
        until(
            lambda: httpx.get(f"{url}/api/health/ready", timeout=30).status_code == 200,
            what="ready again once Redis is back",
        )
        os.kill(main.pid, signal.SIGCONT)
        ended = until(lambda: (b := batch())["status"] in ENDED and b, what="every job's end")
        assert ended["counts"]["completed"] == 8, ended
        jobs = httpx.get(f"{url}/api/jobs", params={"batch_id": batch_id}, timeout=30).json()
        assert {(j["status"], j["attempt"]) for j in jobs["items"]} == {("completed", 1)}, jobs
        lost = [j for j in jobs["items"] if j["queued_at"] != j["created_at"]]
        assert lost, "no run's message was lost: the test proved nothing"
        # Every line of the worker's, Celery's own and those of the outage too, is JSON,
        # and the lines its pool processes wrote about a run name the run.
        lines = json_lines(tmp_path / "worker" / "worker.log")
        assert any(line["logger"].startswith("celery.") for line in lines)
        runs = [line for line in lines if "job_id" in line]
        assert {line["job_id"] for line in runs} == {j["id"] for j in jobs["items"]}
        for line in runs:
            assert line["batch_id"] == batch_id and line["dispatch_id"], line
            assert line["worker"].endswith(f"(pid {line['pid']})"), line


def test_a_worker_process_that_dies_stops_counting_as_a_slot_at_once(
    tmp_path: Path, tiny_model: Path
) -> None:
    # A silent slot would count for three heartbeats: here longer than the test waits.
    settings = {"BGREMOVER_WORKER_HEARTBEAT": "120"}
    with ExitStack() as stack:
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, _ = stack.enter_context(private_cluster(tmp_path, broker, tiny_model, **settings))
        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(tmp_path / "worker", env, concurrency=2))
        until(lambda: worker_count(url) == 2, what="both slots")

        def slots() -> set[int]:
            listed = httpx.get(f"{url}/api/stats", timeout=30).json()["workers"]
            return {int(w["pid"]) for w in listed}

        dead = min(slots())
        os.kill(dead, signal.SIGKILL)
        until(lambda: dead not in slots(), what="the dead process's slot gone")
        # The pool's new process counts once its model is loaded.
        until(lambda: len(slots()) == 2, what="its replacement's slot")


def test_a_run_the_broker_does_not_take_waits_in_the_queue_and_goes_once_it_answers(
    tmp_path: Path, tiny_model: Path
) -> None:
    """The broker (a Redis of its own, apart from the event stream's) is down when a run is
    sent: before, the job failed `executor_error`; a broker outage is not the image's fault."""
    with ExitStack() as stack:
        events = stack.enter_context(private_redis(tmp_path))
        broker = stack.enter_context(private_redis(tmp_path))
        url, env, listener = stack.enter_context(
            private_cluster(tmp_path, events, tiny_model, BGREMOVER_BROKER_URL=broker.url)
        )
        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(tmp_path / "worker", env))
        until(lambda: worker_count(url) == 1, what="the worker's slot")
        broker.stop()
        job_id = upload_pngs(url, tmp_path / "in", 1)["jobs"][0]["id"]

        def broker_lost() -> bool:
            health = httpx.get(f"{url}/api/health", timeout=30).json()
            return health["dependencies"].get("broker", {}).get("ok") is False

        until(broker_lost, what="the web process saying the broker is lost")
        waiting = until(
            lambda: (
                (job := httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json())["status"]
                == "pending"
                and job
            ),
            what="the job back in the queue",
        )
        assert (waiting["attempt"], waiting["error"]) == (1, None)

        broker.start()  # the same port: the web process and the worker reconnect
        listener.wait_for(
            "the job's end",
            lambda seen: any(j["status"] in ENDED for j in job_updates(seen, job_id)),
        )
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=30).json()
        assert (job["status"], job["attempt"]) == ("completed", 1)
