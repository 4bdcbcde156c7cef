"""The services a cluster test needs, checked and started when they are not running:
Redis, RabbitMQ, and a real S3 protocol server (moto's server mode, in a process); a cluster
on a private Redis, and the means to fault it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.jobs_support import postgres_database
from tests.redis_support import SHARED_URL, PrivateRedis, shared_redis
from tests.serving import UI, free_port, served, sse_events
from tests.waiting import Watched, until

REDIS_URL = SHARED_URL
RABBITMQ_URL = os.environ.get("BGREMOVER_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_S = 120.0
WAIT_S = 240.0

# How this machine kind starts each service (the same commands started them before the
# session); a test that finds one down runs it and waits.
START_RABBITMQ = ["rabbitmq-server", "-detached"]


def jobs_seen(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest state of every job, from snapshots and job.updated events."""
    jobs: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["event"] == "snapshot":
            jobs.update({j["id"]: j for j in event["data"]["jobs"]})
        elif event["event"] == "job.updated":
            jobs[event["data"]["job"]["id"]] = event["data"]["job"]
    return jobs


def job_end(job_id: str) -> Callable[[list[dict[str, Any]]], dict[str, Any] | None]:
    """A ``Listener.wait_for`` condition: the job ``job_id`` as it ended, once it has."""

    def check(events: list[dict[str, Any]]) -> dict[str, Any] | None:
        job = jobs_seen(events).get(job_id)
        ended = job is not None and job["status"] in ("completed", "failed", "cancelled")
        return job if ended else None

    return check


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ensure_service(name: str, port: int) -> None:
    """Make sure the local service on ``port`` answers, starting it if needed; fail the
    test with the reason when it cannot be started."""
    if _answers(port):
        return
    if name == "redis":
        shared_redis()  # starts it and waits until it answers PING
        return
    command = START_RABBITMQ
    if shutil.which(command[0]) is None:
        pytest.fail(f"{name} is not running on 127.0.0.1:{port} and {command[0]} is not installed")
    subprocess.run(command, check=False, capture_output=True, timeout=60)
    import kombu

    # Until the broker accepts a login (its port opens before that), with kombu's backoff.
    with kombu.Connection(RABBITMQ_URL) as connection:
        connection.ensure_connection(max_retries=60, interval_start=1, interval_step=1)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """A moto S3 server in its own process on a free port, with one bucket."""
    port = free_port()
    env = {**os.environ, **S3_CREDENTIALS}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    serving = threading.Event()
    # Its output goes to a log (read to the end, so the server never blocks on a full pipe);
    # werkzeug's "Running on" line says it listens.
    copier = threading.Thread(target=_copy_log, args=(process, root / "moto.log", serving))
    copier.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        if not serving.wait(START_TIMEOUT_S) or process.poll() is not None:
            pytest.fail(f"the S3 server did not start: {(root / 'moto.log').read_text()}")
        import boto3

        bucket = f"bgremover-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(
            Bucket=bucket
        )
        yield S3Server(endpoint, bucket)
    finally:
        process.kill()
        process.wait()
        copier.join()


def _copy_log(process: subprocess.Popen[str], log: Path, serving: threading.Event) -> None:
    assert process.stdout is not None
    with open(log, "w") as out:
        for line in process.stdout:
            out.write(line)
            out.flush()
            if "Running on" in line:
                serving.set()
    serving.set()  # it exited: the waiter reads the log and fails with it


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


class Listener:
    """An SSE client in a thread that keeps every event and lets the test wait on them."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.broken = threading.Event()
        self._changed = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._thread = threading.Thread(target=self._read, args=(headers,), daemon=True)
        self._thread.start()

    def _read(self, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", f"{self.url}/api/events", headers=headers) as r:
                for event in sse_events(r):
                    event["received_at"] = time.time()
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
        except httpx.HTTPError:
            pass
        finally:
            self.broken.set()
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, what: str, found: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """Wait until ``found(events)`` returns something truthy, and return it."""
        result = until(
            Watched(self._changed, lambda: found(self.events)),
            lambda seen: seen or self.broken.is_set(),
            WAIT_S,
            f"{what} from {self.url}",
        )
        if not result:
            pytest.fail(f"{self.url}: the stream broke before {what}; last: {self.events[-5:]}")
        return result

    def close(self) -> None:
        self._client.close()


@contextmanager
def worker(
    root: Path, env: dict[str, str], concurrency: int = 1, *, core: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """`bgremover worker` in a session of its own (so it can be killed whole); pinned to
    CPU ``core`` alone with ``taskset`` when one is given (a machine of one core)."""
    log = open(root / "worker.log", "w")  # noqa: SIM115 - closed below
    pinned = ["taskset", "-c", str(core)] if core is not None else []
    command = [sys.executable, "-m", "bgremover", "worker", "--concurrency", str(concurrency)]
    process = subprocess.Popen(
        [*pinned, *command],
        env={**os.environ, **env, "BGREMOVER_DATA_DIR": str(root)},
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def private_cluster(
    tmp_path: Path, broker: PrivateRedis, model: Path, **extra: str
) -> AbstractContextManager[tuple[str, dict[str, str], Listener]]:
    """``cluster_web`` with ``broker`` as its Redis."""
    return cluster_web(tmp_path, broker.url, model, **extra)


@contextmanager
def cluster_web(
    tmp_path: Path, redis_url: str, model: Path, **extra: str
) -> Iterator[tuple[str, dict[str, str], Listener]]:
    """A web process on a fresh PostgreSQL database with the Redis at ``redis_url`` under
    a namespace of its own; yields its URL, the environment workers need, and an SSE
    listener on it."""
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        env = {
            "BGREMOVER_DATABASE_URL": database,
            "BGREMOVER_REDIS_URL": redis_url,
            "BGREMOVER_REDIS_NAMESPACE": f"test-{uuid.uuid4().hex[:8]}",
            "BGREMOVER_STORAGE_URL": (tmp_path / "storage").as_uri(),
            "BGREMOVER_MODEL_PATH": str(model),
            **extra,
        }
        web_root = tmp_path / "web"
        web_root.mkdir()
        url, _ = stack.enter_context(served(web_root, env=env, log=web_root / "server.log"))
        listener = Listener(url)
        stack.callback(listener.close)
        listener.wait_for("the snapshot", lambda seen: seen)
        yield url, env, listener


@contextmanager
def web_processes(root: Path, env: dict[str, str], count: int = 2) -> Iterator[list[Listener]]:
    """``count`` `bgremover serve` processes with ``env`` (one database, one storage), each
    logging to its own file in ``root``; yields an SSE listener on each, past its snapshot
    (``listener.url`` is the process's URL)."""
    with ExitStack() as stack:
        listeners = []
        for index in range(count):
            home = root / f"web-{index}"
            home.mkdir()
            url, _ = stack.enter_context(served(home, env=env, log=home / "server.log"))
            listener = Listener(url)
            stack.callback(listener.close)
            listener.wait_for("the snapshot", lambda seen: seen)
            listeners.append(listener)
        yield listeners


def upload_pngs(url: str, folder: Path, count: int) -> dict[str, Any]:
    """Upload ``count`` small noise PNGs (written to ``folder``) as one batch; its answer."""
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


def job_updates(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The job's snapshots in ``events``' job.updated events, in order."""
    return [
        e["data"]["job"]
        for e in events
        if e["event"] == "job.updated" and e["data"]["job"]["id"] == job_id
    ]


def worker_count(url: str) -> int:
    """The worker slots the web process at ``url`` counts."""
    return int(httpx.get(f"{url}/api/health", timeout=10).json()["workers"])


def received(root: Path) -> bool:
    """Whether the `bgremover worker` logging in ``root`` received a run's message (Celery's
    main process says so when it takes one from the broker)."""
    return "] received" in (root / "worker.log").read_text()
