"""Against a real `bgremover serve` process on a free loopback port: upload, follow the SSE
stream to the end, download, reconnect with Last-Event-ID, shut down gracefully."""

from __future__ import annotations

import io
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from .serving import UI, follow, served

pytestmark = pytest.mark.model

STAGES = ["Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with served(tmp_path_factory.mktemp("served")) as running:
        yield running


def test_upload_follow_the_stream_to_the_end_and_download(
    server: tuple[str, subprocess.Popen[str]], photos: dict[str, Path]
) -> None:
    url, _ = server
    files = [("files", (name, path.read_bytes())) for name, path in photos.items()]
    created = httpx.post(f"{url}/api/batches", files=files, headers=UI, timeout=60).json()
    ids = {job["id"] for job in created["jobs"]}

    def all_done(seen: list[dict[str, Any]]) -> bool:
        done = {
            e["data"]["job"]["id"] for e in seen
            if e["event"] == "job.updated" and e["data"]["job"]["status"] == "completed"
        }  # fmt: skip
        return ids <= done

    events = follow(url, all_done)
    assert events[0]["event"] == "snapshot"
    seqs = [int(e["id"]) for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "events out of seq order"
    progress: dict[str, float] = {}
    stages: dict[str, list[str]] = {}
    for event in events[1:]:
        data = event["data"].get("job", event["data"])
        if event["event"] not in ("job.updated", "job.progress") or data["id"] not in ids:
            continue
        if data.get("status") == "pending":
            continue
        assert data["progress"] >= progress.get(data["id"], 0.0), "progress went backwards"
        progress[data["id"]] = data["progress"]
        if data.get("stage"):
            stages.setdefault(data["id"], []).append(data["stage"])
    for job_id in ids:
        assert list(dict.fromkeys(stages[job_id])) == STAGES
        assert progress[job_id] == 100.0

    archive = httpx.get(f"{url}/api/batches/{created['batch']['id']}/archive", timeout=60)
    names = sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
    assert names == ["astronaut-no-bg.png", "chelsea-no-bg.png", "coffee-no-bg.png"]
    job = created["jobs"][0]
    png = Image.open(io.BytesIO(httpx.get(f"{url}/api/jobs/{job['id']}/result").content))
    assert png.mode == "RGBA" and png.getchannel("A").getextrema() == (0, 255)


def test_reconnect_with_last_event_id_replays_what_was_missed(
    server: tuple[str, subprocess.Popen[str]], photos: dict[str, Path]
) -> None:
    url, _ = server
    first = follow(url, lambda seen: len(seen) >= 1)
    last_id = first[-1]["id"]
    created = httpx.post(
        f"{url}/api/batches",
        files=[("files", ("coffee.jpg", photos["coffee.jpg"].read_bytes()))],
        headers=UI,
    ).json()
    job_id = created["jobs"][0]["id"]
    resumed = follow(
        url,
        lambda seen: any(
            e["event"] == "job.updated" and e["data"]["job"]["id"] == job_id
            and e["data"]["job"]["status"] == "completed" for e in seen
        ),
        headers={"Last-Event-ID": last_id},
    )  # fmt: skip
    assert resumed[0]["event"] != "snapshot", "a resumable client got a snapshot"
    assert int(resumed[0]["id"]) == int(last_id) + 1, "an event was skipped on resume"
    too_old = follow(url, lambda seen: len(seen) >= 1, headers={"Last-Event-ID": "0"})
    assert too_old[0]["event"] in ("snapshot", "job.updated")


def test_cancel_and_retry_over_http(
    server: tuple[str, subprocess.Popen[str]], photos: dict[str, Path]
) -> None:
    url, _ = server
    created = httpx.post(
        f"{url}/api/batches",
        files=[("files", ("astronaut.jpg", photos["astronaut.jpg"].read_bytes()))],
        headers=UI,
    ).json()
    job_id = created["jobs"][0]["id"]
    follow(
        url,
        lambda seen: any(
            e["event"] == "job.progress" and e["data"]["id"] == job_id
            and e["data"]["stage"] == "AI model" for e in seen
        ),
    )  # fmt: skip
    assert httpx.post(f"{url}/api/jobs/{job_id}/cancel", headers=UI).status_code == 200
    retried = httpx.post(f"{url}/api/jobs/{job_id}/retry", headers=UI).json()["jobs"][0]
    new_id = retried["id"]
    follow(
        url,
        lambda seen: any(
            e["event"] == "job.updated" and e["data"]["job"]["id"] == new_id
            and e["data"]["job"]["status"] == "completed" for e in seen
        ),
    )  # fmt: skip
    assert httpx.get(f"{url}/api/jobs/{job_id}").json()["status"] == "cancelled"


def test_ctrl_c_shuts_down_gracefully(server: tuple[str, subprocess.Popen[str]]) -> None:
    _, process = server
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    output = process.stdout.read() if process.stdout else ""
    assert "BG Remover: http://127.0.0.1:" in output
    assert "Application shutdown complete" in output
