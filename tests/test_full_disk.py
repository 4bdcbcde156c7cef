"""End to end: `bgremover serve` with its data dir (SQLite database, originals, results) on
a small tmpfs that fills up mid-batch. The server keeps answering, says the storage is full,
runs nothing while it is, and once space is back every job completes; the database is intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .disk_support import ON_DISK, CannotMount, serve_and_fill, small_disk

BATCH = 8


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_disk(tmp_path / "disk", size_mb=48) as mounted:
            yield mounted
    except CannotMount as exc:
        pytest.skip(f"no size-limited disk to fill: {exc}")


@pytest.mark.parametrize("on_disk", ON_DISK)
def test_a_full_disk_fails_no_job_and_every_job_completes_once_freed(
    disk: Path, slow_tiny_model: Path, photos: dict[str, Path], tmp_path: Path, on_disk: str
) -> None:
    """The results store alone on the small disk (the database elsewhere), or the whole data
    dir with the SQLite database, which then cannot write either. Runs of seconds (the slow
    tiny model), so the disk fills while one is under way and its result cannot be stored:
    with runs of a tenth of a second both could end first, and with the database full no
    new one starts to meet the full store."""
    images = [photos["chelsea.jpg"]] * BATCH
    outcome = serve_and_fill(disk, tmp_path, slow_tiny_model, images, on_disk)

    assert not outcome.errors, outcome.errors
    assert list(outcome.statuses.values()) == ["completed"] * BATCH
    assert outcome.runs > BATCH, "no run was cut short: the disk filled after the batch"
    assert outcome.reads_while_full == [200, 200, 200], "the server stopped answering"
    status, body = outcome.upload_while_full
    assert status == 503, body
    assert body["error"]["message"].endswith("is full: nothing was stored; try again later")
    assert str(disk) not in str(body)
    storage = outcome.health_while_full["storage"]
    assert outcome.health_while_full["status"] == "degraded"
    assert (storage["ok"], storage["error"]) == (False, "results storage is full")
    assert str(disk) not in str(outcome.health_while_full)
    # Open pages were told (by event, or by a resync's snapshot) when it filled and emptied.
    assert [state["ok"] for state in outcome.announced] == [True, False, True]
    assert outcome.integrity == "ok"
