"""Image formats beyond Pillow's built-in ones: HEIC/HEIF (what phones save) through
``pillow-heif``, and AVIF through Pillow's own decoder (or ``pillow-avif-plugin`` where Pillow
was built without libavif).

Both report the upright picture: libheif applies the HEIF rotation boxes and pillow-heif then
resets the EXIF orientation to 1, while Pillow's AVIF keeps the EXIF tag for
``ImageOps.exif_transpose``; 10-bit and 12-bit pixels come out as 8-bit RGB(A).
"""

from __future__ import annotations

import functools

import pillow_heif
from PIL import features

# ISO base media file "ftyp" brands (bytes 8–12 and the compatible list after them).
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})


@functools.cache
def register() -> frozenset[str]:
    """Register the extra decoders with Pillow once per process; the media types they add."""
    pillow_heif.register_heif_opener()
    added = {"image/heic", "image/heif"}
    if _avif_available():
        added.add("image/avif")
    return frozenset(added)


def _avif_available() -> bool:
    if features.check("avif"):
        return True
    try:
        import pillow_avif  # noqa: F401  # registers itself with Pillow on import
    except ImportError:
        return False
    return True


def sniff_isobmff(header: bytes) -> str | None:
    """``image/avif``, ``image/heic`` or ``image/heif`` from an ISO-BMFF ``ftyp`` box.

    Looks at the compatible brands too: an iPhone's 10-bit photo says ``heix`` and many
    encoders say ``mif1`` first and ``avif`` or ``heic`` after it.
    """
    if header[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(header[:4], "big")
    brands = {header[8:12]}
    brands.update(header[i : i + 4] for i in range(16, min(box_size, len(header)) - 3, 4))
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if brands & _HEIC_BRANDS:
        return "image/heic"
    if brands & _HEIF_BRANDS:
        return "image/heif"
    return None
