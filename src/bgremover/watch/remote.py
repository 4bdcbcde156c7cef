"""Watch-folder jobs on a running ``bgremover serve``: uploaded over its API (so they show
in its UI), followed over its event stream, results downloaded as each completes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import httpx

from ..jobs.presets import saved_names
from .backend import Notice, Refused, Report, Resync, Update

RECONNECT_S = (0.5, 1, 2, 5, 10)
"""Waits before each reconnect of the event stream; the last one repeats."""


class RemoteJobs:
    def __init__(
        self,
        url: str,
        token: str | None,
        batch_name: str,
        preset: str | None,
        model: str | None = None,
    ) -> None:
        headers = {"X-BGRemover-Request": "1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.batch_name = batch_name
        self.preset = preset
        self.model = model
        """The model each job asks for (None: the preset's, else the server's default)."""
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self._batch_id: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: httpx.Response | None = None

    def check(self) -> None:
        """Fail early, with the reason, when the server cannot be reached or refuses us."""
        response = self._call("GET", "/api/config")
        if response.status_code == 401:
            raise ConnectionError(
                f"{self.url} wants an access token: set BGREMOVER_TOKEN to the server's token"
            )
        _raise_for(response, "is this a bgremover server?")
        if self.preset is not None:
            presets = self._call("GET", "/api/presets")
            _raise_for(presets, "listing the server's presets")
            names = [p["name"] for p in presets.json()]
            if self.preset not in names:
                listed = saved_names(names, len(names))
                raise ConnectionError(
                    f"{self.url} has no preset named {self.preset!r} (saved presets: {listed})"
                )
        if self.model is not None:
            models = self._call("GET", "/api/models")
            _raise_for(models, "listing the server's models")
            names = [m["name"] for m in models.json()]
            if self.model not in names:
                raise ConnectionError(
                    f"{self.url} has no model named {self.model!r} (its models: "
                    f"{', '.join(names)}); add it there with `bgremover models add`"
                )

    def start(self, report: Report) -> None:
        self._thread = threading.Thread(target=self._follow, args=(report,), daemon=True)
        self._thread.start()

    def _follow(self, report: Report) -> None:
        """Read the event stream until stopped, reconnecting (with ``Last-Event-ID``) when it
        drops; each (re)connect may have missed updates, so it asks for a resync."""
        last_id: str | None = None
        failures = 0
        while not self._stopping.is_set():
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self._client.stream(
                    "GET", "/api/events", headers=headers, timeout=httpx.Timeout(60, read=None)
                ) as response:
                    _raise_for(response, "the event stream")
                    self._stream = response
                    failures = 0
                    report(Resync())
                    for event_id, kind, data in _events(response.iter_lines()):
                        last_id = event_id or last_id
                        _dispatch(kind, data, report)
            except (
                httpx.HTTPError,
                httpx.StreamError,
                ConnectionError,
                ValueError,
                KeyError,
            ) as exc:
                if self._stopping.is_set():
                    return
                wait = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                failures += 1
                report(Notice(f"lost the event stream of {self.url} ({exc}); retrying in {wait} s"))
                self._stopping.wait(wait)

    def submit(self, file: BinaryIO, name: str) -> str:
        form: dict[str, Any] = {"preset": self.preset} if self.preset else {}
        if self.model:
            form["model"] = self.model
        if self._batch_id is None:
            created = self._call("POST", "/api/batches/manual", json={"name": self.batch_name})
            _raise_for(created, "creating the watch batch")
            self._batch_id = created.json()["id"]
        form["batch_id"] = self._batch_id
        response = self._call(
            "POST", "/api/batches", data=form, files=[("files", (name, file))], timeout=600
        )
        if response.status_code in (413, 415):
            raise Refused(_message(response))
        _raise_for(response, f"uploading {name}")
        return str(response.json()["jobs"][0]["id"])

    def state(self, job_id: str) -> Update | None:
        response = self._call("GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            return None
        _raise_for(response, f"asking for job {job_id}")
        return Update.from_job(response.json())

    def save_result(self, job_id: str, out: BinaryIO) -> None:
        with self._client.stream("GET", f"/api/jobs/{job_id}/result", timeout=600) as response:
            _raise_for(response, f"downloading the result of job {job_id}")
            for block in response.iter_bytes(1 << 20):
                out.write(block)

    def stop(self) -> None:
        self._stopping.set()
        if self._stream is not None:
            self._stream.close()  # ends the blocked read of the stream
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"cannot reach {self.url}: {exc}") from None


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, str, Any]]:
    """(id, type, data) of each Server-Sent Event; comments (heartbeats) skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            if not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
            continue
        if "data" in fields:
            yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
        fields = {}


def _dispatch(kind: str, data: Any, report: Report) -> None:
    if kind == "job.updated":
        report(Update.from_job(data["job"]))
    elif kind == "job.progress":
        report(Update(data["id"], "processing", data.get("progress", 0.0), data.get("stage")))
    elif kind == "resync":
        report(Resync())


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _raise_for(response: httpx.Response, doing: str) -> None:
    if not response.is_success:
        response.read()  # a streamed answer's body, for its message
        raise ConnectionError(f"{doing}: the server answered {response.status_code}: "
                              f"{_message(response)}")  # fmt: skip
