"""Pause and resume across two real web processes on one PostgreSQL database, each with its
own worker pool and an in-process event bus (they share nothing but the database): a pause
asked of one (here by `bgremover queue pause --server`) stops the other's claims at once and
shows on its event stream; a resume starts them again."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from .cluster_support import upload_pngs, web_processes
from .jobs_support import postgres_database
from .serving import UI
from .test_cli import run_cli
from .waiting import until


def queue_said(paused: bool) -> Any:
    def check(seen: list[dict[str, Any]]) -> bool:
        return any(
            e["event"] == "queue.updated" and e["data"]["queue"]["paused"] is paused for e in seen
        )

    return check


def completed(url: str, batch_id: str) -> Any:
    """The batch's jobs once all completed (each process's stream has only its own runs)."""

    def check() -> list[dict[str, Any]] | None:
        page = httpx.get(f"{url}/api/jobs", params={"batch_id": batch_id}, timeout=10).json()
        done = all(job["status"] == "completed" for job in page["items"])
        return page["items"] if done else None

    return check


def test_a_pause_on_one_web_process_holds_the_others_claims(
    tiny_model: Path, tmp_path: Path
) -> None:
    with postgres_database() as database:
        env = {
            "BGREMOVER_DATABASE_URL": database,
            "BGREMOVER_STORAGE_URL": (tmp_path / "storage").as_uri(),
            "BGREMOVER_MODEL_PATH": str(tiny_model),
        }
        with web_processes(tmp_path, env) as (a, b):
            paused = run_cli("queue", "pause", "--server", a.url, env=env)
            assert paused.returncode == 0, paused.stderr
            assert "Queue paused by cli" in paused.stdout
            b.wait_for("the pause on A", queue_said(True))

            created = upload_pngs(b.url, tmp_path / "photos", 3)
            assert created["batch"]["eta_reason"] == "paused"
            ids = {job["id"] for job in created["jobs"]}
            state = httpx.get(f"{b.url}/api/queue", timeout=10).json()
            assert state["paused"] and state["paused_by"] == "cli"

            resumed_at = time.time()
            resumed = httpx.post(f"{a.url}/api/queue/resume", headers=UI, timeout=10)
            assert resumed.status_code == 200 and not resumed.json()["paused"]
            b.wait_for("the resume on A", queue_said(False))
            jobs = until(completed(a.url, created["batch"]["id"]), what="the held jobs completed")
            assert {job["id"] for job in jobs} == ids
            starts = [datetime.fromisoformat(job["start_time"]).timestamp() for job in jobs]
            assert min(starts) >= resumed_at, "a job started while the queue was paused"
