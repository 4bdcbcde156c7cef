"""Loading: every kind of bad input fails with its own clear message; every mode normalises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgremover.engine.decode import decode, read_source
from bgremover.engine.errors import InputError

from .conftest import encode

LIMIT = 100_000_000


def load(path: Path, max_pixels: int = LIMIT) -> Image.Image:
    data, name = read_source(path)
    return decode(data, name=name, max_pixels=max_pixels)


@pytest.mark.parametrize(
    ("key", "code", "words"),
    [
        ("empty_file", "empty_file", "empty"),
        ("not_an_image", "not_an_image", "not an image"),
        ("corrupt_image_jpeg", "corrupt_image", "truncated"),
        ("corrupt_image_png", "corrupt_image", "truncated"),
        ("image_too_large", "image_too_large", "110 megapixels"),
        ("unsupported_format", "unsupported_format", "image/heic"),
    ],
)
def test_bad_input_fails_with_a_message_naming_the_file_and_problem(
    bad_inputs: dict[str, Path], key: str, code: str, words: str
) -> None:
    with pytest.raises(InputError) as caught:
        load(bad_inputs[key])
    assert caught.value.code == code
    assert words in caught.value.message
    assert bad_inputs[key].name in caught.value.message


def test_missing_file_and_directory_are_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as missing:
        read_source(tmp_path / "nope.jpg")
    assert missing.value.code == "unreadable"
    with pytest.raises(InputError, match="is a directory"):
        read_source(tmp_path)


def test_file_over_the_byte_limit_is_refused_before_reading(photos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="over the limit") as caught:
        read_source(photos["chelsea.jpg"], max_bytes=1000)
    assert caught.value.code == "file_too_large"


def test_svg_is_named_as_unsupported() -> None:
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'
    with pytest.raises(InputError, match="SVG") as caught:
        decode(svg, max_pixels=LIMIT)
    assert caught.value.code == "unsupported_format"


def test_pixel_limit_is_configurable(photos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="over the limit"):
        load(photos["chelsea.jpg"], max_pixels=100_000)


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("RGB", "PNG", "RGB"),
        ("RGBA", "PNG", "RGBA"),
        ("L", "PNG", "RGB"),
        ("LA", "PNG", "RGBA"),
        ("P", "PNG", "RGB"),
        ("CMYK", "JPEG", "RGB"),
        ("CMYK", "TIFF", "RGB"),
    ],
)
def test_every_mode_normalises_to_8_bit_rgb_or_rgba(
    photos: dict[str, Path], mode: str, fmt: str, expected: str
) -> None:
    photo = Image.open(photos["coffee.jpg"]).convert(mode)
    image = decode(encode(photo, fmt), max_pixels=LIMIT)
    assert image.mode == expected
    assert image.size == photo.size


def test_palette_transparency_is_kept(photos: dict[str, Path]) -> None:
    photo = Image.open(photos["coffee.jpg"]).convert("P")
    image = decode(encode(photo, "PNG", transparency=0), max_pixels=LIMIT)
    assert image.mode == "RGBA"


def test_16_bit_greyscale_is_scaled_not_clipped(photos: dict[str, Path]) -> None:
    grey = np.asarray(Image.open(photos["coffee.jpg"]).convert("L"), dtype=np.uint16)
    sixteen = Image.fromarray(grey * 257)  # full 16-bit range
    assert sixteen.mode.startswith("I;16")
    image = decode(encode(sixteen, "PNG"), max_pixels=LIMIT)
    assert np.abs(np.asarray(image.convert("L"), dtype=int) - grey).max() <= 1


def test_exif_orientation_is_applied(photos: dict[str, Path]) -> None:
    photo = Image.open(photos["chelsea.jpg"])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = decode(encode(photo, "JPEG", exif=exif), max_pixels=LIMIT)
    assert image.size == (photo.height, photo.width)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = decode(data, max_pixels=LIMIT)
    r, _, b = image.convert("RGB").getpixel((16, 16))  # type: ignore[misc]
    assert r > 200 and b < 50
