"""A PostgreSQL cluster of a test's (or a benchmark's) own: ``initdb`` and ``pg_ctl`` in a
temporary folder on a free loopback port, so it may be crashed and restarted without
touching the machine's server. The binaries refuse to run as root, so as root they run as
the ``postgres`` user, in a folder of its own under the system's temp dir (a test's
``tmp_path`` is private to root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .serving import free_port

START_TIMEOUT_S = 120


class PostgresUnavailable(RuntimeError):
    """initdb or pg_ctl is missing or failed; the message says which and why."""


class PrivatePostgres:
    """One cluster in a temporary folder, deleted by ``stop``. ``url`` names its
    ``postgres`` database (trust authentication, loopback only)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._root = Path(tempfile.mkdtemp(prefix="bgremover-pg-"))
        self.data = self._root / "pgdata"
        self._log = self._root / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None

    def init(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                raise PostgresUnavailable(f"{tool} is not on PATH: install PostgreSQL's server")
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self._root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self._log), "-w",
            "-t", str(START_TIMEOUT_S), "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -c fsync=off -c max_connections=200",
            "start",
        )  # fmt: skip

    def crash(self) -> None:
        """Stop it as a crash would: every backend killed, no checkpoint (recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def restart(self) -> None:
        """A fast restart: sessions are ended, the server is back once this returns."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.start()

    def stop(self) -> None:
        """Stop the server (if it runs) and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self._root, ignore_errors=True)

    def _run(self, *command: str, check: bool = True) -> None:
        if self._user is not None:
            command = ("runuser", "-u", self._user, "--", *command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if check and done.returncode != 0:
            log = self._log.read_text() if self._log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}"
                f"{log[-2000:]}"
            )


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster, stopped and deleted afterwards."""
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
