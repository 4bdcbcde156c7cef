"""A clip in the web UI (real headless Chromium, real server on the tiny model): its card says
which frame it is on, and its result plays in the results grid over the checkerboard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serving import served
from .test_ui import TIMEOUT_MS, browser, page, shot, tile, upload  # noqa: F401 (fixtures)
from .video_support import moving_frames, write_mp4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[str]:
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model)}
    with served(tmp_path_factory.mktemp("video-ui"), "--dev", env=env) as (url, _):
        yield url


def test_a_clip_shows_its_frame_then_plays_over_the_checkerboard(
    page: Any,  # noqa: F811 (test_ui's fixture)
    tmp_path: Path,
) -> None:
    clip = write_mp4(tmp_path / "walk.mp4", moving_frames(20))
    upload(page, clip)
    stage = page.locator("job-card:has-text('walk.mp4') .job-card__stage")
    stage.filter(has_text="frame").first.wait_for(timeout=TIMEOUT_MS)
    assert " of 20" in stage.first.inner_text()
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('walk.mp4')")
    video = tile(page, "walk.mp4").locator("video.result-tile__result")
    video.wait_for(timeout=TIMEOUT_MS)
    assert "/result" in (video.get_attribute("src") or "")
    page.wait_for_function(
        "() => [...document.querySelectorAll('video.result-tile__result')]"
        ".some(v => v.readyState >= 2 && v.videoWidth === 320)"
    )
    shot(page, "clip-result")


def test_a_clip_cut_as_a_gif_plays_in_its_tile(
    page: Any,  # noqa: F811 (test_ui's fixture)
    tmp_path: Path,
) -> None:
    clip = write_mp4(tmp_path / "wave.mp4", moving_frames(8))
    page.select_option("drop-zone select[name=format]", "gif")
    upload(page, clip)
    page.wait_for_selector("li.result-tile[data-status=completed]:has-text('wave.mp4')")
    result = tile(page, "wave.mp4").locator("img.result-tile__result")
    result.wait_for(timeout=TIMEOUT_MS)
    assert "/result" in (result.get_attribute("src") or ""), "a still thumbnail, not the GIF"
    page.wait_for_function(
        "() => [...document.querySelectorAll('img.result-tile__result')]"
        ".some(i => i.src.includes('/result') && i.complete && i.naturalWidth === 320)"
    )
