"""GET /metrics: the job system in the Prometheus text format, for a monitoring stack.

Totals and histograms are read from the database at scrape time (``jobs/metrics.py``), so
every web process of a deployment reports the same numbers and a scrape of any one of them
is the whole truth. What only a process knows (its event streams, the events it published)
carries a ``process`` label (host:pid); workers carry a ``pool`` label: this process's own
worker processes, or "celery" for the cluster's shared workers, which every web process
reports alike (take the ``max`` per pool, then the ``sum``).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.datastructures import State

from ..jobs.metrics import Histogram
from ..system import JobSystem
from .events import StreamCount

log = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

PREFIX = "bgremover"


class JobSystemCollector(Collector):
    """Reads the app's job system on every scrape; keeps no numbers of its own."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._process = f"{socket.gethostname()}:{os.getpid()}"

    def collect(self) -> Iterator[Metric]:
        system: JobSystem = self._state.system
        yield from self._store(system)
        yield from self._workers(system)
        yield from self._process_metrics(system)

    def _store(self, system: JobSystem) -> Iterator[Metric]:
        found = system.service.metrics()
        yield _by_label(
            GaugeMetricFamily, "jobs", "Jobs by status (attempts a retry replaced are left out).",
            "status", found.jobs.items(),
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_jobs_completed", "Attempts that completed.", value=found.completed
        )
        yield _by_label(
            CounterMetricFamily, "jobs_failed", "Attempts that failed, by error code.", "code",
            found.failed.items(),
        )  # fmt: skip
        yield _histogram(
            "job_run_seconds",
            "Seconds from a completed run's start to its end, by image size.",
            "size",
            found.run_seconds,
        )
        yield _histogram(
            "job_queue_wait_seconds",
            "Seconds from upload to the start of the job's latest run, by image size.",
            "size",
            found.queue_wait_seconds,
        )
        yield _histogram(
            "stage_seconds", "Seconds each stage of a completed run took.", "stage",
            found.stage_seconds,
        )  # fmt: skip
        yield _histogram(
            "eta_error_ratio",
            "|predicted - actual| / actual run time of completed runs (0.1: 10 % off).",
            None,
            found.eta_error,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_paused", "1 while the whole queue is paused.",
            value=int(found.queue_paused),
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_batches_paused", "Unfinished batches paused on their own.",
            value=found.batches_paused,
        )  # fmt: skip
        yield _by_label(
            CounterMetricFamily, "webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retrying, given_up).", "outcome",
            found.webhook_attempts.items(),
        )  # fmt: skip
        yield _by_label(
            GaugeMetricFamily, "webhook_deliveries",
            "Webhook deliveries kept, by state (pending: owed to a receiver).", "state",
            system.webhooks.delivery_counts().items(),
        )  # fmt: skip

    def _workers(self, system: JobSystem) -> Iterator[Metric]:
        try:
            workers = system.executor.workers()
        except Exception as exc:  # the cluster's registry is in Redis, which health names
            log.warning("metrics: cannot list the workers: %s", exc)
            return
        pool = "celery" if system.executor.remote else self._process
        alive = GaugeMetricFamily(f"{PREFIX}_workers", "Worker processes alive.", labels=["pool"])
        alive.add_metric([pool], len(workers))
        busy = GaugeMetricFamily(
            f"{PREFIX}_workers_busy", "Worker processes running a job now.", labels=["pool"]
        )
        busy.add_metric([pool], sum(1 for worker in workers if worker.job_id is not None))
        yield alive
        yield busy

    def _process_metrics(self, system: JobSystem) -> Iterator[Metric]:
        streams: StreamCount = self._state.streams
        clients = GaugeMetricFamily(
            f"{PREFIX}_sse_clients",
            "Live event streams (/api/events) this process serves.",
            labels=["process"],
        )
        clients.add_metric([self._process], streams.open)
        yield clients
        published = CounterMetricFamily(
            f"{PREFIX}_events_published",
            "Events this process published, by type.",
            labels=["process", "type"],
        )
        for kind, count in sorted(system.service.events_published().items()):
            published.add_metric([self._process, kind], count)
        yield published


def _by_label(
    family: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    help_text: str,
    label: str,
    counts: Iterable[tuple[str, int]],
) -> Metric:
    metric = family(f"{PREFIX}_{name}", help_text, labels=[label])
    for value, count in sorted(counts):
        metric.add_metric([value], count)
    return metric


def _histogram(name: str, help_text: str, label: str | None, found: Histogram) -> Metric:
    family = HistogramMetricFamily(
        f"{PREFIX}_{name}", help_text, labels=[] if label is None else [label]
    )
    edges = [str(float(edge)) for edge in found.edges] + ["+Inf"]  # "5.0", as the client writes
    for value, series in found.series.items():
        family.add_metric(
            [] if label is None else [value],
            buckets=list(zip(edges, series.cumulative, strict=True)),
            sum_value=series.total,
        )
    return family


def metrics_registry(state: State) -> CollectorRegistry:
    """A registry of this app alone (never prometheus_client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobSystemCollector(state))
    return registry


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(request: Request) -> Response:
    """The job system for Prometheus (the text format, not JSON): jobs by status,
    completed and failed totals, run time, queue wait, stage and ETA-error histograms,
    workers, event streams and events published. Needs the token when the server has one
    (``Authorization: Bearer``)."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
