"""A data dir on a small disk that fills up mid-batch: a size-limited tmpfs (mounting needs
root), a real `bgremover serve` on it, and what happened to the batch. Shared by the test and
``bench/full_disk_bench.py``."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bgremover.engine.stages import Stage

from .serving import UI, served, sse_events, unseen

WAIT_S = 120.0


class CannotMount(RuntimeError):
    """No tmpfs here (not root, no mount(8), a container without the capability)."""


@contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted on ``where`` for the block; always unmounted."""
    if os.geteuid() != 0:
        raise CannotMount("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise CannotMount(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=True)  # still busy: detach it


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until its disk has no byte left; returns the file."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            block = bytes(chunk)
            with contextlib.suppress(OSError):
                while True:
                    f.write(block)
    return filler


RECONNECT_S = 0.5
"""How long the event log waits before it opens an ended stream again."""


class EventLog:
    """Every event of the server's stream, read on a thread; ``wait`` for a condition."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self._moved = 0
        """Job events and snapshots so far: what ``wait`` counts as progress."""
        self._url = url
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._opened = threading.Event()
        self._reopened = threading.Event()

    def start(self) -> EventLog:
        self._thread.start()
        assert self._opened.wait(WAIT_S), "the event stream did not open"
        return self

    def _read(self) -> None:
        """As a browser's EventSource does: a stream that ends while the server still answers
        (an outage may close it) is opened again after the last event it gave
        (``Last-Event-ID``), so no event is missed; the log ends when the server is gone."""
        last: str | None = None
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            try:
                with httpx.stream(
                    "GET", f"{self._url}/api/events", headers=headers, timeout=None
                ) as response:
                    self._opened.set()
                    for event in sse_events(response):
                        last = event.get("id") or last
                        with self.changed:
                            self.events.append({**event, "at": time.monotonic()})
                            if event["event"].startswith("job.") or event["event"] == "snapshot":
                                self._moved += 1
                            self.changed.notify_all()
            except httpx.ConnectError:
                return  # the server stopped: the log ends
            except httpx.TransportError:
                pass  # cut off mid-stream: open it again
            self._reopened.wait(RECONNECT_S)  # EventSource's retry pause; nothing sets it

    def wait(self, test: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
        """Until ``test`` holds; fails once no job has moved (no job event, no snapshot) for
        ``WAIT_S``: a loaded machine makes runs slow, a stuck server makes them silent."""
        with self.changed:
            while not test(self.events):
                moved = self._moved

                def news(moved: int = moved) -> bool:
                    return test(self.events) or self._moved > moved

                if not self.changed.wait_for(news, WAIT_S):
                    raise AssertionError(f"no {what}: no job moved for {WAIT_S:.0f} s")

    def _jobs(self) -> Iterator[tuple[dict[str, Any], float]]:
        """Each job state the page was told, in order, with when it arrived: by event, or
        in a snapshot (a resync: a change whose event could not be published, such as a run
        that ended as the database's disk filled, reaches the page only that way)."""
        for event in self.events:
            if event["event"] == "job.updated":
                yield event["data"]["job"], event["at"]
            elif event["event"] == "snapshot":
                for job in event["data"]["jobs"]:
                    yield job, event["at"]

    def ended(self) -> dict[str, tuple[str, float]]:
        """Job id → (its last end status, when it arrived)."""
        with self.changed:
            last = {job["id"]: (job, at) for job, at in self._jobs()}
            return {
                job_id: (job["status"], at)
                for job_id, (job, at) in last.items()
                if job["status"] in ("completed", "failed", "cancelled")
            }

    def inferring(self) -> set[str]:
        """Jobs whose last state says a run of theirs is in its AI model stage (seconds with
        the slow tiny model), so it has its result still to store."""
        with self.changed:
            last = {job["id"]: job for job, _ in self._jobs()}
            return {
                job_id
                for job_id, job in last.items()
                if job["status"] == "processing" and job.get("stage") == Stage.INFERENCE
            }

    def storage(self) -> list[dict[str, Any]]:
        """The storage states the page was told, in order: by event, or in a snapshot (a
        resync, when the event could not be published)."""
        with self.changed:
            said = []
            for event in self.events:
                data = event["data"].get("health", {}) if event["event"] == "snapshot" else {}
                if event["event"] == "health.updated":
                    data = event["data"]
                if "storage" in data and (not said or said[-1] != data["storage"]):
                    said.append(data["storage"])
            return said


@dataclass
class Outcome:
    """What a batch went through while its data dir's disk was full."""

    statuses: dict[str, str]
    errors: dict[str, Any]
    runs: int
    """Runs started, attempts included (a run the full disk cut short counts again)."""
    health_while_full: dict[str, Any]
    announced: list[dict[str, Any]]
    freed_to_first_completion_s: float | None
    full_s: float
    integrity: str
    reads_while_full: list[int] = field(default_factory=list)
    upload_while_full: tuple[int, dict[str, Any]] = (0, {})
    """An upload while the disk is full: its status and body."""


def logged_ends(server_log: Path, job_ids: set[str]) -> bool:
    """Whether the server's log says each run of ``job_ids`` that started has ended (the
    worker's own lines: while the database's disk is full no event can say it). Counted over
    the whole log, so a run that ended before its last event reached the test counts too."""
    lines = server_log.read_text(errors="replace").splitlines()
    return all(
        sum(f"job_id={job_id}" in line for line in lines if "run ended" in line)
        >= sum(f"job_id={job_id}" in line for line in lines if "run started" in line)
        for job_id in job_ids
    )


def run_with_full_disk(
    url: str,
    data_dir: Path,
    disk: Path,
    images: list[Path],
    server_log: Path,
    *,
    while_full: Callable[[], object] = lambda: None,
) -> Outcome:
    """Upload ``images`` as one batch; once the first result is stored, fill ``disk`` (the
    results store's, perhaps ``data_dir``'s too) while a run is in its AI model stage; keep it
    full until the server has said so, that run has met the full store (``server_log``, the
    server's output, says it ended) and ``while_full()`` returned (the bench holds it for its
    outage's length), reading the API meanwhile; free it; wait until every job ended."""
    log = EventLog(url).start()
    # Each in new bytes: a repeated photo would reuse the first run's mask and finish at once.
    files = [
        ("files", (image.name, unseen(image, f"copy {index}"), "image/jpeg"))
        for index, image in enumerate(images)
    ]
    created = httpx.post(f"{url}/api/batches", files=files, headers=UI, timeout=WAIT_S)
    assert created.status_code == 201, created.text
    ids = {job["id"] for job in created.json()["jobs"]}
    log.wait(lambda _: bool(log.ended().keys() & ids), "first job ended")
    # A run in its AI model stage when the disk fills meets the full store as it saves: a run
    # already saving could store its result first, and with every run ended a database on
    # the same disk could not even start the next one, so no run would be cut short.
    log.wait(lambda _: bool(log.inferring() & ids), "a run in its AI model stage")
    under_way = log.inferring() & ids
    filler = fill(disk)
    full_at = time.monotonic()
    log.wait(
        lambda _: any(s["ok"] is False for s in log.storage()) or ids <= log.ended().keys(),
        "storage outage announced (nor the batch ended)",
    )
    reads = [
        httpx.get(f"{url}{path}", timeout=WAIT_S).status_code
        for path in ("/api/jobs", "/api/stats", f"/api/batches/{created.json()['batch']['id']}")
    ]
    health = httpx.get(f"{url}/api/health", timeout=WAIT_S).json()
    new = io.BytesIO()  # an image the store has not got (an original already there is reused)
    Image.effect_noise((64, 64), 40).save(new, "PNG")
    new_file = [("files", ("new.png", new.getvalue(), "image/png"))]
    refused = httpx.post(f"{url}/api/batches", files=new_file, headers=UI, timeout=WAIT_S)
    checked = threading.Event()
    deadline = time.monotonic() + WAIT_S
    while not logged_ends(server_log, under_way):
        assert time.monotonic() < deadline, "the run under way did not end on the full disk"
        checked.wait(RECONNECT_S)  # a log has no event to wait on: read it again shortly
    while_full()
    filler.unlink()
    freed_at = time.monotonic()
    log.wait(lambda _: ids <= log.ended().keys(), "every job ended")
    if any(state["ok"] is False for state in log.storage()):
        log.wait(lambda _: log.storage()[-1]["ok"], "storage recovery")
    ends = log.ended()
    after = [at for job_id, (status, at) in ends.items() if status == "completed" and at > freed_at]
    jobs = [httpx.get(f"{url}/api/jobs/{job_id}", timeout=WAIT_S).json() for job_id in ids]
    with contextlib.closing(sqlite3.connect(data_dir / "jobs.sqlite3")) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    return Outcome(
        statuses={job["id"]: job["status"] for job in jobs},
        errors={job["id"]: job["error"] for job in jobs if job["error"]},
        runs=sum(job["attempt"] for job in jobs),
        health_while_full=health,
        announced=log.storage(),
        freed_to_first_completion_s=min(after) - freed_at if after else None,
        full_s=freed_at - full_at,
        integrity=str(integrity),
        reads_while_full=reads,
        upload_while_full=(refused.status_code, refused.json()),
    )


ON_DISK = ("results storage", "whole data dir")
"""What lies on the small disk: the results store alone (the database elsewhere), or the
whole data dir with the SQLite database, which then cannot write either."""


def serve_and_fill(
    disk: Path,
    root: Path,
    model: Path,
    images: list[Path],
    on_disk: str,
    *,
    while_full: Callable[[], object] = lambda: None,
) -> Outcome:
    """``run_with_full_disk`` against a `bgremover serve` (2 local workers, ``model``) whose
    ``on_disk`` part (one of ``ON_DISK``) is on ``disk``; the rest goes under ``root``."""
    env = {"BGREMOVER_MODEL_PATH": str(model), "BGREMOVER_MAX_CONCURRENT_JOBS": "2"}
    data_dir = disk
    if on_disk == "results storage":
        data_dir = root / "data"
        env["BGREMOVER_STORAGE_URL"] = disk.as_uri()
    server_log = root / "server.log"
    with served(data_dir, env=env, log=server_log) as (url, _):
        return run_with_full_disk(url, data_dir, disk, images, server_log, while_full=while_full)
