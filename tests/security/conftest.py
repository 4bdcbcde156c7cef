"""One served BG Remover with a good, finished job that every attack must leave intact."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..serving import UI, follow, job_ended, served


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[str]
    root: Path
    """The server's data dir."""
    good_job: dict[str, Any]
    good_hash: str
    """The sha256 of the good job's original (its name in the store)."""
    good_result: bytes

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**UI, **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=60, **kwargs)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(f"{self.url}{path}", headers=UI, timeout=60)

    def assert_healthy(self) -> None:
        """The server answers, lists every job, and the good job is still downloadable."""
        assert self.get("/api/health").status_code == 200
        listing = self.get("/api/jobs", params={"limit": 1000})
        assert listing.status_code == 200, listing.text
        job = self.good_job
        result = self.get(f"/api/jobs/{job['id']}/result")
        assert result.status_code == 200 and result.content == self.good_result
        archive = self.get(f"/api/batches/{job['batch_id']}/archive")
        assert archive.status_code == 200
        assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["coffee-no-bg.png"]


def upload_and_finish(server_url: str, files: list[tuple[str, bytes]], **form: str) -> Any:
    """Upload files as the UI does and wait until every job has ended."""
    response = httpx.post(
        f"{server_url}/api/batches", headers=UI, timeout=60, data=form,
        files=[("files", (name, data)) for name, data in files],
    )  # fmt: skip
    assert response.status_code == 201, response.text
    created = response.json()
    follow(server_url, job_ended({j["id"] for j in created["jobs"]}))
    return created


BODY_TIMEOUT_S = 2.0
"""The server's body timeout here: short, so the limit tests see it act."""


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("security")
    env = {
        "BGREMOVER_MAX_CONCURRENT_JOBS": "1",
        "BGREMOVER_CLEANUP_INTERVAL": "1",  # plain seconds (it used to kill the server)
        "BGREMOVER_HEADER_TIMEOUT": "2",
        "BGREMOVER_BODY_TIMEOUT": str(BODY_TIMEOUT_S),
    }
    with served(root, env=env) as (url, process):
        created = upload_and_finish(url, [("coffee.jpg", photos["coffee.jpg"].read_bytes())])
        job = httpx.get(f"{url}/api/jobs/{created['jobs'][0]['id']}").json()
        assert job["status"] == "completed", job
        result = httpx.get(f"{url}/api/jobs/{job['id']}/result").content
        good_hash = sha256(photos["coffee.jpg"].read_bytes())
        yield Server(url, process, root, job, good_hash, result)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the data dir that no request may read, delete or process."""
    path = tmp_path / "secret.txt"
    path.write_text("<script>alert('owned')</script> the user's private notes\n")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
