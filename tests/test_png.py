"""The PNG writer: every pixel comes back, and readers accept the file as a plain PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from bgremover.engine.png import write_png

_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _read(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as checked:
        checked.verify()  # chunk CRCs and framing
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(sorted(_CHANNELS)),
    width=st.integers(1, 40),
    height=st.integers(1, 600),  # past one strip of rows
    seed=st.integers(0, 2**32 - 1),
)
def test_every_pixel_comes_back_in_every_mode_and_size(
    mode: str, width: int, height: int, seed: int
) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, _CHANNELS[mode]))
    channels = pixels.astype(np.uint8)
    image = Image.fromarray(channels[:, :, 0] if mode == "L" else channels, mode)

    read = _read(write_png(image))

    assert (read.format, read.mode, read.size) == ("PNG", mode, (width, height))
    assert np.array_equal(np.asarray(read), np.asarray(image))


def test_a_photo_is_smaller_than_its_raw_pixels(photos: dict[str, Path]) -> None:
    """Real content compresses: the deflate is doing its job, not storing."""
    photo = Image.open(photos["chelsea.jpg"]).convert("RGBA")

    data = write_png(photo)

    assert np.array_equal(np.asarray(_read(data)), np.asarray(photo))
    assert len(data) < 0.8 * photo.width * photo.height * 4


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
def test_other_modes_are_written_as_rgba_with_the_same_look(mode: str) -> None:
    gradient = np.arange(64 * 48 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)
    rgb = Image.fromarray(gradient)
    image = rgb.convert("L").convert(mode) if mode != "P" else rgb.convert("P")

    read = _read(write_png(image))

    assert read.mode == "RGBA"
    assert np.array_equal(np.asarray(read), np.asarray(image.convert("RGBA")))
