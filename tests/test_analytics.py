"""Analytics on a real database (SQLite file and PostgreSQL): jobs run through the real service
with a controlled clock and known stage timings, so every aggregate has one right answer."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select

from bgremover.jobs.analytics import MAX_WINDOW, InvalidWindow, window_start
from bgremover.jobs.tables import JobRow, StageDurationRow
from bgremover.workers.base import Failed

from .jobs_support import Harness, claim, run_to_completion
from .serving import UI, follow, job_ended, served

STAGES = ["Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"]


def timings(scale: float) -> dict[str, float]:
    """Stage seconds of one run: the AI model dominates, as on a real machine."""
    shares = [0.05, 0.1, 1.0, 0.04, 0.02, 0.2]
    return {stage: round(share * scale, 4) for stage, share in zip(STAGES, shares, strict=True)}


def p90(values: list[float]) -> float:
    """The 90th percentile interpolated between ranks (numpy's and percentile_cont's way)."""
    return (
        statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    )


@pytest.fixture
def big_photo(tmp_path: Path, photos: dict[str, Path]) -> Path:
    """A 1.6-megapixel JPEG: the 1–4 MP size bucket."""
    path = tmp_path / "big.jpg"
    Image.open(photos["coffee.jpg"]).resize((1600, 1000)).save(path, quality=90)
    return path


def test_analytics_reports_hours_failures_stages_sizes_queue_wait_and_eta_error(
    harness: Harness, photos: dict[str, Path], big_photo: Path
) -> None:
    h = harness
    coffee = photos["coffee.jpg"]
    h.clock.now = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)
    # Before the window: a slow run that must not show anywhere.
    h.service.create_batch(h.uploads(coffee))
    h.clock.advance(seconds=5)
    run_to_completion(h, claim(h), timings=timings(50.0))

    h.clock.now = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    first = h.service.create_batch(h.uploads(coffee, coffee, coffee, big_photo)).jobs
    runs = {}  # job id -> (seconds it ran, stage timings)
    for job, wait_until, seconds in ((0, 10, 2), (1, 12, 4), (3, 16, 8)):
        h.clock.now = datetime(2026, 11, 29, 10, 0, wait_until, tzinfo=UTC)
        if job == 3:  # the third coffee fails first: it is ahead of the big photo
            failed = claim(h)
            assert failed.job_id == first[2].id
            h.clock.advance(seconds=1)
            h.service.handle(
                Failed(failed.job_id, failed.dispatch_id, "corrupt_image", "coffee.jpg: truncated")
            )
        item = claim(h)
        assert item.job_id == first[job].id
        h.clock.advance(seconds=seconds)
        size = (1600, 1000) if job == 3 else (600, 400)
        runs[item.job_id] = (seconds, timings(seconds / 1.5))
        run_to_completion(h, item, size=size, timings=runs[item.job_id][1])

    h.clock.now = datetime(2026, 11, 29, 11, 30, tzinfo=UTC)
    second = h.service.create_batch(h.uploads(coffee, coffee, coffee, coffee)).jobs
    h.clock.advance(seconds=30)
    item = claim(h)
    h.clock.advance(seconds=6)
    runs[item.job_id] = (6, timings(4.0))
    run_to_completion(h, item, timings=runs[item.job_id][1])
    h.service.cancel_job(second[1].id)  # never started: no queue wait
    for code, message in (("not_an_image", "letter.jpg"), ("corrupt_image", "last.jpg: bad")):
        failing = claim(h)
        h.clock.advance(seconds=1)
        h.service.handle(Failed(failing.job_id, failing.dispatch_id, code, message))
    now = h.clock.now  # 11:30:38

    report = h.service.analytics("2h")

    assert report.since == now - timedelta(hours=2) and report.until == now
    assert [(r.hour.hour, r.completed, r.failed, r.cancelled) for r in report.hours] == [
        (9, 0, 0, 0),
        (10, 3, 1, 0),
        (11, 1, 2, 1),
    ]
    assert (report.totals.completed, report.totals.failed, report.totals.cancelled) == (4, 3, 1)
    assert [(f.code, f.count, f.message) for f in report.failures] == [
        ("corrupt_image", 2, "last.jpg: bad"),  # the latest message of the most frequent
        ("not_an_image", 1, "letter.jpg"),
    ]

    assert [s.stage for s in report.stages] == STAGES
    for spread in report.stages:
        samples = [stage_timings[spread.stage] for _, stage_timings in runs.values()]
        assert spread.jobs == 4
        assert spread.median == pytest.approx(statistics.median(samples), abs=1e-3)
        assert spread.p90 == pytest.approx(p90(samples), abs=1e-3)

    assert [(s.bucket, s.label, s.jobs) for s in report.sizes] == [
        (0, "< 1 MP", 3),
        (1, "1–4 MP", 1),
    ]
    small, big = report.sizes
    assert (small.median, small.p90) == pytest.approx((4.0, p90([2.0, 4.0, 6.0])), abs=1e-3)
    assert (big.median, big.p90) == pytest.approx((8.0, 8.0), abs=1e-3)

    waits = {10: [10.0, 12.0, 16.0, 17.0], 11: [30.0, 36.0, 37.0]}  # created -> started
    every_wait = waits[10] + waits[11]
    wait = report.queue_wait
    assert wait.overall.jobs == 7
    assert wait.overall.median == pytest.approx(statistics.median(every_wait), abs=1e-3)
    assert wait.overall.p90 == pytest.approx(p90(every_wait), abs=1e-3)
    assert [(w.hour.hour, w.jobs) for w in wait.hours] == [(10, 4), (11, 3)]
    for spread in wait.hours:
        assert spread.median == pytest.approx(statistics.median(waits[spread.hour.hour]), abs=1e-3)
        assert spread.p90 == pytest.approx(p90(waits[spread.hour.hour]), abs=1e-3)

    predicted = _predictions(h, list(runs))
    errors = [(predicted[job] - runs[job][0]) / runs[job][0] for job in runs]
    eta = report.eta
    assert eta.jobs == 4
    assert eta.median_error == pytest.approx(statistics.median(map(abs, errors)), abs=1e-3)
    assert eta.p90_error == pytest.approx(p90([abs(e) for e in errors]), abs=1e-3)
    assert eta.mean_bias == pytest.approx(statistics.fmean(errors), abs=1e-3)
    assert [p.actual for p in eta.points] == [2.0, 4.0, 8.0, 6.0]  # oldest first
    assert [p.predicted for p in eta.points] == pytest.approx(
        [predicted[job] for job in runs], abs=1e-3
    )


def _predictions(h: Harness, job_ids: list[str]) -> dict[str, float]:
    """What the service predicted for each run when it started, read straight from the table."""
    with h.service._transactions() as db:
        rows = db.execute(
            select(JobRow.id, JobRow.predicted_seconds).where(JobRow.id.in_(job_ids))
        ).all()
    return {job_id: float(seconds) for job_id, seconds in rows}


def test_an_empty_window_has_every_hour_and_no_samples(harness: Harness) -> None:
    report = harness.service.analytics("PT3H")  # 09:00 to 12:00: both ends' hours count
    assert [h.hour.hour for h in report.hours] == [9, 10, 11, 12]
    assert all(h.completed == h.failed == h.cancelled == 0 for h in report.hours)
    assert report.failures == [] and report.stages == [] and report.sizes == []
    assert report.queue_wait.overall.jobs == 0 and report.queue_wait.overall.median is None
    assert report.eta.jobs == 0 and report.eta.median_error is None and report.eta.points == []


def test_deleting_a_job_deletes_its_stage_durations(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    run_to_completion(h, item)
    assert _stage_rows(h, item.job_id) == len(STAGES)
    h.service.delete_job(item.job_id)
    assert _stage_rows(h, item.job_id) == 0


def _stage_rows(h: Harness, job_id: str) -> int:
    with h.service._transactions() as db:
        return int(db.scalar(select(func.count()).where(StageDurationRow.job_id == job_id)) or 0)


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "start"),
    [
        (None, NOW - timedelta(hours=24)),
        ("", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("24h", NOW - timedelta(hours=24)),
        ("7D", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("PT6H", NOW - timedelta(hours=6)),
        ("P7D", NOW - timedelta(days=7)),
        ("2026-11-30T08:00:00Z", datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),
        ("2026-11-30T09:00:00+01:00", datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),
        ("2026-11-30T08:00", datetime(2026, 11, 30, 8, 0, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
    ],
)
def test_since_takes_a_time_or_a_span_back_from_now(since: str | None, start: datetime) -> None:
    assert window_start(since, NOW) == start


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("yesterday", "is not a time"),
        ("2026-11-30T09:00:00 01:00", "write %2B"),  # a '+' that the URL turned into a space
        ("2026-13-01", "is not a time"),
        ("2026-12-01T00:00:00Z", "not in the past"),
        ("0m", "not in the past"),
        ("P0D", "not in the past"),
        ("PXD", "not an ISO 8601 duration"),
        ("91d", "more than 90 days"),
        ("999999w", "more than 90 days"),  # before year 1 if subtracted
        ("P999999999D", "more than 90 days"),
        ("0001-01-01T00:00:00+01:00", "is not a time"),  # before year 1 in UTC
        ("0001-01-01T00:00:00Z", "more than 90 days"),
    ],
)
def test_since_that_is_not_a_past_time_within_90_days_is_refused_with_the_forms_that_work(
    since: str, says: str
) -> None:
    with pytest.raises(InvalidWindow) as caught:
        window_start(since, NOW)
    assert says in str(caught.value)
    assert since.strip() in str(caught.value)


@given(
    st.text(max_size=64)
    | st.from_regex(r"\A-?P(\d{1,12}D)?(T\d{1,12}[HMS])?\Z")
    | st.from_regex(r"\A\d{1,9}[mhdwMHDW]\Z")
    | st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
)
def test_any_since_is_a_start_within_the_window_or_a_clear_refusal(since: str) -> None:
    try:
        start = window_start(since, NOW)
    except InvalidWindow as refusal:
        assert "since=" in str(refusal)
    else:
        assert NOW - MAX_WINDOW <= start < NOW


def test_the_endpoint_reports_real_runs_of_a_served_process_and_refuses_a_bad_since(
    tiny_model: Path, photos: dict[str, Path], bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    files = [photos["coffee.jpg"], photos["chelsea.jpg"], bad_inputs["corrupt_image_jpeg"]]
    with served(tmp_path / "data", env={"BGREMOVER_MODEL_PATH": str(tiny_model)}) as (url, _):
        created = httpx.post(
            f"{url}/api/batches",
            files=[("files", (f.name, f.read_bytes(), "application/octet-stream")) for f in files],
            headers=UI,
            timeout=60,
        )
        assert created.status_code == 201, created.text
        ids = {job["id"] for job in created.json()["jobs"]}
        follow(url, job_ended(ids))
        jobs = [httpx.get(f"{url}/api/jobs/{job_id}").json() for job_id in ids]
        response = httpx.get(f"{url}/api/analytics", params={"since": "1h"})
        refused = {
            since: httpx.get(f"{url}/api/analytics", params={"since": since})
            for since in ("yesterday", "2999-01-01T00:00:00Z", "400d", "x" * 65)
        }
        default = httpx.get(f"{url}/api/analytics")

    assert response.status_code == 200, response.text
    report = response.json()
    done = [j for j in jobs if j["status"] == "completed"]
    (failed,) = [j for j in jobs if j["status"] == "failed"]
    assert len(done) == 2
    assert report["totals"] == {"completed": 2, "failed": 1, "cancelled": 0}
    assert sum(hour["completed"] for hour in report["hours"]) == 2
    assert [(f["code"], f["count"]) for f in report["failures"]] == [(failed["error"]["code"], 1)]
    assert [s["stage"] for s in report["stages"]] == STAGES
    # Times are in whole milliseconds: a stage of a small photo can take less than one.
    assert all(s["jobs"] == 2 and 0 <= s["median"] <= s["p90"] for s in report["stages"])
    assert sum(s["median"] for s in report["stages"]) > 0, "no stage took any time"
    assert [(s["label"], s["jobs"]) for s in report["sizes"]] == [("< 1 MP", 2)]
    assert report["queue_wait"]["overall"]["jobs"] == 3
    runs = sorted(
        datetime.fromisoformat(j["end_time"]).timestamp()
        - datetime.fromisoformat(j["start_time"]).timestamp()
        for j in done
    )
    points = report["eta"]["points"]
    assert report["eta"]["jobs"] == 2 and len(points) == 2
    assert sorted(p["actual"] for p in points) == pytest.approx(runs, abs=2e-3)
    assert all(p["predicted"] > 0 for p in points)

    for since, refusal in refused.items():
        assert refusal.status_code == 422, (since, refusal.text)
        error = refusal.json()["error"]
        assert error["code"] == ("invalid_request" if len(since) > 64 else "invalid_since")
    assert "give a time" in refused["yesterday"].json()["error"]["message"]
    assert default.status_code == 200
    assert default.json()["totals"]["completed"] == 2  # the last 24 hours
