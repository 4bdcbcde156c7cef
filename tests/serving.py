"""Run a real `bgremover serve` process on a free loopback port for a test module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(root: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the server with its data in ``root``; yield its URL and process; kill it after."""
    port = free_port()
    env = {**os.environ, "BGREMOVER_DATA_DIR": str(root), "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bgremover", "serve", "--port", str(port), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"server did not start:\n{process.communicate()[0]}")
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
