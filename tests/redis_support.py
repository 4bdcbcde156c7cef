"""Redis for tests: the shared server on 127.0.0.1:6379 (started when it is not running), or
a private one on a free port that a test may stop and restart."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .serving import free_port

SHARED_URL = "redis://127.0.0.1:6379/0"
START_SHARED = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def _client(url: str, retries: int = 0) -> redis.Redis:
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries)
    return redis.Redis.from_url(
        url, socket_connect_timeout=1, retry=retry, retry_on_error=[redis.ConnectionError]
    )


def shared_redis() -> str:
    """The URL of the machine's Redis, started when it is not running; skips the test with
    the reason when it cannot start."""
    try:
        with _client(SHARED_URL) as client:
            client.ping()
            return SHARED_URL
    except redis.ConnectionError:
        pass
    try:
        subprocess.run(START_SHARED, check=True, capture_output=True, timeout=30)
        with _client(SHARED_URL, retries=30) as client:  # a daemon listens a moment after
            client.ping()
    except (OSError, subprocess.SubprocessError, redis.ConnectionError) as exc:
        pytest.skip(f"Redis is not running at {SHARED_URL} and could not start: {exc}")
    return SHARED_URL


@contextmanager
def unique_prefix(url: str) -> Iterator[str]:
    """Key prefix of one test's event stream on the shared Redis, deleted afterwards."""
    prefix = f"bgremover-test:{uuid.uuid4().hex[:12]}:events"
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(url) as client:
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)


class PrivateRedis:
    """A redis-server of this test's own on a free loopback port, without persistence, so a
    stop and start loses everything, as a restarted cache server does."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._root = root
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        process = self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._root)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        log = []
        for line in process.stdout:  # its log says when it listens
            log.append(line)
            if "Ready to accept connections" in line:
                # Keep reading its log so a full pipe never stops the server.
                threading.Thread(target=process.stdout.read, daemon=True).start()
                return
        pytest.skip(f"redis-server could not start on port {self.port}: {''.join(log)}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@contextmanager
def private_redis(root: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
