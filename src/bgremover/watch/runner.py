"""The watch loop: complete files become jobs, ended jobs become results in the output folder
and entries in the ledger. One thread decides everything; watchdog and the backend only put
what they see into its inbox, so no state is shared between threads."""

from __future__ import annotations

import os
import queue
import stat
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn
from watchdog.events import FileSystemEvent

from ..engine.options import OutputFormat
from ..jobs.states import TERMINAL
from ..terminal import label_columns
from .backend import Backend, Notice, Refused, Resync, Update
from .folder import FolderWatch, Rules
from .ledger import Entry, Ledger, Signature
from .nolinks import LinkRefused, OutputFolder, open_source


class Display:
    """One line per file that ends (for people and for scripts reading the output) and, on a
    terminal, a live progress row per running job."""

    def __init__(self, console: Console) -> None:
        self.live = console.is_terminal
        self.progress = Progress(
            *label_columns(),
            BarColumn(),
            TaskProgressColumn(),
            console=console,
            disable=not self.live,
        )
        self._rows: dict[str, TaskID] = {}

    def say(self, line: str) -> None:
        if self.live:
            self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, flush=True)

    def show(self, job_id: str, name: str) -> None:
        self._rows[job_id] = self.progress.add_task(name, total=100, stage="Queued")

    def update(self, update: Update) -> None:
        row = self._rows.get(update.job_id)
        if row is not None:
            stage = update.stage or update.status.capitalize()
            self.progress.update(row, completed=update.progress, stage=stage)

    def end(self, job_id: str) -> None:
        row = self._rows.pop(job_id, None)
        if row is not None:
            self.progress.remove_task(row)


class Runner:
    def __init__(
        self,
        rules: Rules,
        output: OutputFolder,
        backend: Backend,
        ledger: Ledger,
        display: Display,
        settle: float,
    ) -> None:
        self.rules = rules
        self.output = output
        self.backend = backend
        self.ledger = ledger
        self.display = display
        self.inbox: queue.Queue[object] = queue.Queue()
        self.folder = FolderWatch(rules, self.inbox, settle)
        self.active: dict[str, str] = {}
        """Job id → the file (relative path) it is for."""
        self.counts = {"done": 0, "failed": 0, "skipped": 0}

    def run(self) -> None:
        """Until Ctrl-C (``KeyboardInterrupt``): follows the jobs a previous run queued, takes
        the files that appeared meanwhile, then every file that appears."""
        self.backend.start(self.inbox.put)
        self.folder.start()  # before the scan, so a file written during it is not missed
        try:
            with self.display.progress:
                self._resume()
                for path in self.rules.files():
                    if not self._settled(path):
                        self.folder.add(path)
                self.display.say(f"Watching {self.rules.root} → {self.rules.out} (Ctrl-C stops)")
                while True:
                    self._wait()
                    for path in self.folder.ready():
                        self._submit(path)
        finally:
            self.folder.stop()
            self.backend.stop()

    def summary(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in self.counts.items() if n)
        waiting = len(self.active)
        later = f"; {waiting} queued, followed on the next start" if waiting else ""
        return f"Stopped watching: {counts or 'nothing processed'} this run{later}"

    def _wait(self) -> None:
        """Handle the next thing in the inbox (waiting for it at most until a file may have
        settled), then everything else already there."""
        try:
            self._handle(self.inbox.get(timeout=self.folder.next_check()))
        except queue.Empty:
            return
        while True:
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                return

    def _handle(self, item: object) -> None:
        if isinstance(item, FileSystemEvent):
            self.folder.note(item)
        elif isinstance(item, Update):
            self._follow(item)
        elif isinstance(item, Resync):
            for job_id in list(self.active):
                self._refresh(job_id)
        elif isinstance(item, Notice):
            self.display.say(item.message)

    def _resume(self) -> None:
        """Jobs the last run queued: results of those that ended meanwhile are saved now, the
        rest followed; a job the server no longer has makes its file new work again."""
        for rel, entry in self.ledger.queued().items():
            if entry.job_id is None:  # a queued entry always has its job; be safe anyway
                self.ledger.forget(rel)
                continue
            self.active[entry.job_id] = rel
            self.display.show(entry.job_id, rel)
            self._refresh(entry.job_id)

    def _refresh(self, job_id: str) -> None:
        try:
            state = self.backend.state(job_id)
        except ConnectionError as exc:
            self.display.say(str(exc))
            return
        if state is None:
            rel = self.active.pop(job_id)
            self.ledger.forget(rel)
            self.display.end(job_id)
            self.folder.add(self.rules.root / rel)  # new work again (when it still exists)
        else:
            self._follow(state)

    def _settled(self, path: Path) -> bool:
        try:
            return self.ledger.settled(self._rel(path), Signature.of(path.stat()))
        except OSError:  # gone again
            return True

    def _submit(self, path: Path) -> None:
        rel = self._rel(path)
        try:
            checked = path.stat()
        except OSError:  # gone again
            return
        signature = Signature.of(checked)
        if not stat.S_ISREG(checked.st_mode) or self.ledger.settled(rel, signature):
            return
        reason = self.rules.refusal(path)
        if reason is None:
            try:
                with open_source(self.rules.root, path) as file:
                    if not _same_file(checked, os.fstat(file.fileno())):
                        self.folder.add(path)  # replaced since checked: look again
                        return
                    job_id = self.backend.submit(file, rel)
            except (Refused, LinkRefused) as exc:
                reason = str(exc)
            except (ConnectionError, OSError) as exc:
                self.display.say(f"error   {rel}: {exc} (taken up again on the next start)")
                return
        if reason is not None:
            self.ledger.record(rel, Entry(signature.size, signature.mtime_ns, "skipped",
                                          reason=reason))  # fmt: skip
            self._said("skipped", rel, reason)
            return
        self.ledger.record(rel, Entry(signature.size, signature.mtime_ns, "queued", job_id))
        self.active[job_id] = rel
        self.display.show(job_id, rel)
        self.display.say(f"queued  {rel}")

    def _follow(self, update: Update) -> None:
        rel = self.active.get(update.job_id)
        if rel is None:
            return
        self.display.update(update)
        if update.status not in TERMINAL:
            return
        del self.active[update.job_id]
        self.display.end(update.job_id)
        queued = self.ledger.queued().get(rel)
        size, mtime = (queued.size, queued.mtime_ns) if queued else (0, 0)
        if update.status == "completed":
            saved = self._save(update, rel)
            if isinstance(saved, Path):
                output = saved.relative_to(self.output.path).as_posix()
                self.ledger.record(rel, Entry(size, mtime, "done", update.job_id, output))
                self._said("done", rel, str(saved))
                return
            reason = saved
        else:
            reason = update.error or f"the job was {update.status}"
        self.ledger.record(rel, Entry(size, mtime, "failed", update.job_id, reason=reason))
        self._said("failed", rel, reason)

    def _save(self, update: Update, rel: str) -> Path | str:
        """Where the completed job's result was saved, or why it was not. The format comes
        from the server: one this version does not know fails the file, not the watch."""
        try:
            fmt = OutputFormat(update.result_format or "png")
        except ValueError:
            return (
                f"the server's result format {update.result_format!r} is not one this "
                "bgremover knows; update bgremover here to the server's version"
            )
        target = self._target(rel, fmt)
        try:
            return self.output.write(
                target, lambda file: self.backend.save_result(update.job_id, file)
            )
        except (ConnectionError, OSError) as exc:
            return f"the result could not be saved: {exc}"

    def _target(self, rel: str, fmt: OutputFormat) -> PurePosixPath:
        """Where in the output folder the result of ``rel`` goes: the same folders; a name
        another file's result has already taken keeps the original's extension too."""
        source = PurePosixPath(rel)
        target = source.parent / fmt.result_name(source.stem)
        owner = self.ledger.outputs().get(target.as_posix())
        if owner is not None and owner != rel:
            target = source.parent / fmt.result_name(f"{source.stem}-{source.suffix.lstrip('.')}")
        return target

    def _said(self, status: str, rel: str, detail: str) -> None:
        self.counts[status] += 1
        self.display.say(f"{status:<7} {rel} {'→' if status == 'done' else '–'} {detail}")

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.rules.root).as_posix()


def _same_file(checked: os.stat_result, opened: os.stat_result) -> bool:
    """The file opened is the version that was checked (no other file swapped in between)."""
    return (checked.st_dev, checked.st_ino, checked.st_size, checked.st_mtime_ns) == (
        opened.st_dev, opened.st_ino, opened.st_size, opened.st_mtime_ns
    )  # fmt: skip
