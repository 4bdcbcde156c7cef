"""The command line's percent prices each image by its size, as the job system does: at
12 MP the stages around the model take a real share of the time, so the bar must not read
83 % when the model ends with almost half the time to go."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bgremover.cli import _Estimates
from bgremover.engine import Removal, Stage
from bgremover.engine.options import OutputFormat
from bgremover.engine.stages import overall_percent


def _photo(folder: Path, name: str, size: tuple[int, int]) -> Path:
    path = folder / name
    Image.new("RGB", size, (120, 90, 60)).save(path, quality=90)
    return path


def test_a_large_photo_gives_the_model_a_smaller_share_of_its_bar(tmp_path: Path) -> None:
    estimates = _Estimates()
    small = estimates.weights(_photo(tmp_path, "small.jpg", (800, 600)))
    large = estimates.weights(_photo(tmp_path, "large.jpg", (4000, 3000)))
    assert overall_percent(Stage.MASK, 0.0, large) < overall_percent(Stage.MASK, 0.0, small)


def test_measured_timings_set_the_percent_of_later_images(tmp_path: Path) -> None:
    estimates = _Estimates()
    measured = {stage: 1.0 for stage in Stage}
    measured[Stage.INFERENCE] = 6.0  # of 11 s in all, the model ends after 8
    image = Image.new("RGBA", (1200, 800))
    removal = Removal(image, image.getchannel("A"), OutputFormat.PNG, timings=measured)
    estimates.learn(removal)
    weights = estimates.weights(_photo(tmp_path, "same-size.jpg", (1200, 800)))
    assert abs(overall_percent(Stage.MASK, 0.0, weights) - 100 * 8 / 11) < 1.0
