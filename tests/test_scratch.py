"""Celery worker processes' scratch folders: removed on exit, and those of processes killed
outright by the next one to start, never a live process's."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

from bgremover.workers.scratch import PREFIX, Scratch

HOLD = """
import sys
from pathlib import Path
from bgremover.workers.scratch import Scratch
scratch = Scratch(Path(sys.argv[1]))
(scratch.path / "original.jpg").write_bytes(b"copy")
print(scratch.path, flush=True)
if sys.stdin.readline().strip() == "exit":
    scratch.close()
"""


def _process_with_scratch(root: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_scratch_folders_go_with_their_process_and_stale_ones_only_when_the_owner_is_gone(
    tmp_path: Path,
) -> None:
    exiting, exited_folder = _process_with_scratch(tmp_path)
    killed, killed_folder = _process_with_scratch(tmp_path)
    living, living_folder = _process_with_scratch(tmp_path)
    assert exiting.stdin is not None
    exiting.communicate("exit\n")
    assert not exited_folder.exists(), "a worker left its folder behind on exit"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed_folder.exists()

    # A live process of another PID namespace: its pid means nothing here, its lock holds.
    elsewhere = tmp_path / f"{PREFIX}{killed.pid}-elsewhere"
    elsewhere.mkdir()
    lock = open(elsewhere / ".owner", "w")  # noqa: SIM115 - closed below
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    unnamed = tmp_path / f"{PREFIX}abc123"  # an older worker's: its owner is unknown
    unnamed.mkdir()

    try:
        fresh = Scratch(tmp_path)
        assert not killed_folder.exists(), "a killed worker's folder was kept"
        assert living_folder.exists() and (living_folder / "original.jpg").exists()
        assert elsewhere.exists() and unnamed.exists()
        fresh.close()
        assert not fresh.path.exists()
    finally:
        lock.close()
        living.communicate("exit\n")
    assert not living_folder.exists()
