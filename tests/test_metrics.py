"""GET /metrics as Prometheus reads it (``prometheus_client``'s own parser): the numbers move
as jobs run, every web process on one database reports the same totals, the token guards it,
and the Grafana dashboard asks only for metrics that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bgremover import Settings
from bgremover.system import JobSystem
from bgremover.web import create_app
from bgremover.workers.base import Failed

from .jobs_support import Harness, claim, run_to_completion
from .serving import UI, job_ended, served, sse_events
from .waiting import until

TOKEN = "mT3q9xVb2LkP8wRz5NcY7hJd4FsA6gUe1oIiKlQpZxE"
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "bgremover.json"
GLOBAL = (
    "bgremover_jobs", "bgremover_jobs_completed", "bgremover_jobs_failed",
    "bgremover_job_run_seconds", "bgremover_job_queue_wait_seconds", "bgremover_stage_seconds",
    "bgremover_eta_error_ratio", "bgremover_webhook_attempts", "bgremover_webhook_deliveries",
    "bgremover_queue_paused", "bgremover_batches_paused",
)  # fmt: skip
"""The families read from the database: the same on every process of a deployment."""

LOCAL = "http://localhost"
Scrape = dict[str, list[Sample]]


def parse(text: str) -> Scrape:
    """Samples by family name."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(scrape: Scrape, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 if none)."""
    return sum(
        s.value
        for samples in scrape.values()
        for s in samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def scrape_of(client: TestClient | httpx.Client) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


@contextmanager
def idle_app(settings: Settings, **headers: str) -> Iterator[TestClient]:
    """The app with a job system that runs nothing (its workers are never started): a web
    process that only answers."""
    system = JobSystem(settings)
    try:
        with TestClient(create_app(settings, system=system), base_url=LOCAL, headers=headers) as c:
            yield c
    finally:
        system.service.close()


def no_streams(client: httpx.Client) -> Scrape | None:
    """A scrape that counts no live event stream, or None."""
    found = scrape_of(client)
    return None if value(found, "bgremover_sse_clients") else found


@pytest.fixture
def app(harness: Harness) -> Iterator[TestClient]:
    with idle_app(harness.settings) as client:
        yield client


def test_totals_and_histograms_count_each_run_in_its_bucket_and_never_go_down(
    harness: Harness, app: TestClient, photos: dict[str, Path]
) -> None:
    h = harness
    coffee = photos["coffee.jpg"]
    before = scrape_of(app)
    jobs = h.service.create_batch(h.uploads(coffee, coffee, coffee)).jobs
    h.clock.advance(seconds=10)  # queue wait of the first run: 10 s (the 15 s bucket)
    item = claim(h)
    h.clock.advance(seconds=4)  # its run: 4 s (the 5 s bucket)
    timings = {"Loading": 0.02, "AI model": 3.0, "Saving": 0.3}
    run_to_completion(h, item, timings=timings)
    failing = claim(h)  # waited 14 s
    h.clock.advance(seconds=1)
    h.service.handle(Failed(failing.job_id, failing.dispatch_id, "corrupt_image", "bad.jpg"))

    after = scrape_of(app)

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("bgremover_jobs", status="completed") == 1
    assert moved("bgremover_jobs", status="failed") == 1
    assert moved("bgremover_jobs", status="pending") == 1
    assert moved("bgremover_jobs_completed_total") == 1
    assert moved("bgremover_jobs_failed_total", code="corrupt_image") == 1
    small = {"size": "< 1 MP"}
    assert moved("bgremover_job_run_seconds_count", **small) == 1
    assert moved("bgremover_job_run_seconds_sum", **small) == pytest.approx(4.0)
    assert moved("bgremover_job_run_seconds_bucket", le="3.0", **small) == 0
    assert moved("bgremover_job_run_seconds_bucket", le="5.0", **small) == 1
    assert moved("bgremover_job_queue_wait_seconds_count", **small) == 2
    assert moved("bgremover_job_queue_wait_seconds_sum", **small) == pytest.approx(24.0)
    assert moved("bgremover_job_queue_wait_seconds_bucket", le="5.0", **small) == 0
    assert moved("bgremover_job_queue_wait_seconds_bucket", le="15.0", **small) == 2
    for stage, seconds in timings.items():
        assert moved("bgremover_stage_seconds_count", stage=stage) == 1
        assert moved("bgremover_stage_seconds_sum", stage=stage) == pytest.approx(seconds)
    assert moved("bgremover_stage_seconds_bucket", stage="AI model", le="2.5") == 0
    assert moved("bgremover_stage_seconds_bucket", stage="AI model", le="5.0") == 1
    assert moved("bgremover_eta_error_ratio_count") == 1
    assert moved("bgremover_eta_error_ratio_bucket", le="+Inf") == 1

    # Deleting the jobs (as retention does) changes the gauge, never a total.
    for job in jobs:
        h.service.delete_job(job.id)
    deleted = scrape_of(app)
    assert value(deleted, "bgremover_jobs") == value(before, "bgremover_jobs")
    for family in GLOBAL[1:]:
        assert deleted[family] == after[family], family


def test_the_dashboard_asks_only_for_metrics_the_endpoint_exposes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    with idle_app(settings) as client:
        text = client.get("/metrics").text
    exposed = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",),
        }[family.type]  # fmt: skip
        exposed |= {family.name + suffix for suffix in suffixes}
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert expressions
    for expression in expressions:
        named = set(re.findall(r"\bbgremover_\w+", expression))
        assert named, expression
        assert named <= exposed, (expression, named - exposed)
    used = {name for e in expressions for name in re.findall(r"\bbgremover_\w+", e)}
    assert {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used} >= set(GLOBAL)


def test_metrics_move_as_jobs_run_agree_across_processes_and_need_the_token(
    tmp_path: Path, tiny_model: Path, photos: dict[str, Path], bad_inputs: dict[str, Path]
) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_DATABASE_URL": database}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    files = [photos["coffee.jpg"], photos["chelsea.jpg"], bad_inputs["corrupt_image_jpeg"]]
    with (
        served(tmp_path / "a", "--token", TOKEN, env=env) as (url, process),
        httpx.Client(base_url=url, headers=auth, timeout=60) as client,
    ):
        refused = httpx.get(f"{url}/metrics")
        wrong = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer not-the-token"})
        before = scrape_of(client)
        with client.stream("GET", "/api/events") as stream:
            events = sse_events(stream)
            seen = [next(events)]  # the snapshot: this stream is open
            created = client.post(
                "/api/batches",
                headers=UI,
                files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files],
            )
            assert created.status_code == 201, created.text
            ended = job_ended({job["id"] for job in created.json()["jobs"]})
            while not ended(seen):
                seen.append(next(events))
            during = scrape_of(client)
        after = until(lambda: no_streams(client), what="the closed stream leave the count")
        jobs = [client.get(f"/api/jobs/{job['id']}").json() for job in created.json()["jobs"]]
        second = Settings(data_dir=tmp_path / "b", database_url=database, token=TOKEN)
        with idle_app(second, **auth) as other:
            elsewhere = scrape_of(other)

    assert refused.status_code == 401 and wrong.status_code == 401
    assert [j["status"] for j in jobs] == ["completed", "completed", "failed"]
    assert jobs[2]["error"]["code"] == "corrupt_image"

    def moved(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert moved("bgremover_jobs_completed_total") == 2
    assert moved("bgremover_jobs_failed_total", code="corrupt_image") == 1
    assert moved("bgremover_jobs", status="completed") == 2
    assert moved("bgremover_jobs", status="failed") == 1
    assert moved("bgremover_job_run_seconds_count") == 2
    assert moved("bgremover_job_queue_wait_seconds_count") == 3
    assert moved("bgremover_eta_error_ratio_count") == 2
    for stage in ("Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"):
        assert moved("bgremover_stage_seconds_count", stage=stage) == 2
    assert moved("bgremover_events_published_total", type="job.updated") >= 6
    assert value(after, "bgremover_workers") == Settings().max_concurrent_jobs
    assert value(after, "bgremover_workers_busy") == 0
    assert value(during, "bgremover_sse_clients") == 1
    (label,) = {s.labels["process"] for s in after["bgremover_sse_clients"]}
    assert label.endswith(f":{process.pid}")

    # Another web process on the same database: the same global numbers.
    for family in GLOBAL:
        assert elsewhere[family] == after[family], family
    assert value(elsewhere, "bgremover_workers") == 0  # its workers never started
