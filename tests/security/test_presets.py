"""Presets are bounded: a client cannot grow the table without limit, and the answer naming
the saved presets stays short however many there are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..serving import UI, served

LIMIT = 25


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[str]:
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_MAX_PRESETS": str(LIMIT)}
    with served(tmp_path_factory.mktemp("presets"), env=env) as (address, _):
        yield address


def save(url: str, name: str, priority: int = 0) -> httpx.Response:
    body = {"name": name, "priority": priority}
    return httpx.post(f"{url}/api/presets", json=body, headers=UI, timeout=60)


def test_presets_beyond_the_limit_are_refused_but_existing_ones_still_change(url: str) -> None:
    for index in range(LIMIT):
        assert save(url, f"preset {index:03}").status_code == 201
    full = save(url, "one too many")
    assert full.status_code == 409, full.text
    error = full.json()["error"]
    assert error["code"] == "too_many_presets"
    assert str(LIMIT) in error["message"] and "BGREMOVER_MAX_PRESETS" in error["message"]
    assert save(url, "preset 000", priority=5).status_code == 200  # replacing is no growth
    listed = httpx.get(f"{url}/api/presets", timeout=60).json()
    assert len(listed) == LIMIT and listed[0]["priority"] == 5
    deleted = httpx.delete(f"{url}/api/presets/preset%20024", headers=UI, timeout=60)
    assert deleted.status_code == 204
    assert save(url, "one more").status_code == 201  # room again after a delete


def test_an_unknown_preset_names_at_most_twenty_saved_ones(
    url: str, photos: dict[str, Path]
) -> None:
    for index in range(LIMIT):
        save(url, f"preset {index:03}")  # fills the table (409s once full: that is fine)
    names = [p["name"] for p in httpx.get(f"{url}/api/presets", timeout=60).json()]
    assert len(names) == LIMIT
    upload = httpx.post(
        f"{url}/api/batches", headers=UI, data={"preset": "nope"}, timeout=60,
        files=[("files", ("a.jpg", photos["chelsea.jpg"].read_bytes()))],
    )  # fmt: skip
    assert upload.status_code == 422, upload.text
    message = upload.json()["error"]["message"]
    assert "'nope'" in message and ", ".join(names[:20]) in message
    assert names[20] not in message
    assert message.endswith(f"and {LIMIT - 20} more)"), message
    assert len(upload.content) < 1000
    missing = httpx.delete(f"{url}/api/presets/nope", headers=UI, timeout=60)
    assert missing.status_code == 404 and len(missing.content) < 1000
