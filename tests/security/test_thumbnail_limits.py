"""Thumbnails cost a bounded amount of disk, CPU and memory whatever sizes are asked for.

The attack: every ``size`` from 16 to 1024 was its own decode of the original and its own
cached file (250 requests cached 149 MB and took 93 s of CPU for one photo), the cache grew
without end, and renders ran unbounded in the web process (four 36 MP PNGs at once:
262 → 833 MB). Now sizes snap to a few cached renders (the answer's long side is still at
most ``size``), the cache drops the least recently used files past its byte limit, and
renders take a slot: a request that finds none within the wait gets 503 with Retry-After.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bgremover.engine.thumbnail import thumbnail

from ..serving import served
from .conftest import upload_and_finish

UI_SIZES = (128, 256, 512, 768)
"""What the UI asks for: cards, the default, history, the results grid."""


def noise_png(seed: int, size: tuple[int, int]) -> bytes:
    """A photo-sized image whose thumbnails do not compress away (and all weigh the same)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def cached_files(root: Path, data: bytes) -> dict[str, int]:
    """The cached thumbnails of the stored file ``data`` (named by its sha256): name → bytes."""
    name = hashlib.sha256(data).hexdigest()
    return {p.name: p.stat().st_size for p in (root / "thumbnails").rglob(f"{name}*")}


def cache_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "thumbnails").rglob("*") if p.is_file())


def thumbnail_url(url: str, job_id: str) -> str:
    return f"{url}/api/jobs/{job_id}/thumbnail"


@pytest.fixture(scope="module")
def default_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("thumbnails")
    with served(root, env={"BGREMOVER_MODEL_PATH": str(tiny_model)}) as (url, _):
        yield url, root


def test_every_size_is_answered_from_a_few_cached_renders(
    default_server: tuple[str, Path], photos: dict[str, Path]
) -> None:
    url, root = default_server
    buffer = io.BytesIO()
    Image.open(photos["coffee.jpg"]).resize((1600, 1200)).save(buffer, "JPEG", quality=90)
    photo = buffer.getvalue()
    job = upload_and_finish(url, [("big.jpg", photo)])["jobs"][0]

    sizes = [*range(16, 1025, 29), *UI_SIZES]
    for size in sizes:
        response = httpx.get(thumbnail_url(url, job["id"]), params={"size": size}, timeout=60)
        assert response.status_code == 200, response.text
        shown = Image.open(io.BytesIO(response.content))
        assert shown.format == "WEBP" and max(shown.size) == size, (size, shown.size)
    cached = cached_files(root, photo)
    assert len(cached) <= 6, f"{len(sizes)} sizes made {len(cached)} cached renders"
    # The UI's own sizes are renders of their own (served from the cache as they are).
    assert all(any(n.endswith(f".{s}.webp") for n in cached) for s in UI_SIZES), cached


def test_a_page_of_uncached_thumbnails_all_arrive(default_server: tuple[str, Path]) -> None:
    """More renders at once than slots wait their turn: a page of cards shows every image."""
    url, _ = default_server
    sources = [(f"n{i}.png", noise_png(i, (1200, 900))) for i in range(3)]
    jobs = upload_and_finish(url, sources)["jobs"]
    requests = [
        (job["id"], size, of)
        for job in jobs
        for size in (128, 512)
        for of in ("original", "result")
    ]
    statuses = burst(url, requests)
    assert statuses == [200] * len(requests), statuses


def burst(url: str, requests: list[tuple[str, int, str]]) -> list[int]:
    """Send every thumbnail request at the same moment; their statuses in order."""
    start = threading.Barrier(len(requests))
    answers: list[httpx.Response | None] = [None] * len(requests)

    def get(index: int, job_id: str, size: int, of: str) -> None:
        start.wait()
        answers[index] = httpx.get(
            thumbnail_url(url, job_id), params={"size": size, "of": of}, timeout=120
        )

    threads = [threading.Thread(target=get, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer in answers:
        assert answer is not None
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "busy", answer.text
            assert int(answer.headers["Retry-After"]) >= 1
    return [answer.status_code for answer in answers if answer is not None]


NOISE = (900, 600)
"""Four distinct images this size make 512-bucket thumbnails of about the same weight."""


@pytest.fixture(scope="module")
def bounded_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[str, Path, int]]:
    """One render at a time, no waiting for it, and room for three and a half thumbnails."""
    scratch = tmp_path_factory.mktemp("weights")
    weights = []
    for seed in range(4):
        (scratch / f"{seed}.png").write_bytes(noise_png(100 + seed, NOISE))
        weights.append(len(thumbnail(scratch / f"{seed}.png", 512, max_pixels=10**8)))
    limit = int(3.5 * max(weights))
    root = tmp_path_factory.mktemp("bounded")
    env = {
        "BGREMOVER_MODEL_PATH": str(tiny_model),
        "BGREMOVER_THUMBNAIL_CACHE_BYTES": str(limit),
        "BGREMOVER_THUMBNAIL_RENDERS": "1",
        "BGREMOVER_THUMBNAIL_WAIT": "0",
    }
    with served(root, env=env) as (url, _):
        yield url, root, limit


def test_the_cache_stays_under_its_limit_dropping_the_least_recently_used(
    bounded_server: tuple[str, Path, int],
) -> None:
    url, root, limit = bounded_server
    sources = [(f"{seed}.png", noise_png(100 + seed, NOISE)) for seed in range(4)]
    jobs = upload_and_finish(url, sources)["jobs"]
    a, b, c, d = ((job["id"], data) for job, (_, data) in zip(jobs, sources, strict=True))

    for job_id, _ in (a, b, c, a, d):  # a is used again before d needs room
        response = httpx.get(thumbnail_url(url, job_id), params={"size": 512}, timeout=60)
        assert response.status_code == 200, response.text
        assert cache_bytes(root) <= limit, f"{cache_bytes(root):,} bytes over {limit:,}"
    assert cached_files(root, a[1]) and cached_files(root, d[1]), "a recent one was dropped"
    assert not cached_files(root, b[1]), "the least recently used one was kept"


def test_a_render_that_finds_no_slot_in_time_gets_503_with_retry_after(
    bounded_server: tuple[str, Path, int],
) -> None:
    url, _, _ = bounded_server
    job = upload_and_finish(url, [("busy.png", noise_png(7, (2400, 1600)))])["jobs"][0]
    requests = [(job["id"], size, of) for size in (64, 256, 1024) for of in ("original", "result")]
    statuses = burst(url, requests)
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    assert 200 in statuses, "no request got the one slot"
    again = httpx.get(thumbnail_url(url, job["id"]), params={"size": 300}, timeout=60)
    assert again.status_code == 200, "a refused request kept its slot"
