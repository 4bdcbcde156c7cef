"""Thumbnail benchmark: what a card costs the browser, and what making its thumbnail costs.

On a 12 MP photo (the bundled coffee photo upscaled with LANCZOS to 4240×2832, saved as JPEG
at quality 92 and as HEIC by pillow-heif at quality 90, in a temporary directory):

1. Bytes sent and pixels the browser decodes for the full original (what cards loaded
   before) against ``GET /api/jobs/{id}/thumbnail?size=256`` (``engine.thumbnail``), and the
   ratio. A browser holds 4 bytes per decoded pixel.
2. Time to render the thumbnail (median of ``--repeat`` runs) with JPEG draft decoding (what
   the server does) against a full decode followed by the same resize (the baseline), and
   the ratio; HEIC has no draft mode, so its time is shown alone.

Run it by hand from the repository root (it is not a test):

    .venv/bin/python bench/thumbnail_bench.py             # ~30 s on 2 idle cores
    .venv/bin/python bench/thumbnail_bench.py --repeat 3
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bgremover.engine.decode import decode, read_source
from bgremover.engine.encode import encode
from bgremover.engine.options import OutputFormat
from bgremover.engine.thumbnail import thumbnail
from report import note, row, section  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]

SIZE = 256
MAX_PIXELS = 100_000_000


def full_decode_thumbnail(path: Path, size: int) -> bytes:
    """The baseline: decode every pixel, then resize and encode the same way."""
    data, name = read_source(path)
    image = decode(data, name=name, max_pixels=MAX_PIXELS)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(image, OutputFormat.WEBP, quality=80)


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    photo = Image.open(REPO / "samples" / "coffee.jpg").convert("RGB")
    big = photo.resize((4240, 2832), Image.Resampling.LANCZOS)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg, heic = Path(tmp) / "photo.jpg", Path(tmp) / "photo.heic"
        big.save(jpeg, "JPEG", quality=92)
        buffer = io.BytesIO()
        big.save(buffer, "HEIF", quality=90)
        heic.write_bytes(buffer.getvalue())

        section(f"What a card costs the browser (12 MP photo, thumbnail size={SIZE})")
        small = thumbnail(jpeg, SIZE, max_pixels=MAX_PIXELS)
        with Image.open(io.BytesIO(small)) as shown:
            thumb_pixels = shown.width * shown.height
        full_bytes, full_pixels = jpeg.stat().st_size, big.width * big.height
        row("full original: bytes / decoded MB", f"{full_bytes:,} / {full_pixels * 4 / 1e6:.1f}")
        row("thumbnail: bytes / decoded MB", f"{len(small):,} / {thumb_pixels * 4 / 1e6:.2f}")
        row("ratio full/thumbnail: bytes, decoded memory",
            f"{full_bytes / len(small):.0f}×, {full_pixels / thumb_pixels:.0f}×")  # fmt: skip

        section(f"Rendering one thumbnail (median of {args.repeat})")
        drafted = median_seconds(lambda: thumbnail(jpeg, SIZE, max_pixels=MAX_PIXELS), args.repeat)
        baseline = median_seconds(lambda: full_decode_thumbnail(jpeg, SIZE), args.repeat)
        row("JPEG, full decode then resize (baseline)", f"{baseline * 1000:.0f} ms")
        row("JPEG, draft decode (engine.thumbnail)", f"{drafted * 1000:.0f} ms")
        row("ratio baseline/draft", f"{baseline / drafted:.1f}×")
        heic_time = median_seconds(lambda: thumbnail(heic, SIZE, max_pixels=MAX_PIXELS), 3)
        row("HEIC (no draft mode; full decode)", f"{heic_time * 1000:.0f} ms")
        note("rendered once per file and size; later requests are served from the cache file")


if __name__ == "__main__":
    main()
