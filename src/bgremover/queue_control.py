"""The queue's pause and resume for the command line: on the database ``bgremover serve``
uses (as every server and worker on it honours the state there), or through a running
server's API (``--server``). Both answer the same ``Queue`` object."""

from __future__ import annotations

from typing import Protocol

import httpx

from . import __version__
from .config import Settings
from .jobs.schemas import Queue


class QueueControl(Protocol):
    def status(self) -> Queue: ...
    def pause(self, cancel_running: bool) -> Queue: ...
    def resume(self) -> Queue: ...
    def close(self) -> None: ...


class LocalQueue:
    """The queue of the configured database. A server on another bus hears of the change at
    its next scheduler round (``pauses.follow_pauses``); on a Redis bus, at once."""

    def __init__(self, settings: Settings) -> None:
        from .jobs.opening import open_service

        self._service = open_service(settings, follow=False)

    def status(self) -> Queue:
        return self._service.queue()

    def pause(self, cancel_running: bool) -> Queue:
        return self._service.pause_queue("cli", cancel_running=cancel_running)

    def resume(self) -> Queue:
        return self._service.resume_queue()

    def close(self) -> None:
        self._service.close()


class RemoteQueue:
    """The queue of the server at ``url`` (its token when it has one)."""

    def __init__(self, url: str, token: str | None) -> None:
        from .web.auth import CLI_AGENT

        headers = {"X-BGRemover-Request": "1", "User-Agent": f"{CLI_AGENT}/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def status(self) -> Queue:
        return self._call("GET", "/api/queue")

    def pause(self, cancel_running: bool) -> Queue:
        params = {"cancel_running": "true"} if cancel_running else {}
        return self._call("POST", "/api/queue/pause", params=params)

    def resume(self) -> Queue:
        return self._call("POST", "/api/queue/resume")

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, params: dict[str, str] | None = None) -> Queue:
        try:
            response = self._client.request(method, path, params=params)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"{self.url}: cannot reach the server ({exc})") from None
        if response.status_code == 401:
            raise ConnectionError(
                f"{self.url} wants an access token: set BGREMOVER_TOKEN (or --token) to the "
                "server's token"
            )
        if not response.is_success:
            raise ConnectionError(
                f"{self.url}{path}: the server answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        return Queue.model_validate(response.json())
