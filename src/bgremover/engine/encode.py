"""Saving: encode the result and write it so that a file either is complete or isn't there."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from .errors import OutputError
from .options import OutputFormat
from .png import write_png


def encode(image: Image.Image, fmt: OutputFormat, *, quality: int = 90) -> bytes:
    """The file's bytes; PNG and the mask are written by ``png.write_png`` (fast enough to
    hide behind the model), JPEG and WebP by Pillow."""
    if fmt not in (OutputFormat.JPEG, OutputFormat.WEBP):
        return write_png(image)
    buffer = io.BytesIO()
    if fmt is OutputFormat.JPEG:
        rgb = image if image.mode == "RGB" else _flatten(image)
        rgb.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, "WEBP", quality=quality, method=4, exact=False)
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"{path.parent}: cannot write output there ({exc.strerror}); choose another "
            "directory with -o or fix its permissions"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot be written ({exc.strerror})") from None


def _flatten(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
