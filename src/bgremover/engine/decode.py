"""Loading: turn bytes, a path, a PIL image or an array into an upright 8-bit RGB(A) image.

Every way an input can be bad ends here as an ``InputError`` whose message says what is wrong
with that file, so one bad file in a batch never takes the others down.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filetype
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import formats
from .errors import InputError

ImageSource = bytes | bytearray | memoryview | str | os.PathLike[str] | Image.Image | np.ndarray

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_SNIFF_BYTES = 8192
_ORIENTATION = 0x0112  # the EXIF tag

# What Pillow (with the HEIC and AVIF plugins) decodes here; other image types (JPEG XL,
# camera raw, GIMP's XCF) are refused by name.
_PILLOW_MEDIA_TYPES = frozenset(
    {
        "image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff",
        "image/x-icon", "image/vnd.adobe.photoshop", "image/x-tga",
    }
)  # fmt: skip
SUPPORTED_MEDIA_TYPES = _PILLOW_MEDIA_TYPES | formats.register()
# JPEG XL (a bare codestream or its ISO-BMFF container), which ``filetype`` does not know:
# named so it is refused as an unsupported image rather than as "not an image".
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a")


def sniff(header: bytes) -> str | None:
    """The media type of a file from its first bytes, or None when not recognised."""
    isobmff = formats.sniff_isobmff(header)
    if isobmff is not None:
        return isobmff
    if header.startswith(_JXL_SIGNATURES):
        return "image/jxl"
    kind = filetype.guess(header)
    return kind.mime if kind is not None else None


def read_source(source: ImageSource, *, max_bytes: int | None = None) -> tuple[bytes, str]:
    """Return the raw bytes of a path or buffer and a name for messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "image"
    else:
        path = Path(os.fspath(source))  # type: ignore[arg-type]
        name = str(path)
        try:
            if max_bytes is not None and path.stat().st_size > max_bytes:
                raise InputError(
                    f"{name}: file is {path.stat().st_size:,} bytes, over the limit of "
                    f"{max_bytes:,} (BGREMOVER_MAX_UPLOAD_BYTES)",
                    code="file_too_large",
                )
            data = path.read_bytes()
        except IsADirectoryError:
            raise InputError(
                f"{name}: is a directory, not an image file", code="unreadable"
            ) from None
        except FileNotFoundError:
            raise InputError(f"{name}: no such file", code="unreadable") from None
        except PermissionError:
            raise InputError(
                f"{name}: permission denied when reading it", code="unreadable"
            ) from None
        except OSError as exc:
            raise InputError(
                f"{name}: cannot be read ({exc.strerror})", code="unreadable"
            ) from None
    if max_bytes is not None and len(data) > max_bytes:
        raise InputError(
            f"{name}: file is {len(data):,} bytes, over the limit of {max_bytes:,} "
            "(BGREMOVER_MAX_UPLOAD_BYTES)",
            code="file_too_large",
        )
    return data, name


def decode(
    data: bytes, *, name: str = "image", max_pixels: int, draft: int | None = None
) -> Image.Image:
    """Decode the first frame, apply EXIF orientation and normalise to RGB or RGBA (8 bit).

    Every image this app decodes (originals, backgrounds, stored results, thumbnails) comes
    through here, so each meets ``max_pixels`` before a pixel is decoded. ``draft`` lets a
    JPEG decode at a reduced scale that still covers ``draft`` pixels on both sides (for
    thumbnails and backgrounds: an eighth of the work and memory of a full decode).
    """
    if not data:
        raise InputError(f"{name}: the file is empty (0 bytes)", code="empty_file")
    with _reading(name, max_pixels, data[:_SNIFF_BYTES]):
        image = Image.open(io.BytesIO(data))
        _check_pixels(image.size, name, max_pixels)
        image.seek(0)
        if draft is not None:
            image.draft(None, (draft, draft))
        image.load()
        # A container can hold a frame larger than its header said (an ICO's PNG): Pillow's
        # ceiling bounded that decode; this keeps what goes on within ours.
        _check_pixels(image.size, name, max_pixels)
    return normalise(image)


def measure(path: Path, *, name: str, max_pixels: int) -> tuple[int, int]:
    """Width and height of the image file at ``path`` from its header, refused as ``decode``
    would refuse it (over ``max_pixels``, not an image, corrupt): a check at upload time
    that decodes no pixels."""
    with open(path, "rb") as file:
        header = file.read(_SNIFF_BYTES)
        file.seek(0)
        if not header:
            raise InputError(f"{name}: the file is empty (0 bytes)", code="empty_file")
        with _reading(name, max_pixels, header), Image.open(file) as image:
            _check_pixels(image.size, name, max_pixels)
            return image.size


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(
            f"{name}: {width}×{height} is {_megapixels(width * height)} megapixels, over the "
            f"limit of {_megapixels(max_pixels)} (BGREMOVER_MAX_IMAGE_PIXELS)",
            code="image_too_large",
        )


def _megapixels(pixels: int) -> str:
    """``1.25``, ``144``, ``4,295``: enough digits that a size just over a limit shows it."""
    value = pixels / 1e6
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


@contextmanager
def _reading(name: str, max_pixels: int, header: bytes) -> Iterator[None]:
    """Pillow's ways of refusing a file, as ``InputError``s that name it and the fix."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit replaces Pillow's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, name, max_pixels) from None
    except UnidentifiedImageError:
        raise _unidentified(header, name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports cut-off files as OSError("image file is truncated ...") and broken
        # chunks as SyntaxError/ValueError; all mean the bytes stop or go wrong mid-image.
        raise InputError(
            f"{name}: the image data is truncated or corrupt ({str(exc).strip()})",
            code="corrupt_image",
        ) from None


def _bomb(exc: Image.DecompressionBombError, name: str, max_pixels: int) -> InputError:
    """Pillow's own ceiling (2 × its MAX_IMAGE_PIXELS, about 179 MP) stops the open before
    our check; the message names the size against the limit people can change."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    ceiling = re.search(r"limit of (\d+) pixels", str(exc))
    pixels = int(found[1]) if found else None
    size = f"{_megapixels(pixels)} megapixels" if pixels else "too many pixels"
    if pixels is not None and ceiling is not None and pixels <= max_pixels:
        return InputError(
            f"{name}: {size}, over the {_megapixels(int(ceiling[1]))} megapixels that this "
            "server decodes at most (Pillow's ceiling, which BGREMOVER_MAX_IMAGE_PIXELS "
            "cannot raise)",
            code="image_too_large",
        )
    return InputError(
        f"{name}: {size}, over the limit of {_megapixels(max_pixels)} (BGREMOVER_MAX_IMAGE_PIXELS)",
        code="image_too_large",
    )


def normalise(image: Image.Image) -> Image.Image:
    """Upright, 8-bit RGB or RGBA; keeps transparency the source already had. An image that
    already is comes back as it is: each copy of a 12 MP photo is 36 MB more at the peak."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image) or image
    if image.mode in _HIGH_BIT_MODES:
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    return in_mode(image, "RGBA" if has_alpha else "RGB")


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image.convert(mode)`` without the copy ``convert`` makes when it already is."""
    return image if image.mode == mode else image.convert(mode)


def from_array(array: np.ndarray) -> Image.Image:
    """An HxW, HxWx3 or HxWx4 uint8 array as an image."""
    if array.dtype != np.uint8:
        raise InputError(f"array input must be uint8, got {array.dtype}", code="not_an_image")
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return normalise(Image.fromarray(array))
    raise InputError(
        f"array input must be HxW, HxWx3 or HxWx4, got {array.shape}", code="not_an_image"
    )


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit greyscale to 0–255 by its bit depth, not by clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low or 1.0)
    else:
        top = 65535.0 if image.mode.startswith("I;16") or values.max() <= 65535 else values.max()
        scaled = values / top
    return Image.fromarray(np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8), mode="L")


def _unidentified(data: bytes, name: str) -> InputError:
    media_type = sniff(data[:_SNIFF_BYTES])
    if media_type in SUPPORTED_MEDIA_TYPES:
        # Its header says a format we decode, but no decoder could make sense of the rest.
        return InputError(
            f"{name}: the image data is truncated or corrupt (it starts like {media_type} "
            "but cannot be decoded)",
            code="corrupt_image",
        )
    if media_type is not None and media_type.startswith("image/"):
        return InputError(
            f"{name}: {media_type} images are not supported; convert it to PNG, JPEG or WebP",
            code="unsupported_format",
        )
    if media_type is not None:
        return InputError(f"{name}: this is a {media_type} file, not an image", code="not_an_image")
    if data.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or b"<svg" in data[:512].lower():
        return InputError(
            f"{name}: SVG (vector) images are not supported; export it as PNG",
            code="unsupported_format",
        )
    return InputError(
        f"{name}: not an image (the bytes match no known image format)", code="not_an_image"
    )


def probe(path: Path) -> tuple[str | None, int | None, int | None]:
    """Media type and upright size from the header alone (no decode); Nones when unknown."""
    with open(path, "rb") as file:
        media_type = sniff(file.read(_SNIFF_BYTES))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return media_type, None, None
    if orientation in (5, 6, 7, 8):  # EXIF quarter turns swap the sides
        width, height = height, width
    return media_type, width, height
