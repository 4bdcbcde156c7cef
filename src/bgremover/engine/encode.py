"""Saving: encode the result and write it so that a file either is complete or isn't there."""

from __future__ import annotations

import contextlib
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
    try:
        if fmt is OutputFormat.JPEG:
            rgb = image if image.mode == "RGB" else _flatten(image)
            rgb.save(buffer, "JPEG", quality=quality, optimize=True)
        else:
            image.save(buffer, "WEBP", quality=quality, method=4, exact=False)
    except (OSError, ValueError) as exc:  # the image, not the disk: too large for the format
        width, height = image.size
        raise OutputError(
            f"a {width}×{height} result cannot be saved as {fmt.value.upper()} ({exc}); "
            "choose PNG or a smaller image"
        ) from None
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
            "directory with -o or fix its permissions",
            errno=exc.errno,
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would hide it from others
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot be written ({exc.strerror})", errno=exc.errno) from None


def _umask() -> int:
    """The process's umask, read from /proc where Linux shows it (setting it to read it back
    would race with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _flatten(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
