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
import numpy as np
import pytest
from PIL import Image

from .serving import UI, follow, output_of, served, sse_events, unseen

pytestmark = pytest.mark.model

STAGES = ["Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with served(data_dir) as running:
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
    photo = unseen(photos["astronaut.jpg"], "cancel and retry")  # so the model runs
    created = httpx.post(
        f"{url}/api/batches", files=[("files", ("astronaut.jpg", photo))], headers=UI
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


def upload_and_wait(url: str, files: list[tuple[str, bytes]], **form: str) -> dict[str, Any]:
    """Upload a batch while already following the stream, and return it once it has ended."""
    with httpx.stream("GET", f"{url}/api/events", timeout=120) as response:
        events = sse_events(response)
        next(events)  # the snapshot: from here on nothing about the new batch is missed
        body = httpx.post(
            f"{url}/api/batches",
            files=[("files", f) for f in files],
            data=form,
            headers=UI,
            timeout=60,
        )
        assert body.status_code == 201, body.text
        batch_id = body.json()["batch"]["id"]
        for event in events:
            batch = event["data"].get("batch", {})
            ours = event["event"] == "batch.updated" and batch.get("id") == batch_id
            if ours and batch["status"] not in ("pending", "processing"):
                return dict(body.json())
    raise AssertionError("the event stream ended before the batch did")


def test_heic_and_avif_uploads_give_the_same_mask_as_the_jpeg(
    server: tuple[str, subprocess.Popen[str]],
    photos: dict[str, Path],
    phone_photos: dict[str, Path],
) -> None:
    url, _ = server
    sources = [photos["chelsea.jpg"], *phone_photos.values()]
    created = upload_and_wait(url, [(p.name, p.read_bytes()) for p in sources], format="mask")
    masks = {}
    for job in created["jobs"]:
        done = httpx.get(f"{url}/api/jobs/{job['id']}").json()
        assert done["status"] == "completed", done
        result = httpx.get(f"{url}/api/jobs/{job['id']}/result")
        masks[job["file_name"]] = np.asarray(Image.open(io.BytesIO(result.content))) >= 128
    assert {j["media_type"] for j in created["jobs"]} == {"image/jpeg", "image/heic", "image/avif"}
    for job in created["jobs"]:  # browsers cannot show HEIC; its thumbnail they can
        preview = httpx.get(f"{url}/api/jobs/{job['id']}/thumbnail", params={"size": 128})
        assert Image.open(io.BytesIO(preview.content)).size == (128, 85), job["file_name"]
    jpeg = masks["chelsea.jpg"]
    for name in phone_photos:
        iou = (masks[name] & jpeg).sum() / (masks[name] | jpeg).sum()
        assert iou >= 0.97, f"{name}: IoU {iou:.3f} against the JPEG"


def test_thumbnails_are_small_webp_and_served_from_the_cache(
    server: tuple[str, subprocess.Popen[str]],
    data_dir: Path,
    photos: dict[str, Path],
    bad_inputs: dict[str, Path],
) -> None:
    url, _ = server
    big = Image.open(photos["coffee.jpg"]).resize((2400, 1600), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=92)
    photo = buffer.getvalue()
    created = upload_and_wait(
        url, [("big.jpg", photo), ("broken.png", bad_inputs["corrupt_image_png"].read_bytes())]
    )
    job_id, broken_id = (job["id"] for job in created["jobs"])
    thumbnail_url = f"{url}/api/jobs/{job_id}/thumbnail"
    before = set((data_dir / "thumbnails").rglob("*.webp"))

    first = httpx.get(thumbnail_url, params={"size": 256})
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    original = Image.open(io.BytesIO(first.content))
    assert (original.format, original.size) == ("WEBP", (256, 171))
    assert len(first.content) < len(photo) / 20, f"{len(first.content)} bytes is not small"
    result = Image.open(io.BytesIO(httpx.get(thumbnail_url, params={"of": "result"}).content))
    assert result.size == (256, 171) and result.mode == "RGBA"
    assert result.getchannel("A").getextrema() == (0, 255)  # the cut-out, not the photo

    # The second request is answered from the cache file, not rendered again: it returns
    # whatever that file holds.
    cached = set((data_dir / "thumbnails").rglob("*.webp")) - before
    assert sorted(p.name.endswith(".png.256.webp") for p in cached) == [False, True], cached
    cached_original = next(p for p in cached if not p.name.endswith(".png.256.webp"))
    marker = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(marker, "WEBP")
    cached_original.write_bytes(marker.getvalue())
    assert httpx.get(thumbnail_url, params={"size": 256}).content == marker.getvalue()

    for size in (0, 4096):
        refused = httpx.get(thumbnail_url, params={"size": size})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    not_ready = httpx.get(f"{url}/api/jobs/{broken_id}/thumbnail", params={"of": "result"})
    assert not_ready.status_code == 409
    unreadable = httpx.get(f"{url}/api/jobs/{broken_id}/thumbnail")
    assert unreadable.status_code == 422 and "broken.png" in unreadable.json()["error"]["message"]

    assert httpx.delete(f"{url}/api/jobs/{job_id}", headers=UI).status_code == 204
    assert not any(p.exists() for p in cached), "thumbnails outlived their job"


def test_ctrl_c_shuts_down_gracefully(server: tuple[str, subprocess.Popen[str]]) -> None:
    _, process = server
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    output = output_of(process)
    assert "BG Remover: http://127.0.0.1:" in output
    assert "Application shutdown complete" in output
