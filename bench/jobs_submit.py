"""Part 1 (a) and (c) of ``jobs_bench.py``: submitting 10,000 jobs."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from pathlib import Path

from bgremover.system import JobSystem
from common import MIB, REPO, OthersCpuShare, stage_uploads
from jobs_common import (
    TRACE_FRAMES,
    TRACED_JOBS,
    Plan,
    database_bytes,
    ms,
    report_contention,
    rss,
    settings_for,
)
from report import note, row, section

# --------------------------------------------------------------------------------------------
# Part 1 (a) and (c): submitting 10,000 jobs


def part_submit(plan: Plan, root: Path, tiny_model: Path, tiny_png: Path) -> None:
    section(f"1a/1c  submitting {plan.submit_jobs:,} jobs (service only, nothing running)")
    meter = OthersCpuShare()
    settings = settings_for(root / "submit", model_path=tiny_model)
    system = JobSystem(settings)  # not started: no workers, no scheduler
    try:
        service = system.service
        service.create_batch(stage_uploads(root / "staging", [tiny_png]))  # warm-up
        rss_before, db_before = rss(), sum(database_bytes(settings))
        seq_before = system.bus.last_seq
        uploads = stage_uploads(root / "staging", [tiny_png] * plan.submit_jobs)
        started = time.perf_counter()
        created = service.create_batch(uploads)
        submit_s = time.perf_counter() - started
        rss_held = rss()
        batch_id = created.batch.id
        del created
        rss_after = rss()
        main_db, wal = database_bytes(settings)
        with system.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpointed, _ = database_bytes(settings)
        n = plan.submit_jobs
        row("create_batch wall time", f"{submit_s:.2f} s  ({n / submit_s:,.0f} jobs/s)")
        row(
            "RSS growth of this process, BatchCreated held",
            f"{(rss_held - rss_before) / MIB:.1f} MiB",
        )
        row(
            "RSS growth after dropping BatchCreated",
            f"{(rss_after - rss_before) / MIB:.1f} MiB  "
            f"({(rss_after - rss_before) / n / 1024:.2f} KiB/job)",
        )
        note(
            "RSS keeps what the allocator got during the call; what the service itself "
            "still holds is the tracemalloc figure below (the in-memory bus keeps the last "
            f"10,000 events for replay; this call published {system.bus.last_seq - seq_before:,})"
        )
        row("SQLite file + WAL after the batch", f"{main_db / MIB:.1f} + {wal / MIB:.1f} MiB")
        row(
            "SQLite file after a WAL checkpoint",
            f"{checkpointed / MIB:.1f} MiB  ({(checkpointed - db_before) / n:.0f} B/job)",
        )
        measure_queries(system, batch_id)
    finally:
        system.stop()
    retained_by_site(root / "submit-traced", tiny_model, tiny_png, TRACED_JOBS)
    report_contention(meter)


def retained_by_site(data_dir: Path, tiny_model: Path, tiny_png: Path, n: int) -> None:
    """The same submission again on a fresh database, under tracemalloc: the Python memory
    still held once the caller has dropped the result, by allocating line."""
    system = JobSystem(settings_for(data_dir, model_path=tiny_model))
    try:
        system.service.create_batch(stage_uploads(data_dir / "staging", [tiny_png]))
        uploads = stage_uploads(data_dir / "staging", [tiny_png] * n)
        gc.collect()
        tracemalloc.start(TRACE_FRAMES)
        try:
            created = system.service.create_batch(uploads)
            del created
            gc.collect()
            snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    finally:
        system.stop()
    by_site = project_sites(snapshot)
    kept = sum(by_site.values())
    row(
        f"heap kept after a {n:,}-job create_batch (tracemalloc)",
        f"{kept / MIB:.1f} MiB  ({kept / n / 1024:.2f} KiB/job)",
    )
    for site, size in sorted(by_site.items(), key=lambda item: -item[1])[:3]:
        row(f"  allocated under {site}", f"{size / MIB:.1f} MiB")


def project_sites(snapshot: tracemalloc.Snapshot) -> dict[str, int]:
    """Live bytes per innermost line of this project's code that led to the allocation."""
    sites: dict[str, int] = {}
    source = str(REPO / "src")
    for stat in snapshot.statistics("traceback"):
        frames = [f for f in stat.traceback if f.filename.startswith(source)]
        frame = frames[-1] if frames else stat.traceback[-1]
        where = f"{Path(frame.filename).relative_to(source) if frames else frame.filename}"
        key = f"{where}:{frame.lineno}"
        sites[key] = sites.get(key, 0) + stat.size
    return sites


def measure_queries(system: JobSystem, batch_id: str) -> None:
    """What reads and claims cost with the big batch queued."""
    service = system.service
    started = time.perf_counter()
    snapshot = service.active_snapshot()
    row(
        f"active_snapshot() (every SSE connect), {len(snapshot.jobs):,} active jobs",
        f"{time.perf_counter() - started:.2f} s",
    )
    started = time.perf_counter()
    service.get_batch(batch_id)
    row("get_batch() of the big batch", ms(time.perf_counter() - started))
    claims = []
    for _ in range(20):
        started = time.perf_counter()
        service.claim_next()
        claims.append(time.perf_counter() - started)
    row("claim_next() with the batch queued (20 claims)", f"mean {ms(statistics.mean(claims))}")
