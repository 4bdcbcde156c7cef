"""Cluster benchmark: what distribution through Celery costs, against one machine's executor.

Every side runs as real OS processes on this machine, against the same services (PostgreSQL
127.0.0.1:5432, Redis 127.0.0.1:6379) and one fresh database per side; each number is
printed beside its baseline measured in the same run. The machine has 2 cores shared with
whatever else runs: the CPU other processes used during each side is printed too.

- ``cheap``: a tiny ISNet-shaped model (no MatMul: the engine costs next to nothing) on a
  small PNG, 200 jobs: jobs/s with ``bgremover serve`` running 1, 2 and 4 local worker
  processes, against ``bgremover serve`` with Redis plus one ``bgremover worker`` of 1, 2
  and 4 processes: the overhead of distribution, as a ratio.
- ``model``: the real model, a 20-photo batch (``samples/*.jpg`` repeated, resized to 1–3 MP):
  ``bgremover serve`` alone (2 worker processes) against ``bgremover serve`` with Redis plus
  ``bgremover worker --concurrency 2`` (goal ≥ 0.95×).
- ``latency``: worker → SSE client latency of ``job.progress`` events (the worker stamps
  ``sent_at`` when the engine reports; the client notes when the event arrives), p50/p99,
  through the Redis stream, beside the same for one machine; measured during ``model``.

Run it by hand from the repository root (not a test; about 5 minutes on 2 cores):

    .venv/bin/python bench/cluster_bench.py
    .venv/bin/python bench/cluster_bench.py --only cheap
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: reuse the tests' process helpers

from bench.common import (  # noqa: E402
    UI_HEADER,
    OthersCpuSeconds,
    Server,
    percentile,
    postgres_database,
)
from bench.tiny_model import build_tiny_model  # noqa: E402
from tests.cluster_support import REDIS_URL, Listener, ensure_service, worker  # noqa: E402

CHEAP_JOBS = 100
MODEL_PHOTOS = 20


@contextmanager
def side(root: Path, cluster: int | None, env: dict[str, str]) -> Iterator[tuple[str, list[int]]]:
    """A served process, local with its own workers (``cluster`` None), or with Redis plus
    one ``bgremover worker`` of ``cluster`` processes. Yields its URL and the pids to count."""
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        env = {**env, "BGREMOVER_DATABASE_URL": database}
        if cluster is not None:
            env |= {
                "BGREMOVER_REDIS_URL": REDIS_URL,
                "BGREMOVER_REDIS_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
                "BGREMOVER_STORAGE_URL": (root / "store").as_uri(),
            }
        web_root = root / f"web-{uuid.uuid4().hex[:6]}"
        web_root.mkdir()
        server = Server(web_root, None, settings=env, slots=None)
        stack.callback(server.stop)
        server.wait_ready(120)
        url, pids = server.url, [server.process.pid]
        if cluster is not None:
            worker_root = root / f"worker-{uuid.uuid4().hex[:6]}"
            worker_root.mkdir()
            pids.append(stack.enter_context(worker(worker_root, env, cluster)).pid)
            wait_workers(url, cluster)
        else:
            wait_workers(url, int(env["BGREMOVER_MAX_CONCURRENT_JOBS"]))
        yield url, pids


def wait_workers(url: str, count: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/api/stats", timeout=30).json()
        if len(stats["workers"]) >= count:
            # Local workers count before their model loads; give them a first job's worth.
            return
        time.sleep(0.2)
    raise SystemExit(f"{url}: {count} workers never came up")


def run_batch(url: str, files: list[Path]) -> tuple[float, list[float]]:
    """Upload ``files`` as one batch; seconds until every job ended (from the upload) and
    the worker → client latencies of the progress events seen meanwhile."""
    listener = Listener(url)
    listener.wait_for("the snapshot", lambda seen: seen)
    parts = [("files", (p.name, p.read_bytes(), "image/png")) for p in files]
    started = time.monotonic()
    created = httpx.post(f"{url}/api/batches", files=parts, headers=UI_HEADER, timeout=120)
    created.raise_for_status()
    batch_id = created.json()["batch"]["id"]

    def ended(seen: list[dict[str, Any]]) -> bool:
        return any(
            e["event"] == "batch.updated"
            and e["data"]["batch"]["id"] == batch_id
            and e["data"]["batch"]["status"] in ("completed", "failed", "cancelled")
            and e["data"]["batch"]["counts"]["total"] == len(files)
            and e["data"]["batch"]["counts"]["pending"] + e["data"]["batch"]["counts"]["processing"]
            == 0
            for e in seen[-50:]
        )

    listener.wait_for("the batch's end", ended)
    wall = time.monotonic() - started
    latencies = [
        e["received_at"] - e["data"]["sent_at"]
        for e in listener.events
        if e["event"] == "job.progress" and e["data"].get("sent_at")
    ]
    listener.close()
    return wall, latencies


def part_cheap(root: Path) -> None:
    model = build_tiny_model(root / "cheap.onnx", matmuls=0)
    png = root / "tiny.png"
    with Image.open(ROOT / "samples" / "coffee.jpg") as image:
        image.convert("RGB").crop((0, 0, 16, 16)).save(png)
    files = []
    for index in range(CHEAP_JOBS):
        copy = root / f"cheap-{index:03}.png"
        copy.write_bytes(png.read_bytes())
        files.append(copy)
    print(f"\n== cheap engine: {CHEAP_JOBS} jobs, jobs/s (ratio = Celery / local)")
    for processes in (1, 2, 4):
        env = {"BGREMOVER_MODEL_PATH": str(model), "BGREMOVER_MAX_CONCURRENT_JOBS": str(processes)}
        rates = {}
        for name, cluster in (("local", None), ("celery", processes)):
            with side(root, cluster, env) as (url, pids):
                run_batch(url, files[:4])  # warm: models loaded, first runs done
                meter = OthersCpuSeconds()
                wall, _ = run_batch(url, files)
                rates[name] = CHEAP_JOBS / wall
                others = meter.seconds(pids)
            print(f"  {processes} process(es) {name:>6}: {rates[name]:6.1f} jobs/s"
                  f"  (other processes used {others:.1f} CPU-s)")  # fmt: skip
        print(f"  {processes} process(es)  ratio: {rates['celery'] / rates['local']:.2f}×")


def model_photos(root: Path) -> list[Path]:
    sources = sorted((ROOT / "samples").glob("*.jpg"))
    photos = []
    for index in range(MODEL_PHOTOS):
        with Image.open(sources[index % len(sources)]) as image:
            megapixels = 1 + (index % 3)  # 1, 2, 3 MP
            scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
            size = (round(image.width * scale), round(image.height * scale))
            path = root / f"photo-{index:02}.png"
            image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path)
            photos.append(path)
    return photos


def part_model(root: Path) -> None:
    photos = model_photos(root)
    print(f"\n== real model: {MODEL_PHOTOS} photos of 1–3 MP, images/s")
    env = {"BGREMOVER_MAX_CONCURRENT_JOBS": "2"}
    results = {}
    for name, cluster in (("serve alone", None), ("serve + worker -c 2", 2)):
        with side(root, cluster, env) as (url, pids):
            run_batch(url, photos[:2])  # warm
            meter = OthersCpuSeconds()
            wall, latencies = run_batch(url, photos)
            others = meter.seconds(pids)
        results[name] = (MODEL_PHOTOS / wall, latencies)
        print(f"  {name:>20}: {MODEL_PHOTOS / wall:.3f} images/s ({wall:.1f} s)"
              f"  (other processes used {others:.1f} CPU-s)")  # fmt: skip
    alone, cluster_rate = results["serve alone"][0], results["serve + worker -c 2"][0]
    print(f"  ratio: {cluster_rate / alone:.2f}× (goal ≥ 0.95×)")
    print("\n== worker → SSE client latency of job.progress, ms")
    for name, (_, latencies) in results.items():
        if latencies:
            p50, p99 = 1000 * statistics.median(latencies), 1000 * percentile(latencies, 99)
            print(f"  {name:>20}: p50 {p50:6.1f}  p99 {p99:6.1f}  ({len(latencies)} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=["cheap", "model"])
    args = parser.parse_args()
    parts = args.only or ["cheap", "model"]
    ensure_service("redis", 6379)
    with tempfile.TemporaryDirectory(prefix="bgremover-cluster-bench-") as folder:
        root = Path(folder)
        if "cheap" in parts:
            part_cheap(root)
        if "model" in parts:
            part_model(root)


if __name__ == "__main__":
    main()
