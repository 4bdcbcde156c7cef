"""DNS rebinding and cross-site requests against a served process on 127.0.0.1: a page on
another site can neither read the API (Host check) nor change anything (same-origin proof)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bgremover import Settings
from bgremover.system import JobSystem
from bgremover.web import create_app

from .conftest import Server

TOKEN = "vY2a2AFEGrfW6y6nPB7IT_U_zNzXVEoLc0jwqufBrMM"

pytestmark = pytest.mark.model


def test_a_foreign_host_name_gets_nothing(server: Server, photos: dict[str, Path]) -> None:
    port = server.url.rsplit(":", 1)[1]
    evil = {"Host": f"evil.example:{port}"}
    for path in ("/", "/api/export", "/api/jobs", "/api/events", "/static/js/api.js"):
        response = server.get(path, headers=evil)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden_host"
    batches = server.get("/api/batches").json()["total"]
    upload = server.post(
        "/api/batches", headers=evil,
        files=[("files", ("coffee.jpg", photos["coffee.jpg"].read_bytes()))],
    )  # fmt: skip
    assert upload.status_code == 403
    assert server.get("/api/batches").json()["total"] == batches
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert server.get("/api/jobs", headers={"Host": host}).status_code == 200, host
    server.assert_healthy()


def test_cross_site_requests_change_nothing(server: Server, photos: dict[str, Path]) -> None:
    job_id = server.good_job["id"]
    batches = server.get("/api/batches").json()["total"]
    own = server.url
    attempts = [
        # A multipart form post from another site (browsers send its Origin).
        ("/api/batches", {"Origin": "http://evil.example"}, "files"),
        # The same from another port on this machine: same site, not same origin.
        ("/api/batches", {"Origin": "http://127.0.0.1:1"}, "files"),
        # A sandboxed frame or data: URL sends Origin: null.
        ("/api/batches", {"Origin": "null"}, "files"),
        # fetch(..., {mode: "no-cors", body: "x"}) as text/plain from another site.
        (f"/api/jobs/{job_id}/cancel", {"Sec-Fetch-Site": "cross-site", "Origin": own}, "text"),
        # A form from a sibling site of the same registrable domain.
        (f"/api/jobs/{job_id}/retry", {"Sec-Fetch-Site": "same-site"}, "form"),
        # An old browser sending neither Origin nor Sec-Fetch-*: no proof of the UI.
        (f"/api/jobs/{job_id}/retry", {}, "form"),
        (f"/api/jobs/{job_id}/cancel", {"Content-Type": "text/plain"}, "text"),
    ]
    for path, headers, kind in attempts:
        if kind == "files":
            body = {"files": [("files", ("coffee.jpg", photos["coffee.jpg"].read_bytes()))]}
        elif kind == "form":
            body = {"data": {"x": "1"}}
        else:
            body = {"content": b"x"}
        # Without the UI's header, as a browser would send a cross-site request.
        response = httpx.post(f"{server.url}{path}", headers=headers, timeout=60, **body)
        assert response.status_code == 403, (path, headers, response.text)
        assert response.json()["error"]["code"] == "cross_origin"
        if "Origin" in headers or "Sec-Fetch-Site" in headers:
            # The custom header does not help a request that says it comes from elsewhere.
            again = server.post(path, headers=headers, **body)
            assert again.status_code == 403, (path, headers, again.text)
    foreign_delete = httpx.delete(
        f"{server.url}/api/jobs/{job_id}", headers={"Origin": "http://evil.example"}
    )
    assert foreign_delete.status_code == 403
    server.assert_healthy()
    assert server.get("/api/batches").json()["total"] == batches


def test_the_ui_s_own_requests_pass(server: Server) -> None:
    same = server.post(
        "/api/batches/manual",
        json={"name": "From the UI"},
        headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 201, same.text
    plain = server.post("/api/batches/manual", json={"name": "From a script"})
    assert plain.status_code == 201, plain.text


def test_allowed_hosts_extend_the_list_and_a_wildcard_bind_takes_ip_literals(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path, max_concurrent_jobs=1, allowed_hosts=["photos.lan"],
    )  # fmt: skip
    with JobSystem(settings) as system:
        app = create_app(settings, system=system)
        client = TestClient(app, base_url="http://photos.lan")
        assert client.get("/api/jobs").status_code == 200
        assert TestClient(app, base_url="http://other.lan").get("/api/jobs").status_code == 403
        assert TestClient(app, base_url="http://[::1]:8000").get("/api/jobs").status_code == 200
        assert TestClient(app, base_url="http://10.0.0.5").get("/api/jobs").status_code == 403
        wide = Settings(data_dir=tmp_path, host="0.0.0.0", token=TOKEN, max_concurrent_jobs=1)
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        open_app = create_app(wide, system=system)
        by_ip = TestClient(open_app, base_url="http://10.0.0.5:8000", headers=bearer)
        assert by_ip.get("/api/jobs").status_code == 200
        by_name = TestClient(open_app, base_url="http://evil.example", headers=bearer)
        assert by_name.get("/api/jobs").status_code == 403
