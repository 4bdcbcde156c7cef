"""The REST API through the real ASGI app, with a real job system (worker processes, model,
SQLite file) behind it."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bgremover import Settings
from bgremover.web import InsecureBinding, create_app

from .conftest import SUBJECT_POINTS
from .jobs_support import wait_for_job
from .serving import UI
from .waiting import Followed, until

TOKEN = "7EzzYFca0gAI2knVhqmcUBnGqi7QCZXG4c6z8w6bFJ8"

pytestmark = pytest.mark.model

MAX_BYTES = 300_000


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("web")
    settings = Settings(data_dir=root, max_upload_bytes=MAX_BYTES, max_concurrent_jobs=2)
    # As the web UI calls it: a local host name and the header that proves the same origin.
    with TestClient(create_app(settings), base_url="http://localhost", headers=UI) as test_client:
        yield test_client


def upload(client: TestClient, *files: tuple[str, bytes], **form: Any) -> Any:
    return client.post(
        "/api/batches",
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
        data=form,
    )


def wait_until_ended(client: TestClient, batch_id: str) -> dict[str, Any]:
    def batch() -> dict[str, Any]:
        return dict(client.get(f"/api/batches/{batch_id}").json())

    ended = until(
        Followed(client.app.state.system.bus, batch),
        lambda seen: seen["status"] not in ("pending", "processing"),
        what=f"batch {batch_id} ended",
    )
    return ended


def test_bad_files_get_their_status_or_a_failed_job_while_good_ones_complete(
    client: TestClient, photos: dict[str, Path], bad_inputs: dict[str, Path]
) -> None:
    big = io.BytesIO()
    Image.open(photos["astronaut.jpg"]).save(big, "PNG")
    assert big.tell() > MAX_BYTES
    response = upload(
        client,
        ("coffee.jpg", photos["coffee.jpg"].read_bytes()),
        ("../../etc/chelsea.jpg", photos["chelsea.jpg"].read_bytes()),
        ("empty.jpg", b""),
        ("letter.jpg", bad_inputs["not_an_image"].read_bytes()),
        ("huge.png", big.getvalue()),
        ("truncated.jpg", bad_inputs["corrupt_image_jpeg"].read_bytes()),
        ("bomb.png", bad_inputs["image_too_large"].read_bytes()),
        ("broken.heic", bad_inputs["corrupt_image_heif"].read_bytes()),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    rejected = {r["file_name"]: r["error"]["code"] for r in body["rejected"]}
    assert rejected == {
        "empty.jpg": "empty_file",
        "letter.jpg": "not_an_image",
        "huge.png": "file_too_large",
    }
    names = [job["file_name"] for job in body["jobs"]]
    assert names == ["coffee.jpg", "chelsea.jpg", "truncated.jpg", "bomb.png", "broken.heic"]
    batch = wait_until_ended(client, body["batch"]["id"])
    assert batch["counts"] == {
        "total": 5, "pending": 0, "processing": 0, "completed": 2, "failed": 3, "cancelled": 0,
    }  # fmt: skip
    jobs = {
        j["file_name"]: j for j in client.get(f"/api/jobs?batch_id={batch['id']}").json()["items"]
    }
    assert jobs["truncated.jpg"]["error"]["code"] == "corrupt_image"
    # A HEIC header is accepted (HEIC is decoded); what follows it is not a picture.
    assert jobs["broken.heic"]["error"]["code"] == "corrupt_image"
    assert "broken.heic" in jobs["broken.heic"]["error"]["message"]
    assert "110 megapixels" in jobs["bomb.png"]["error"]["message"]
    result = jobs["coffee.jpg"]["result"]
    assert (result["width"], result["height"], result["format"]) == (600, 400, "png")


def test_a_request_with_no_usable_file_is_refused_with_its_status(
    client: TestClient, bad_inputs: dict[str, Path]
) -> None:
    text = upload(client, ("notes.jpg", bad_inputs["not_an_image"].read_bytes()))
    assert text.status_code == 415
    assert text.json()["error"]["code"] == "not_an_image"
    jxl = upload(client, ("photo.jxl", bad_inputs["unsupported_format"].read_bytes()))
    assert jxl.status_code == 415 and "image/jxl" in jxl.json()["error"]["message"]
    big = upload(client, ("big.jpg", b"\xff\xd8\xff" + b"\0" * (MAX_BYTES + 1)))
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
    bad_option = upload(client, ("a.jpg", b"x"), background_color="nope")
    assert bad_option.status_code == 422 and "not a colour" in bad_option.json()["error"]["message"]


def test_downloads_results_in_other_forms_originals_and_zip(
    client: TestClient, photos: dict[str, Path]
) -> None:
    body = upload(
        client,
        ("coffee.jpg", photos["coffee.jpg"].read_bytes()),
        ("coffee.jpg", photos["coffee.jpg"].read_bytes()),
    ).json()
    wait_until_ended(client, body["batch"]["id"])
    job_id = body["jobs"][0]["id"]

    result = client.get(f"/api/jobs/{job_id}/result")
    assert result.headers["content-type"] == "image/png"
    assert 'filename="coffee-no-bg.png"' in result.headers["content-disposition"]
    image = Image.open(io.BytesIO(result.content))
    assert image.mode == "RGBA" and image.size == (600, 400)
    assert image.getpixel((5, 5))[3] == 0 and image.getpixel((287, 150))[3] == 255  # type: ignore[index]

    jpeg = client.get(f"/api/jobs/{job_id}/result", params={"format": "jpeg", "bg": "#00ff00"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    on_green = Image.open(io.BytesIO(jpeg.content))
    r, g, b = on_green.getpixel((5, 5))  # type: ignore[misc]
    assert g > 200 and r < 60 and b < 60
    mask = Image.open(io.BytesIO(client.get(f"/api/jobs/{job_id}/result?format=mask").content))
    assert mask.mode == "L"

    original = client.get(f"/api/jobs/{job_id}/original")
    assert original.content == photos["coffee.jpg"].read_bytes()
    assert original.headers["content-type"] == "image/jpeg"

    archive = client.get(f"/api/batches/{body['batch']['id']}/archive")
    assert archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(names) == ["coffee-no-bg (2).png", "coffee-no-bg.png"]


def test_derive_puts_a_result_on_a_background_through_the_queue(
    client: TestClient, photos: dict[str, Path]
) -> None:
    body = upload(client, ("coffee.jpg", photos["coffee.jpg"].read_bytes())).json()
    wait_until_ended(client, body["batch"]["id"])
    derived = client.post(
        f"/api/jobs/{body['jobs'][0]['id']}/derive", data={"background_color": "#ff0000"}
    )
    assert derived.status_code == 201, derived.text
    done = wait_for_job(client, derived.json()["id"], lambda j: j["status"] == "completed")
    image = Image.open(io.BytesIO(client.get(f"/api/jobs/{done['id']}/result").content))
    assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 0, 0)
    assert client.post("/api/jobs/nope/derive", data={}).status_code == 404


def test_derive_with_brightness_and_contrast_changes_the_subject_not_the_background(
    client: TestClient, photos: dict[str, Path]
) -> None:
    body = upload(client, ("coffee.jpg", photos["coffee.jpg"].read_bytes())).json()
    wait_until_ended(client, body["batch"]["id"])
    source = body["jobs"][0]["id"]
    form = {"background_color": "#ff0000", "brightness": "0.5", "contrast": "1.5"}
    derived = client.post(f"/api/jobs/{source}/derive", data=form)
    assert derived.status_code == 201, derived.text
    assert derived.json()["options"] == {
        "background_color": [255, 0, 0, 255], "brightness": 0.5, "contrast": 1.5,
    }  # fmt: skip
    done = wait_for_job(client, derived.json()["id"], lambda j: j["status"] == "completed")
    darker = Image.open(io.BytesIO(client.get(f"/api/jobs/{done['id']}/result").content))
    plain_bytes = client.get(f"/api/jobs/{source}/result", params={"bg": "#ff0000"}).content
    plain = Image.open(io.BytesIO(plain_bytes)).convert("RGB")
    assert darker.getpixel((5, 5)) == plain.getpixel((5, 5)) == (255, 0, 0)
    for point in SUBJECT_POINTS["coffee.jpg"]:
        assert sum(darker.getpixel(point)) < sum(plain.getpixel(point)), point  # type: ignore[arg-type]
    for bad in ({"brightness": "3"}, {"contrast": "-1"}):
        refused = client.post(f"/api/jobs/{source}/derive", data=bad)
        assert refused.status_code == 422, bad


def cancel_while_running(client: TestClient, photos: dict[str, Path]) -> str:
    """Upload a photo and cancel it while its inference runs. A loaded machine may let the
    job finish between seeing it run and the cancel arriving: then the server rightly
    answers 409 and another upload is tried."""
    for _ in range(5):
        body = upload(client, ("astronaut.jpg", photos["astronaut.jpg"].read_bytes())).json()
        job_id = str(body["jobs"][0]["id"])
        wait_for_job(client, job_id, lambda j: j["stage"] == "AI model" or j["status"] != "pending")
        cancelled = client.post(f"/api/jobs/{job_id}/cancel")
        if cancelled.status_code == 200:
            assert cancelled.json() == {"cancelled": [job_id]}
            return job_id
        assert cancelled.status_code == 409
        assert client.get(f"/api/jobs/{job_id}").json()["status"] == "completed"
    raise AssertionError("every job finished before its cancel arrived")


def test_cancel_a_running_job_then_retry_it(client: TestClient, photos: dict[str, Path]) -> None:
    job_id = cancel_while_running(client, photos)
    assert client.get(f"/api/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 409
    retried = client.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 201
    new = retried.json()["jobs"][0]
    assert new["attempt"] == 2 and new["retried_from"] == job_id
    done = wait_for_job(client, new["id"], lambda j: j["status"] not in ("pending", "processing"))
    assert done["status"] == "completed"
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409


def test_manual_batches_priorities_listing_sessions_and_stats(
    client: TestClient, photos: dict[str, Path]
) -> None:
    manual = client.post("/api/batches/manual", json={"name": "Catalogue"})
    assert manual.status_code == 201 and manual.json()["manual"] is True
    batch_id = manual.json()["id"]
    # Paused, so its jobs stay pending (the scheduler cannot take one first) until resumed.
    assert client.post(f"/api/batches/{batch_id}/pause").status_code == 200
    added = upload(
        client,
        ("chelsea.jpg", photos["chelsea.jpg"].read_bytes()),
        batch_id=batch_id,
        priority="3",
    ).json()
    assert added["batch"]["name"] == "Catalogue" and added["jobs"][0]["priority"] == 3
    job_id = added["jobs"][0]["id"]
    upload(
        client, ("coffee.jpg", photos["coffee.jpg"].read_bytes()), batch_id=batch_id, priority="5"
    )
    front = client.post(f"/api/jobs/{job_id}/priority", json={"front": True})
    assert front.status_code == 200, front.text
    assert front.json()["status"] == "pending" and front.json()["priority"] >= 5  # past coffee
    assert client.post(f"/api/jobs/{job_id}/priority", json={}).status_code == 422
    assert client.post(f"/api/batches/{batch_id}/cancel").status_code == 200
    ended = client.post(f"/api/jobs/{job_id}/priority", json={"front": True})
    assert ended.status_code == 409  # only a pending job can move

    listing = client.get("/api/jobs", params={"q": "chel", "limit": 1}).json()
    assert listing["limit"] == 1 and listing["total"] >= 1 and len(listing["items"]) == 1
    assert all("chel" in j["file_name"] for j in listing["items"])
    empty = client.post("/api/batches/manual", json={"name": "Still empty"}).json()
    pending = client.get("/api/batches", params={"status": "pending"}).json()["items"]
    assert empty["id"] in {b["id"] for b in pending}
    assert all(b["status"] == "pending" for b in pending)
    filtered = client.get("/api/jobs", params=[("status", "failed"), ("status", "cancelled")])
    assert all(j["status"] in ("failed", "cancelled") for j in filtered.json()["items"])
    assert client.get("/api/jobs", params={"status": "bogus"}).status_code == 422

    sessions = client.get("/api/sessions").json()
    assert sessions["total"] >= 1
    session = client.get(f"/api/sessions/{sessions['items'][0]['id']}").json()
    assert manual.json()["id"] in session["batch_ids"]
    stats = client.get("/api/stats").json()
    assert set(stats["jobs"]) == {"pending", "processing", "completed", "failed", "cancelled"}


def test_errors_are_json_with_the_right_status(client: TestClient) -> None:
    missing = client.get("/api/jobs/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "no job with id nope"}}
    assert client.get("/api/batches/nope").status_code == 404
    assert client.get("/api/sessions/nope").status_code == 404
    assert client.post("/api/jobs/nope/retry").status_code == 404
    assert client.get("/api/nothing-here").json()["error"]["code"] == "not_found"
    assert client.post("/api/import", json={"version": 99}).status_code == 422


def test_export_and_import_round_trip(client: TestClient) -> None:
    state = client.get("/api/export").json()
    assert state["version"] == 2 and state["jobs"]
    result = client.post("/api/import", json=state).json()
    assert result["jobs"] == 0 and result["skipped"] >= len(state["jobs"])


def test_a_paused_queue_and_batch_hold_uploads_until_resumed(
    client: TestClient, photos: dict[str, Path]
) -> None:
    paused = client.post("/api/queue/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] and paused.json()["paused_by"] == "local"
    assert client.get("/api/queue").json() == paused.json()
    created = upload(client, ("coffee.jpg", photos["coffee.jpg"].read_bytes())).json()
    job_id, batch_id = created["jobs"][0]["id"], created["batch"]["id"]
    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "pending" and job["estimated_time_remaining"] is None
    assert job["eta_reason"] == "paused"
    assert client.get(f"/api/batches/{batch_id}").json()["eta_reason"] == "paused"

    assert client.post(f"/api/batches/{batch_id}/pause").json()["paused"]
    resumed = client.post("/api/queue/resume").json()
    assert not resumed["paused"] and resumed["paused_batches"] == [batch_id]
    assert client.get(f"/api/jobs/{job_id}").json()["eta_reason"] == "paused"
    assert not client.post(f"/api/batches/{batch_id}/resume").json()["paused"]
    wait_for_job(client, job_id, lambda j: j["status"] == "completed")
    assert client.post("/api/batches/nope/pause").status_code == 404
    schema = client.get("/openapi.json").json()
    answer = schema["paths"]["/api/queue"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/Queue"}


def test_a_server_off_loopback_needs_a_good_token(tmp_path: Path) -> None:
    with pytest.raises(InsecureBinding, match="bgremover token"):
        create_app(Settings(data_dir=tmp_path, host="0.0.0.0"))
    with pytest.raises(InsecureBinding, match="bgremover token"):
        create_app(Settings(data_dir=tmp_path, host="0.0.0.0", token="s3cret"))
    app = create_app(
        Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN, max_concurrent_jobs=1)
    )
    with TestClient(app, base_url="http://localhost", headers=UI) as guarded:
        denied = guarded.get("/api/stats")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        assert (
            guarded.get("/api/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        # A token in the URL only where a header is impossible (streams, images, downloads).
        assert guarded.get(f"/api/stats?token={TOKEN}").status_code == 401
        assert guarded.get(f"/api/jobs/nope/result?token={TOKEN}").status_code == 404
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert guarded.get("/api/stats", headers=bearer).status_code == 200
        paused = guarded.post("/api/queue/pause", headers=bearer).json()
        assert paused["paused_by"] == "token"  # who paused it, as the request proved itself
        assert (
            guarded.get("/docs").status_code == 200
        )  # the page itself; its API calls need the token
