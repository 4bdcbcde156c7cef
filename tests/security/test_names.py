"""Names with control characters, folders or non-ASCII text: refused nothing, stored clean,
and every download answers with a complete body and an RFC 6266 Content-Disposition."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from .conftest import Server, upload_and_finish

pytestmark = pytest.mark.model


def test_cr_lf_in_batch_and_file_names_cannot_split_headers_or_break_downloads(
    server: Server, photos: dict[str, Path]
) -> None:
    created = upload_and_finish(
        server.url,
        # httpx percent-encodes CR, LF and quotes in a multipart file name (as browsers do),
        # so the raw control characters travel in the batch name, and an ESC in a file name.
        [("photo\x1b[2J.jpg", photos["chelsea.jpg"].read_bytes()),
         ("café ☕ 'quoted';.jpg", photos["chelsea.jpg"].read_bytes())],
        name='evil\r\nSet-Cookie: owned=1 "x"',
    )  # fmt: skip
    batch = created["batch"]
    assert batch["name"] == 'evilSet-Cookie: owned=1 "x"'
    names = [job["file_name"] for job in created["jobs"]]
    assert names == ["photo[2J.jpg", "café ☕ 'quoted';.jpg"]

    archive = server.get(f"/api/batches/{batch['id']}/archive")
    assert archive.status_code == 200 and "set-cookie" not in archive.headers
    members = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert sorted(members) == ["café ☕ 'quoted';-no-bg.png", "photo[2J-no-bg.png"]
    assert archive.headers["content-disposition"] == (
        "attachment; filename=\"evilSet-Cookie. owned=1 'x'.zip\"; "
        "filename*=UTF-8''evilSet-Cookie.%20owned%3D1%20%22x%22.zip"
    )
    for job in created["jobs"]:
        result = server.get(f"/api/jobs/{job['id']}/result")
        assert result.status_code == 200 and result.content.startswith(b"\x89PNG")
        assert "set-cookie" not in result.headers
    cafe = server.get(f"/api/jobs/{created['jobs'][1]['id']}/result")
    assert cafe.headers["content-disposition"] == (
        "attachment; filename=\"caf_ _ 'quoted';-no-bg.png\"; "
        "filename*=UTF-8''caf%C3%A9%20%E2%98%95%20%27quoted%27%3B-no-bg.png"
    )
    server.assert_healthy()


def test_manual_batch_names_are_cleaned_at_the_door(server: Server) -> None:
    made = server.post("/api/batches/manual", json={"name": "Shoot\r\n\x00\x1b[31m 1"})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Shoot[31m 1"
    blank = server.post("/api/batches/manual", json={"name": "\r\n\t"})
    assert blank.status_code == 422


def test_archive_entries_carry_no_drive_or_stream_separator(
    server: Server, photos: dict[str, Path]
) -> None:
    """``C:evil-no-bg.png`` is drive-relative to a naive Windows extractor (and ``a:b`` an NTFS
    stream): entries are cleaned by the same rule as the archive's own name."""
    created = upload_and_finish(
        server.url, [("C:evil.jpg", photos["chelsea.jpg"].read_bytes())], name="D:shoot"
    )
    assert created["jobs"][0]["file_name"] == "C:evil.jpg"  # kept as given, for showing
    archive = server.get(f"/api/batches/{created['batch']['id']}/archive")
    assert archive.status_code == 200
    members = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert members == ["C.evil-no-bg.png"]
    assert 'filename="D.shoot.zip"' in archive.headers["content-disposition"]
    job_id = created["jobs"][0]["id"]
    result = server.get(f"/api/jobs/{job_id}/result")
    assert 'filename="C.evil-no-bg.png"' in result.headers["content-disposition"]
    original = server.get(f"/api/jobs/{job_id}/original")
    assert 'filename="C.evil.jpg"' in original.headers["content-disposition"]
