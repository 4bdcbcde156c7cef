"""Every image the server decodes meets BGREMOVER_MAX_IMAGE_PIXELS, not only originals: a
background too large for the limit is refused when it is uploaded (422 ``image_too_large``),
fails its job with the same code and a human message if it reaches a worker anyway (a limit
lowered later, an imported job), and ends ``remove --bg-image`` before any photo is processed.

The attack: a 12000×12000 1-bit PNG is 32 KB to send and 144 MP to decode (a worker at
1.45 GB); a 225 MP one made Pillow raise ``DecompressionBombError``, which ended the job as
``internal_error … this is a bug``. Here the limit is 1 MP so the over-limit image is small
to decode; the 225 MP one is over Pillow's own ceiling too.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bgremover import Settings
from bgremover.engine.options import RemoveOptions
from bgremover.system import JobSystem

from ..jobs_support import stage_uploads
from ..serving import UI, follow, job_ended, served
from ..test_job_system import collect, ended
from .conftest import upload_and_finish
from .test_messages import PNG_SIGNATURE, chunk

LIMIT = 1_000_000
"""BGREMOVER_MAX_IMAGE_PIXELS in these tests."""

OVER_LIMIT = (1250, 1000)
"""1.25 MP: over the tests' limit (as 144 MP is over the default), cheap to decode if let in."""
BOMB = (15_000, 15_000)
"""225 MP: over Pillow's own ceiling (about 179 MP) as well."""


def blank_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG: a few KB on the wire, ``width × height`` pixels decoded."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    deflate = zlib.compressobj(9)
    body = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, chunk(b"IHDR", header), chunk(b"IDAT", body), chunk(b"IEND", b""))
    )


def small_photo(photos: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    Image.open(photos["coffee.jpg"]).save(buffer, "JPEG", quality=90)  # 600×400, under LIMIT
    return buffer.getvalue()


def megapixels(size: tuple[int, int]) -> str:
    return f"{size[0] * size[1] / 1e6:.3g} megapixels"


def assert_refused_for_size(error: dict[str, Any], name: str, size: tuple[int, int]) -> None:
    """The error says what is wrong (this file, its size, the limit) and what to change."""
    message = error["message"]
    assert error["code"] == "image_too_large", error
    assert name in message and megapixels(size) in message, message
    assert "BGREMOVER_MAX_IMAGE_PIXELS" in message and "bug" not in message, message


@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, photos: dict[str, Path]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A served BG Remover with a 1 MP limit and one finished job to derive from."""
    root = tmp_path_factory.mktemp("decode-limits")
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_MAX_IMAGE_PIXELS": str(LIMIT)}
    with served(root, env=env) as (url, _):
        created = upload_and_finish(url, [("coffee.jpg", small_photo(photos))])
        job = httpx.get(f"{url}/api/jobs/{created['jobs'][0]['id']}").json()
        assert job["status"] == "completed", job
        yield url, job


def job_count(url: str) -> int:
    total: int = httpx.get(f"{url}/api/jobs", params={"limit": 1000}).json()["total"]
    return total


@pytest.mark.parametrize("size", [OVER_LIMIT, BOMB], ids=["over-limit", "over-pillow"])
def test_a_derive_background_over_the_pixel_limit_is_refused_at_upload(
    limited: tuple[str, dict[str, Any]], size: tuple[int, int]
) -> None:
    url, job = limited
    before = job_count(url)
    response = httpx.post(
        f"{url}/api/jobs/{job['id']}/derive", headers=UI, timeout=60,
        data={"format": "png"}, files={"background_image": ("wall.png", blank_png(*size))},
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert_refused_for_size(response.json()["error"], "wall.png", size)
    assert job_count(url) == before, "a refused background still queued a job"


def test_a_derive_background_within_the_limit_is_composited(
    limited: tuple[str, dict[str, Any]],
) -> None:
    url, job = limited
    response = httpx.post(
        f"{url}/api/jobs/{job['id']}/derive", headers=UI, timeout=60,
        data={"format": "png"}, files={"background_image": ("wall.png", blank_png(1000, 1000))},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    derived = response.json()
    follow(url, job_ended({derived["id"]}))
    done = httpx.get(f"{url}/api/jobs/{derived['id']}").json()
    assert done["status"] == "completed", done
    result = Image.open(io.BytesIO(httpx.get(f"{url}/api/jobs/{derived['id']}/result").content))
    assert result.mode == "RGB"  # on the (black) wall, not transparent


@pytest.mark.parametrize("size", [OVER_LIMIT, BOMB], ids=["over-limit", "over-pillow"])
def test_a_background_over_the_limit_that_reaches_a_worker_fails_its_job_clearly(
    tiny_model: Path, photos: dict[str, Path], tmp_path: Path, size: tuple[int, int]
) -> None:
    """A background already in the store (uploaded before the limit was lowered, or
    imported with its files) is checked by the worker process that decodes it."""
    settings = Settings(
        data_dir=tmp_path, model_path=tiny_model, max_image_pixels=LIMIT, max_concurrent_jobs=1
    )
    wall = tmp_path / "wall.png"
    wall.write_bytes(blank_png(*size))
    with JobSystem(settings) as system, system.bus.subscribe() as subscription:
        service = system.service
        job = service.create_batch(stage_uploads(tmp_path, photos["coffee.jpg"])).jobs[0]
        background = service.files.add_background(wall)
        derived = service.derive_job(job.id, RemoveOptions(background_image=Path(background)))
        collect(subscription, ended({job.id, derived.id}))
        failed = service.get_job(derived.id)
    assert failed.status == "failed" and failed.error is not None, failed
    assert_refused_for_size(failed.error.model_dump(), "background image", size)
    assert str(tmp_path) not in failed.error.message, "a worker's path reached the user"


def test_remove_refuses_a_bg_image_over_the_limit_before_any_photo(
    tiny_model: Path, photos: dict[str, Path], tmp_path: Path
) -> None:
    wall = tmp_path / "wall.png"
    wall.write_bytes(blank_png(*BOMB))
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos["coffee.jpg"].read_bytes())
    env = {
        **os.environ, "BGREMOVER_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1",
        "BGREMOVER_MODEL_PATH": str(tiny_model),
        "COLUMNS": "40",  # narrower than the message: it must not be cut (a path in two halves)
    }  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "bgremover", "remove", str(photo), "--bg-image", str(wall)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert f"--bg-image {wall}:" in run.stderr, run.stderr  # on one line, whole
    assert megapixels(BOMB) in message and "BGREMOVER_MAX_IMAGE_PIXELS" in message, message
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.glob("coffee-no-bg.*")), "a photo was processed anyway"
