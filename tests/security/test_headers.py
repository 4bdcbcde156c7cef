"""Every response says how a browser may use it: no sniffing, no framing, no referrer, and
a Content-Security-Policy that allows only this server's own scripts and styles."""

from __future__ import annotations

import pytest

from .conftest import Server

pytestmark = pytest.mark.model


def test_pages_api_answers_and_files_carry_the_security_headers(server: Server) -> None:
    job_id = server.good_job["id"]
    for path in (
        "/",
        "/api/jobs",
        f"/api/jobs/{job_id}/result",
        "/api/nothing",
        "/static/js/api.js",
    ):
        response = server.get(path)
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path


def test_an_original_is_served_as_the_image_type_read_from_its_bytes(server: Server) -> None:
    original = server.get(f"/api/jobs/{server.good_job['id']}/original")
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/jpeg"
    assert original.headers["x-content-type-options"] == "nosniff"
