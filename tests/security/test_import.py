"""POST /api/import against a served process: it never carries a path, never stores a row
that breaks the API, and answers 422 (never 500) for anything that is not a queue export."""

from __future__ import annotations

import io
import shutil
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ..serving import follow, job_ended
from ..waiting import until
from .conftest import Server

pytestmark = pytest.mark.model

# Recent enough that the retention cleanup (every second here) leaves the rows alone.
NOW = datetime.now(UTC).isoformat()
OLD = "2001-01-01T00:00:00+00:00"


def new_id() -> str:
    return uuid.uuid4().hex


def queue(server: Server, *jobs: dict[str, Any], **batch: Any) -> dict[str, Any]:
    """An export with one new session and batch holding ``jobs`` (each a partial row)."""
    session_id, batch_id = new_id(), new_id()
    rows = []
    for job in jobs:
        row = {
            "id": new_id(), "batch_id": batch_id, "file_name": "photo.jpg", "file_size": 10,
            "content_hash": server.good_hash, "status": "failed", "created_at": NOW,
            "queued_at": NOW, "end_time": NOW,
        }  # fmt: skip
        row.update(job)
        rows.append(row)
    return {
        "version": 2,
        "sessions": [
            {"id": session_id, "name": "Imported", "started_at": NOW, "last_activity_at": NOW}
        ],
        "batches": [
            {
                "id": batch_id,
                "session_id": session_id,
                "name": "Imported",
                "manual": False,
                "status": "failed",
                "created_at": NOW,
                **batch,
            }
        ],
        "jobs": rows,
    }


def refused(server: Server, state: Any) -> None:
    """Refused with 422, in this export format and in the first one (version 1, which the
    probe's payloads used)."""
    bodies = [state]
    if isinstance(state, dict) and state.get("version") == 2:
        bodies.append({**state, "version": 1})
    for body in bodies:
        response = server.post("/api/import", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] in ("invalid_import", "invalid_request")


@pytest.mark.parametrize(
    "content_hash",
    ["/etc/passwd", "../../../../etc/passwd", "ab/../../../../etc/passwd", "A" * 64, "0" * 63],
)
def test_a_content_hash_that_is_a_path_is_refused(
    server: Server, secret: Path, content_hash: str
) -> None:
    for status in ("completed", "pending"):
        state = queue(server, {"content_hash": str(secret) if content_hash == "/etc/passwd"
                               else content_hash, "status": status})  # fmt: skip
        refused(server, state)
        assert server.get(f"/api/jobs/{state['jobs'][0]['id']}").status_code == 404
    assert secret.exists()
    server.assert_healthy()


@pytest.mark.parametrize(
    "field",
    [
        {"result_path": "SECRET"},
        {"media_type": "text/html"},
        {"worker": "pid 4242"},
        {"options": {"background_image": "SECRET"}},
        {"options": {"background_image": "../../SECRET"}},
    ],
    ids=["result_path", "media_type", "worker", "background_image", "relative_background"],
)
def test_no_path_or_media_type_is_taken_from_the_json(
    server: Server, secret: Path, field: dict[str, Any]
) -> None:
    key, value = next(iter(field.items()))
    if isinstance(value, dict):
        value = {k: v.replace("SECRET", str(secret)) for k, v in value.items()}
    elif isinstance(value, str):
        value = value.replace("SECRET", str(secret))
    state = queue(server, {key: value, "status": "completed", "result_format": "png"})
    refused(server, state)
    job_id = state["jobs"][0]["id"]
    assert server.get(f"/api/jobs/{job_id}/result").status_code == 404
    assert server.get(f"/api/jobs/{job_id}/original").status_code == 404
    assert server.delete(f"/api/jobs/{job_id}").status_code == 404
    assert secret.exists()
    server.assert_healthy()


def test_the_attack_of_the_report_leaves_files_outside_the_store_alone(
    server: Server, secret: Path, tmp_path: Path
) -> None:
    """The probe's payload: a completed row pointing at an outside file, an old end time for
    the retention cleanup, a pending row with an outside background image."""
    other = tmp_path / "other.txt"
    other.write_text("also private")
    state = queue(
        server,
        {"content_hash": str(other), "status": "completed", "result_path": str(secret),
         "media_type": "text/html", "result_format": "png", "end_time": OLD},
        {"status": "pending", "options": {"background_image": str(secret)}, "end_time": None},
    )  # fmt: skip
    refused(server, state)
    for job in state["jobs"]:
        assert server.get(f"/api/jobs/{job['id']}/result").status_code == 404
    assert secret.exists() and other.exists()
    server.assert_healthy()


def test_rows_that_would_break_the_api_are_refused(server: Server) -> None:
    xss = "<img src=x onerror=alert(1)>"
    bad_jobs: list[dict[str, Any]] = [
        {"status": xss},
        {"status": "done"},
        {"file_size": "big"},
        {"file_size": -1},
        {"progress": "half"},
        {"progress": 1e9},
        {"created_at": "yesterday"},
        {"created_at": "2026-01-02T03:04:05"},  # no time zone
        {"created_at": 1767322800},  # a number, which the schema does not allow
        {"created_at": "4"},  # the same as text
        {"batch_id": new_id()},  # unknown batch
        {"id": "not-an-id"},
        {"id": "../../etc"},
        {"retried_from": "x" * 5000},
        {"file_name": "a" * 100_000},
        {"options": {"format": "exe"}},
        {"options": {"no_such_option": True}},
        {"stage": xss},
        {"error_code": xss},
        {"result_format": "html"},
        {"unknown_column": 1},
    ]
    for change in bad_jobs:
        refused(server, queue(server, change))
    refused(server, queue(server, {}, status=xss))
    refused(server, queue(server, {}, session_id=new_id()))
    state = queue(server, {})
    state["jobs"].append(dict(state["jobs"][0]))  # the same id twice
    refused(server, state)
    refused(server, {"version": 2, "sessions": [], "batches": [], "jobs": [], "exported_at": -1})
    for body in ([], "x", {"version": 2}, {"version": 99, "jobs": []}, {"version": 2, "jobs": {}}):
        refused(server, body)
    text = server.post(
        "/api/import", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert text.status_code == 422
    server.assert_healthy()


def test_imported_names_reach_archives_headers_and_the_ui_sanitised(server: Server) -> None:
    """Rows restored with their files (the data dir copied along) keep working; their names
    go through the upload sanitiser."""
    good = server.good_job
    names = ["../../../.", "etc/cron", "evil\r\nSet-Cookie: a=b.jpg", "..\\..\\win.ini"]
    jobs = []
    for name in names:
        job_id = new_id()
        target = server.root / "results" / job_id[:2] / f"{job_id}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.root / "results" / good["id"][:2] / f"{good['id']}.png", target)
        jobs.append({
            "id": job_id, "file_name": name, "status": "completed", "result_format": "png",
            "result_width": 600, "result_height": 400, "result_bytes": len(server.good_result),
        })  # fmt: skip
    state = queue(server, *jobs, name="../../evil\r\nX-Injected: 1", status="completed")
    response = server.post("/api/import", json=state)
    assert response.status_code == 200, response.text
    assert response.json()["jobs"] == len(names)
    batch_id = state["batches"][0]["id"]
    batch = server.get(f"/api/batches/{batch_id}").json()
    assert "\r" not in batch["name"] and "\n" not in batch["name"]
    shown = sorted(server.get(f"/api/jobs/{j['id']}").json()["file_name"] for j in jobs)
    assert shown == sorted(["image", "cron", "evilSet-Cookie: a=b.jpg", "win.ini"])
    archive = server.get(f"/api/batches/{batch_id}/archive")
    assert archive.status_code == 200
    members = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(members) == sorted(
        ["image-no-bg.png", "cron-no-bg.png", "evilSet-Cookie. a=b-no-bg.png", "win-no-bg.png"]
    )
    assert not any(m.startswith(("/", ".")) or "/" in m or "\\" in m for m in members)
    for job in jobs:
        result = server.get(f"/api/jobs/{job['id']}/result")
        assert result.status_code == 200 and result.content == server.good_result
        assert "\r" not in result.headers["content-disposition"]
    assert "set-cookie" not in archive.headers and "x-injected" not in archive.headers
    server.assert_healthy()


def test_only_rows_whose_files_are_in_the_store_are_taken_as_they_were(server: Server) -> None:
    missing_original = {"status": "pending", "content_hash": "f" * 64, "end_time": None}
    missing_result = {"status": "completed", "result_format": "png", "result_width": 1,
                      "result_height": 1, "result_bytes": 1}  # fmt: skip
    runnable = {"status": "pending", "end_time": None, "file_name": "again.jpg"}
    state = queue(server, missing_original, missing_result, runnable, status="pending")
    response = server.post("/api/import", json=state)
    assert response.status_code == 200, response.text
    ids = [j["id"] for j in state["jobs"]]
    follow(server.url, job_ended({ids[2]}))
    first, second, third = (server.get(f"/api/jobs/{i}").json() for i in ids)
    assert first["status"] == "failed" and first["error"]["code"] == "original_missing"
    assert second["status"] == "failed" and second["error"]["code"] == "result_missing"
    assert third["status"] == "completed", third
    assert server.get(f"/api/jobs/{ids[2]}/result").status_code == 200
    original = server.get(f"/api/jobs/{ids[2]}/original")
    assert original.headers["content-type"] == "image/jpeg"
    server.assert_healthy()


def test_retention_cleanup_of_imported_rows_deletes_nothing_outside_the_store(
    server: Server, secret: Path
) -> None:
    state = queue(server, {"status": "failed", "end_time": OLD}, created_at=OLD)
    assert server.post("/api/import", json=state).status_code == 200
    job_id = state["jobs"][0]["id"]
    until(lambda: server.get(f"/api/jobs/{job_id}").status_code == 404, what="retention cleanup")
    assert secret.exists()
    server.assert_healthy()
    assert server.get(f"/api/jobs/{server.good_job['id']}/original").status_code == 200


def test_export_carries_no_paths_or_worker_ids(server: Server) -> None:
    text = server.get("/api/export").text
    assert str(server.root) not in text
    assert '"worker"' not in text and '"result_path"' not in text and "pid" not in text.lower()
    state = server.get("/api/export").json()
    again = server.post("/api/import", json=state)
    assert again.status_code == 200, again.text
    assert again.json()["jobs"] == 0
