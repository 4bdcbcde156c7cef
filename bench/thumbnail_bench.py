"""Thumbnail benchmark: what a card costs the browser, and what making its thumbnails costs.

On a 12 MP photo (the bundled coffee photo upscaled with LANCZOS to 4240×2832, saved as JPEG
at quality 92 and as HEIC by pillow-heif at quality 90, in a temporary directory):

1. Bytes sent and pixels the browser decodes for the full original (what cards loaded
   before) against ``GET /api/jobs/{id}/thumbnail?size=256`` (``engine.thumbnail``), and the
   ratio. A browser holds 4 bytes per decoded pixel.
2. Time to render the thumbnail (median of ``--repeat`` runs) with JPEG draft decoding (what
   the server does) against a full decode followed by the same resize (the baseline), and
   the ratio; HEIC has no draft mode, so its time is shown alone.
3. The many-sizes attack: ``--requests`` (250) requests for sizes spread over 16–1024 of
   the JPEG, then of the same photo as PNG (as results are stored). Baseline: every size
   rendered from the source and cached as its own file (what the server did before); now:
   ``web.thumbnails.thumbnail_of`` (renders at ``engine.thumbnail.SIZES`` only, any other
   size made from the next one up, in a ``ThumbnailCache``). Cache bytes and CPU seconds
   of each, and the ratios.
4. Peak memory of 4 thumbnail requests at once for a 36 MP PNG (7360×4912, no draft mode):
   each run in a fresh process, renders through ``RenderSlots`` with 4 slots (the baseline:
   nothing stopped four at once) and with the default ``thumbnail_renders`` (2). Resident
   memory before the renders and at the peak (VmHWM).

Run it by hand from the repository root (it is not a test):

    .venv/bin/python bench/thumbnail_bench.py             # ~5 min on 2 idle cores
    .venv/bin/python bench/thumbnail_bench.py --repeat 3 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from bgremover import Settings
from bgremover.engine.decode import decode, read_source
from bgremover.engine.encode import encode, write_atomic
from bgremover.engine.options import OutputFormat
from bgremover.engine.thumbnail import thumbnail
from bgremover.storage import LocalStorage
from bgremover.storage.files import FileStore
from bgremover.web.thumbnails import RenderSlots, thumbnail_of
from report import note, row, section  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]

SIZE = 256
MAX_PIXELS = 100_000_000
BIG_PNG = (7360, 4912)
"""36 MP, as a camera's: PNG has no reduced-scale decode, so each render holds all of it."""
PARALLEL_SIZES = (128, 256, 512, 1024)


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
    parser.add_argument("--requests", type=int, default=250)
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

        png = Path(tmp) / "photo.png"
        big.save(png, "PNG", compress_level=1)  # how results are stored: no draft decode
        many_sizes(jpeg, "12 MP JPEG (an original)", Path(tmp) / "jpeg", args.requests)
        many_sizes(png, "12 MP PNG (a result)", Path(tmp) / "png", args.requests)
        parallel_memory(Path(tmp), photo)


def attack_sizes(count: int) -> list[int]:
    """``count`` distinct sizes spread evenly over the API's 16–1024."""
    return sorted({round(16 + i * 1008 / max(count - 1, 1)) for i in range(count)})


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.webp"))


def cpu_seconds(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def many_sizes(source: Path, what: str, tmp: Path, count: int) -> None:
    sizes = attack_sizes(count)
    section(f"{len(sizes)} requests of distinct sizes 16–1024 for one {what}")
    tmp.mkdir()
    before = tmp / "before"

    def every_size_cached() -> None:  # the old route: one render from the source per size
        for size in sizes:
            write_atomic(before / f"{size}.webp", thumbnail(source, size, max_pixels=MAX_PIXELS))

    files = FileStore(
        LocalStorage(tmp / "files"),
        tmp / "cache",
        thumbnail_cache_bytes=Settings().thumbnail_cache_bytes,
    )
    copy = tmp / source.name
    shutil.copyfile(source, copy)
    key = files.original_key(files.add_original(copy)[0])

    def through_the_cache() -> None:
        for size in sizes:
            thumbnail_of(files, key, size, max_pixels=MAX_PIXELS, scratch=tmp / "scratch")

    old_cpu, new_cpu = cpu_seconds(every_size_cached), cpu_seconds(through_the_cache)
    old_bytes, new_bytes = folder_bytes(before), folder_bytes(files.thumbnails.root)
    row("baseline (a render and a file per size): cache bytes, CPU",
        f"{old_bytes / 1e6:.1f} MB, {old_cpu:.1f} s")  # fmt: skip
    row("now (renders at SIZES, others made from them): cache, CPU",
        f"{new_bytes / 1e6:.2f} MB, {new_cpu:.1f} s")  # fmt: skip
    row("ratio baseline/now: cache bytes, CPU",
        f"{old_bytes / new_bytes:.0f}×, {old_cpu / new_cpu:.1f}×")  # fmt: skip


def memory_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"{field} is not in /proc/self/status")


async def parallel_renders(png: Path, slots: int) -> None:
    """What the route does for 4 requests at once: each takes a render slot."""
    gate = RenderSlots(slots, wait_s=600)

    async def one(size: int) -> None:
        async with gate.taken():
            await asyncio.to_thread(thumbnail, png, size, max_pixels=MAX_PIXELS)

    await asyncio.gather(*(one(size) for size in PARALLEL_SIZES))


def renders_child(png: Path, slots: int) -> None:
    """Run in a fresh process: prints resident MB before and at the peak."""
    base = memory_mb("VmRSS")
    asyncio.run(parallel_renders(png, slots))
    print(f"{base:.0f} {memory_mb('VmHWM'):.0f}")


def parallel_memory(tmp: Path, photo: Image.Image) -> None:
    png = tmp / "big.png"
    photo.resize(BIG_PNG, Image.Resampling.BILINEAR).save(png, "PNG", compress_level=1)
    default = Settings().thumbnail_renders
    section(f"4 thumbnail requests at once for a {BIG_PNG[0]}×{BIG_PNG[1]} PNG (fresh processes)")
    peaks = {}
    for slots, label in ((4, "baseline, nothing bounds them (4 slots)"),
                         (default, f"now, thumbnail_renders={default}")):  # fmt: skip
        run = subprocess.run(
            [sys.executable, __file__, "--renders-child", str(slots), str(png)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        base, peak = (float(v) for v in run.stdout.split())
        peaks[slots] = peak - base
        row(f"{label}: resident MB before → peak", f"{base:.0f} → {peak:.0f} (+{peak - base:.0f})")
    row("ratio of the growth baseline/now", f"{peaks[4] / peaks[default]:.1f}×")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--renders-child":
        renders_child(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        main()
