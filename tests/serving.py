"""Run a real `bgremover serve` process on a free loopback port for a test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.common import UI_HEADER
from bench.common import free_port as free_port  # shared with bench/

from .waiting import until

UI = UI_HEADER
"""What the web UI sends with every state-changing request (bench.common says why)."""

START_TIMEOUT_S = 60.0
"""A server starts in seconds; a minute covers a loaded machine."""

_OUTPUT: dict[int, Path] = {}
"""The log of each server ``served`` runs, by its pid."""


@contextmanager
def served(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the server with its data in ``root`` (and ``env`` added to the environment) on
    ``port`` (a free one by default), its output appended to ``log`` (else to a temporary
    file, never a pipe: one nobody reads fills up and blocks the server at its next log
    line); yield its URL and process (``output`` reads what it wrote); kill it after."""
    port = port or free_port()
    env = {**os.environ, **(env or {}), "BGREMOVER_DATA_DIR": str(root), "NO_COLOR": "1"}
    own_log = log is None
    if log is None:
        handle, name = tempfile.mkstemp(prefix="bgremover-serve-", suffix=".log")
        os.close(handle)
        log = Path(name)
    with open(log, "a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bgremover", "serve", "--port", str(port), *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    _OUTPUT[process.pid] = log
    url = f"http://127.0.0.1:{port}"

    def health() -> int:
        try:
            return httpx.get(f"{url}/api/health", timeout=1).status_code
        except httpx.TransportError:
            return 0  # not listening yet

    try:
        until(health, lambda status: status == 200, START_TIMEOUT_S, f"the server at {url}")
    except pytest.fail.Exception:
        process.kill()
        process.wait()
        pytest.fail(f"server did not start:\n{log.read_text()}")
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        del _OUTPUT[process.pid]
        if own_log:
            log.unlink()


def output_of(process: subprocess.Popen[str]) -> str:
    """What a server started by ``served`` has written so far (stdout and stderr)."""
    return _OUTPUT[process.pid].read_text()


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a log written with BGREMOVER_LOG_FORMAT=json, parsed (a line that is
    not one JSON object fails the test, naming it)."""
    parsed = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            pytest.fail(f"{log.name}: a line is not a JSON object: {line!r}")
        parsed.append(entry)
    return parsed


def unseen(photo: Path, note: str) -> bytes:
    """The JPEG's bytes with a comment segment naming ``note``: the same pixels in new bytes,
    so a server that ran the photo before has no mask of it to reuse and runs the model."""
    data = photo.read_bytes()
    comment = note.encode()
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream into {"id", "event", "data"} dicts (comments skipped)."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.removeprefix(" ")


def follow(url: str, until: Any, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Events from the server's stream until ``until(seen)`` is true."""
    seen: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(response):
            seen.append(event)
            if until(seen):
                break
    return seen


def job_ended(job_ids: set[str]) -> Any:
    """A ``follow`` condition: every job in ``job_ids`` reached an ended status."""

    def check(seen: list[dict[str, Any]]) -> bool:
        ended = {
            e["data"]["job"]["id"] for e in seen
            if e["event"] == "job.updated"
            and e["data"]["job"].get("status") in ("completed", "failed", "cancelled")
        }  # fmt: skip
        snapshot = [e for e in seen if e["event"] == "snapshot"]
        for event in snapshot:
            ended |= {
                j["id"] for j in event["data"].get("jobs", [])
                if j["status"] in ("completed", "failed", "cancelled")
            }  # fmt: skip
        return job_ids <= ended

    return check
