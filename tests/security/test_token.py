"""With an access token: the token travels in a header, or in the URL where a header is
impossible (the event stream, images and downloads), or a login exchanges it for an HttpOnly
SameSite=Strict cookie; it is accepted nowhere else in a URL and never written to the log."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..serving import UI, output_of, served

pytestmark = pytest.mark.model

TOKEN = "DmTrNiZxWGmTOByAEkM9vVMOoIKz8XuSqLvMQZzZ8vc"


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    root = tmp_path_factory.mktemp("guarded")
    with served(root, "--token", TOKEN, env={"BGREMOVER_MAX_CONCURRENT_JOBS": "1"}) as running:
        yield running


def test_the_token_in_a_url_works_only_where_a_header_cannot_be_sent(
    guarded: tuple[str, subprocess.Popen[str]], photos: dict[str, Path]
) -> None:
    url, _ = guarded
    bearer = {"Authorization": f"Bearer {TOKEN}", **UI}
    created = httpx.post(
        f"{url}/api/batches", headers=bearer,
        files=[("files", ("coffee.jpg", photos["coffee.jpg"].read_bytes()))],
    ).json()  # fmt: skip
    job_id = created["jobs"][0]["id"]
    for path in ("/api/jobs", "/api/export", f"/api/jobs/{job_id}", "/api/stats"):
        assert httpx.get(f"{url}{path}?token={TOKEN}").status_code == 401, path
    original = httpx.get(f"{url}/api/jobs/{job_id}/original?token={TOKEN}")
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    with httpx.stream("GET", f"{url}/api/events?token={TOKEN}", timeout=60) as stream:
        assert stream.status_code == 200
        assert next(stream.iter_lines()).startswith(("id:", "event:", ":"))
    assert (
        httpx.post(f"{url}/api/jobs/{job_id}/cancel?token={TOKEN}", headers=UI).status_code == 401
    )


def test_a_login_sets_a_strict_http_only_cookie_that_then_suffices(
    guarded: tuple[str, subprocess.Popen[str]],
) -> None:
    url, _ = guarded
    first = httpx.post(f"{url}/api/login", headers={"Authorization": f"Bearer {TOKEN}"})
    assert first.status_code == 204
    cookie = first.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    with httpx.Client(cookies=first.cookies) as browser:
        assert browser.get(f"{url}/api/jobs").status_code == 200
        made = browser.post(f"{url}/api/batches/manual", json={"name": "x"}, headers=UI)
        assert made.status_code == 201
        foreign = browser.post(
            f"{url}/api/batches/manual", json={"name": "x"},
            headers={**UI, "Origin": "http://evil.example"},
        )  # fmt: skip
        assert foreign.status_code == 403
    forged = httpx.get(f"{url}/api/jobs", cookies={k: "0" * 43 for k in first.cookies})
    assert forged.status_code == 401
    # The login needs the token itself: no cookie, no URL token.
    assert httpx.post(f"{url}/api/login", headers=UI).status_code == 401
    assert httpx.post(f"{url}/api/login?token={TOKEN}", headers=UI).status_code == 401


def test_the_token_never_reaches_the_log(guarded: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = guarded
    httpx.get(f"{url}/api/jobs?token={TOKEN}")
    httpx.get(f"{url}/api/jobs/nope/original?token={TOKEN}&x=1")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    log = output_of(process)
    assert "/api/jobs/nope/original" in log, log[-2000:]
    assert TOKEN not in log
