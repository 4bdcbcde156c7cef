"""Watch-folder jobs on this process's own job system, the one ``bgremover serve`` runs
(same database and data folder), so they also show in a server's UI sharing that database."""

from __future__ import annotations

import contextlib
import shutil
import threading
import uuid
from typing import BinaryIO

from ..config import Settings
from ..jobs.bus.base import Subscription
from ..jobs.presets import PresetOptions
from ..jobs.staging import Rejected, stage
from ..jobs.states import NotFound
from ..system import JobSystem
from .backend import Refused, Report, Resync, Update


class LocalJobs:
    def __init__(self, settings: Settings, batch_name: str, options: PresetOptions) -> None:
        self.settings = settings
        self.batch_name = batch_name
        self.options = options
        self.system = JobSystem(settings)
        self._batch_id: str | None = None
        self._subscription: Subscription | None = None
        self._thread: threading.Thread | None = None

    def start(self, report: Report) -> None:
        self._subscription = self.system.bus.subscribe()
        self.system.start()
        self._thread = threading.Thread(
            target=self._forward, args=(self._subscription, report), daemon=True
        )
        self._thread.start()

    @staticmethod
    def _forward(subscription: Subscription, report: Report) -> None:
        while (event := subscription.get()) is not None:
            if event.type == "resync":
                report(Resync())
            elif event.type == "job.updated":
                report(Update.from_job(event.data["job"]))
            elif event.type == "job.progress":
                report(Update(event.data["id"], "processing", event.data.get("progress", 0.0),
                              event.data.get("stage")))  # fmt: skip

    def submit(self, file: BinaryIO, name: str) -> str:
        staging = self.settings.data_dir / "staging" / uuid.uuid4().hex
        try:
            staged = stage(file, name, staging, self.settings.max_upload_bytes)
            if isinstance(staged, Rejected):
                raise Refused(staged.message)
            service = self.system.service
            if self._batch_id is None:
                self._batch_id = service.create_manual_batch(self.batch_name).id
            created = service.create_batch(
                [staged], priority=self.options.priority, options=self.options.remove_options(),
                batch_id=self._batch_id,
            )  # fmt: skip
            return created.jobs[0].id
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def state(self, job_id: str) -> Update | None:
        try:
            job = self.system.service.get_job(job_id)
        except NotFound:
            return None
        return Update.from_job(job.model_dump(mode="json"))

    def save_result(self, job_id: str, out: BinaryIO) -> None:
        service = self.system.service
        _, key = service.job_files(job_id)
        if key is None or not service.files.storage.exists(key):
            raise FileNotFoundError(f"the result of job {job_id} is no longer stored")
        with contextlib.closing(service.files.storage.open(key)) as result:
            shutil.copyfileobj(result, out, 1 << 20)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        self.system.stop()
