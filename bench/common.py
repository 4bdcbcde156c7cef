"""What the benchmarks share: percentiles, CPU meters, the photo set's origins, a free port,
tiny PNGs and the one way they start a ``bgremover serve`` process.

Every bench script imports these from here (``bench/`` is on ``sys.path`` when a script in it
runs), not from another script and not from ``tests/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image, ImageOps

from bgremover.jobs.schemas import Upload

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
MIB = 1024 * 1024
# What the web UI sends with requests that change something (see web/origin.py).
UI_HEADER = {"X-BGRemover-Request": "1"}
SLOTS = 2
"""``max_concurrent_jobs`` of a served system unless a bench says otherwise."""
CROP = 16
"""Side of a tiny PNG, in pixels."""
STOP_GRACE_S = 10.0
"""How long a server may take to stop on Ctrl-C before it is killed."""
RSS_EVERY_S = 0.1
JPEG_QUALITY = 92
MASK_THRESHOLD = 128
POSTGRES_ADMIN = os.environ.get(
    "BGREMOVER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""The local PostgreSQL server's admin database, where private databases are made."""
"""Alpha at and above which a pixel counts as the subject when masks are compared."""


# --------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], percent: float) -> float:
    """The ``percent`` (0-100) percentile, linearly interpolated; NaN without values."""
    return (
        float(np.percentile(np.asarray(values, dtype=float), percent)) if values else float("nan")
    )


def spread(values: Sequence[float], *, counted: bool = False) -> str:
    """p50 / p90 / p99 / max of durations in seconds, as milliseconds (with the count)."""
    if not values:
        return "no samples"
    p50, p90, p99 = (percentile(values, q) * 1000 for q in (50, 90, 99))
    text = f"p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max(values) * 1000:.1f} ms"
    return f"{text}  (n={len(values):,})" if counted else text


def mask_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """IoU at the threshold, the largest per-pixel difference (0-255) and how many pixels
    differ by more than 2."""
    fa, fb = a >= MASK_THRESHOLD, b >= MASK_THRESHOLD
    union = np.logical_or(fa, fb).sum()
    iou = 1.0 if union == 0 else float(np.logical_and(fa, fb).sum() / union)
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return iou, int(delta.max()), int((delta > 2).sum())


# --------------------------------------------------------------------------------------------
# A private PostgreSQL database (tests use it too)


@contextmanager
def postgres_database(prefix: str = "bgremover_test") -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL server (``POSTGRES_ADMIN``): its URL,
    for one test or measurement; dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# Other processes' CPU use (this is a shared machine: contention skews ratios)


def _system_busy_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersCpuShare:
    """The share of ``cores`` (default: all CPUs), 0-1, that processes other than this one
    and its reaped children used since it was made."""

    def __init__(self, cores: int | None = None) -> None:
        self._cores = cores or os.cpu_count() or 1
        self._wall = time.monotonic()
        self._busy = _system_busy_s()
        self._own = _own_cpu_s()

    def share(self) -> float:
        wall = time.monotonic() - self._wall
        others = (_system_busy_s() - self._busy) - (_own_cpu_s() - self._own)
        return max(0.0, others) / (wall * self._cores)


class OthersCpuSeconds:
    """CPU seconds that processes other than the given ones (and their children) used since
    it was made: for a bench whose measured work runs in processes it did not reap."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()

    def seconds(self, own: list[int]) -> float:
        end = psutil.cpu_times()
        busy = (end.user + end.system) - (self._start.user + self._start.system)
        mine = 0.0
        for pid in own:
            try:
                process = psutil.Process(pid)
                for p in [process, *process.children(recursive=True)]:
                    times = p.cpu_times()
                    mine += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return max(0.0, busy - mine)


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class PhotoSpec:
    """A benchmark photo: where its pixels come from and the size to write it at."""

    name: str
    origin: str
    """``samples/<file>`` or ``skimage.<function>`` (``skimage.motorcycle_left`` and
    ``skimage.motorcycle_right``: the two views of ``stereo_motorcycle``)."""
    size: tuple[int, int] | None = None
    """Width and height (centre-cropped to that aspect, LANCZOS-resized); None: as is."""


def load_origin(origin: str) -> Image.Image:
    """The RGB pixels of a bundled sample or a scikit-image sample photo."""
    if origin.startswith("samples/"):
        with Image.open(REPO / origin) as image:
            return image.convert("RGB")
    from skimage import data

    name = origin.removeprefix("skimage.")
    if name in ("motorcycle_left", "motorcycle_right"):
        array = data.stereo_motorcycle()[0 if name == "motorcycle_left" else 1]
    else:
        array = getattr(data, name)()
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def write_photo(spec: PhotoSpec, directory: Path) -> Path:
    """The photo as a JPEG in ``directory`` (a bundled sample at its own size is copied byte
    for byte)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.jpg"
    if spec.size is None and spec.origin.startswith("samples/"):
        shutil.copyfile(REPO / spec.origin, path)
        return path
    image = load_origin(spec.origin)
    if spec.size is not None:
        image = ImageOps.fit(image, spec.size, Image.Resampling.LANCZOS)
    image.save(path, "JPEG", quality=JPEG_QUALITY)
    return path


def tiny_pngs(count: int, prefix: str) -> list[tuple[str, bytes]]:
    """``count`` distinct 16×16 PNG crops of the sample photos, as (file name, bytes)."""
    photos = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    if not photos:
        raise SystemExit(f"no sample photos in {SAMPLES}")
    files = []
    for index in range(count):
        photo = photos[index % len(photos)]
        cells_x = photo.width // CROP
        cell = (index // len(photos)) * 7919  # a prime stride spreads crops over the photo
        x = (cell % cells_x) * CROP
        y = ((cell // cells_x) * CROP) % (photo.height - CROP)
        buffer = BytesIO()
        photo.crop((x, y, x + CROP, y + CROP)).save(buffer, "PNG")
        files.append((f"{prefix}-{index:04d}.png", buffer.getvalue()))
    return files


# --------------------------------------------------------------------------------------------
# The server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m bgremover serve`` in its own process group; stopped (and killed if it must
    be, workers included) by ``stop``, which is safe to call twice."""

    def __init__(
        self,
        data_dir: Path,
        model: Path | None,
        *,
        settings: dict[str, str] | None = None,
        slots: int | None = SLOTS,
    ) -> None:
        """``model`` None serves the registered model; ``settings`` are more environment
        variables (``{"BGREMOVER_X": "1"}``); ``slots`` its ``max_concurrent_jobs`` (None:
        the server's default)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        env = {
            **os.environ,
            "BGREMOVER_DATA_DIR": str(data_dir),
            "BGREMOVER_MAX_CONNECTIONS": "100000",  # measure the server, not its caps
            "BGREMOVER_MAX_EVENT_STREAMS_PER_CLIENT": "100000",  # every client is 127.0.0.1
            "NO_COLOR": "1",
            **({"BGREMOVER_MAX_CONCURRENT_JOBS": str(slots)} if slots is not None else {}),
            **({"BGREMOVER_MODEL_PATH": str(model)} if model is not None else {}),
            **(settings or {}),
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bgremover", "serve", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.process.pid)
        self._known_children: dict[int, psutil.Process] = {}
        self._stopped = False
        self.exit_code: int | None = None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s\n{self.tail()}")

    def children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            for child in self.ps.children(recursive=True):
                self._known_children.setdefault(child.pid, child)
        return [c for c in self._known_children.values() if c.is_running()]

    def tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(f"    | {line}" for line in text[-lines:])

    def stop(self) -> int | None:
        """Ctrl-C, then SIGKILL to the whole group after a grace period. The exit code of a
        graceful stop, None when it had to be killed."""
        if self._stopped:
            return self.exit_code
        children = self.children()
        code: int | None = None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                code = self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                code = None
        else:
            code = self.process.returncode
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._log.close()
        self._stopped, self.exit_code = True, code
        return code


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


class ResourceSampler:
    """Samples the server's RSS (alone and with its children) on a thread."""

    def __init__(self, server: Server, every: float = RSS_EVERY_S) -> None:
        self._server = server
        self._every = every
        self.peak_main = 0
        self.peak_total = 0
        self.peak_threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> tuple[int, int]:
        """RSS of the server process, and of it with all its children, now."""
        try:
            main = self._server.ps.memory_info().rss
            threads = self._server.ps.num_threads()
        except psutil.Error:
            return 0, 0
        total = main
        for child in self._server.children():
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        self.peak_main = max(self.peak_main, main)
        self.peak_total = max(self.peak_total, total)
        self.peak_threads = max(self.peak_threads, threads)
        return main, total

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def __enter__(self) -> ResourceSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def stage_uploads(staging: Path, sources: Iterable[Path]) -> list[Upload]:
    """Copies in a staging folder, as the web layer hands uploads to ``create_batch``."""
    staging.mkdir(parents=True, exist_ok=True)
    uploads = []
    for source in sources:
        copy = staging / uuid.uuid4().hex
        shutil.copyfile(source, copy)
        uploads.append(Upload(file_name=source.name, path=str(copy)))
    return uploads
