"""Loading: every kind of bad input fails with its own clear message; every mode normalises."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from bgremover.engine.decode import SUPPORTED_MEDIA_TYPES, decode, probe, read_source, sniff
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
        ("corrupt_image_heif", "corrupt_image", "truncated or corrupt"),
        ("unsupported_format", "unsupported_format", "image/jxl"),
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


def rotated_jpeg(photos: dict[str, Path]) -> bytes:
    """The cat photo as a camera held upright saves it: landscape pixels, EXIF "rotate 90°"."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.open(photos["chelsea.jpg"]), "JPEG", exif=exif, quality=95)


@pytest.mark.parametrize(("fmt", "media_type"), [("HEIF", "image/heic"), ("AVIF", "image/avif")])
def test_phone_formats_decode_upright_like_the_same_photo_as_jpeg(
    photos: dict[str, Path], tmp_path: Path, fmt: str, media_type: str
) -> None:
    jpeg = rotated_jpeg(photos)
    # Given the JPEG's EXIF, each encoder stores the orientation its format's way: HEIF as a
    # rotation box, AVIF as the box plus the EXIF tag.
    opened = Image.open(io.BytesIO(jpeg))
    data = encode(opened, fmt, quality=90, exif=opened.info["exif"])
    assert sniff(data[:64]) == media_type
    expected = decode(jpeg, max_pixels=LIMIT)
    image = decode(data, name=f"photo.{fmt.lower()}", max_pixels=LIMIT)
    assert (image.mode, image.size) == ("RGB", (300, 451)) == (expected.mode, expected.size)
    difference = np.abs(np.asarray(image, dtype=int) - np.asarray(expected, dtype=int))
    assert difference.mean() < 3, f"{fmt} differs from the JPEG by {difference.mean():.1f} levels"
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(data)
    assert probe(path) == (media_type, 300, 451)


def test_10_bit_heic_decodes_to_8_bit_with_its_colours(photos: dict[str, Path]) -> None:
    photo = np.asarray(Image.open(photos["coffee.jpg"]).convert("RGB"))
    ten_bit = pillow_heif.from_bytes(
        mode="RGB;16", size=(photo.shape[1], photo.shape[0]),
        data=(photo.astype(np.uint16) << 8).tobytes(),
    )  # fmt: skip
    buffer = io.BytesIO()
    ten_bit.save(buffer, quality=95)
    data = buffer.getvalue()
    assert pillow_heif.open_heif(data, convert_hdr_to_8bit=False).info["bit_depth"] == 10
    assert sniff(data[:64]) == "image/heic"  # its brand is "heix", not "heic"
    image = decode(data, max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (photo.shape[1], photo.shape[0])
    assert np.abs(np.asarray(image, dtype=int) - photo).mean() < 3


def test_heic_with_transparency_keeps_it(photos: dict[str, Path]) -> None:
    photo = Image.open(photos["coffee.jpg"]).convert("RGBA")
    photo.putalpha(Image.new("L", photo.size, 0).resize(photo.size))
    image = decode(encode(photo, "HEIF", quality=90), max_pixels=LIMIT)
    assert image.mode == "RGBA" and image.getchannel("A").getextrema() == (0, 0)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_truncated_phone_photo_fails_as_corrupt_naming_the_file(
    photos: dict[str, Path], fmt: str
) -> None:
    data = encode(Image.open(photos["chelsea.jpg"]), fmt, quality=90)
    for cut in (data[: len(data) // 2], data[:300]):
        with pytest.raises(InputError, match="truncated or corrupt") as caught:
            decode(cut, name="IMG_0001.HEIC", max_pixels=LIMIT)
        assert caught.value.code == "corrupt_image"
        assert "IMG_0001.HEIC" in caught.value.message


def test_heic_and_avif_are_supported_media_types() -> None:
    assert {"image/heic", "image/heif", "image/avif"} <= SUPPORTED_MEDIA_TYPES
