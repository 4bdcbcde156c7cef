"""sha256 of model files, remembered with each file's stat so a load hashes only a file that
changed.

Hashing the 88 MB download and its 176 MB fp32 copy took about a second of every start (CLI
run, worker process). A file whose size, mtime, ctime and inode are those recorded with its
verified hash is the file that was verified (``ctime`` cannot be set back by a user the way
``mtime`` can); any change, or ``recheck`` (``bgremover models verify``), hashes it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The sha256 of the whole file, read now."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class HashRecords:
    """Verified hashes of files, keyed by absolute path, in one JSON file (``verified.json``
    in the models folder). Losing a record (a concurrent writer, a read-only folder) only
    costs a re-hash."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def sha256(self, file: Path, *, recheck: bool = False) -> str:
        """The sha256 of ``file``: as recorded while its stat is unchanged, else read now and
        recorded. Raises ``OSError`` when it cannot be read."""
        key = str(file.resolve())
        before = _stat_key(file)
        if not recheck:
            saved = self._load().get(key)
            if isinstance(saved, dict) and saved.get("stat") == before:
                return str(saved["sha256"])
        digest = sha256_file(file)
        if _stat_key(file) == before:  # not changed while it was read
            self.record(file, digest)
        return digest

    def record(self, file: Path, digest: str) -> None:
        """Remember ``digest`` as the hash of ``file`` as it is now (just written or verified)."""
        records = self._load()
        records[str(file.resolve())] = {"stat": _stat_key(file), "sha256": digest}
        with contextlib.suppress(OSError):  # a read-only cache: every load hashes, as before
            write_atomic(self.path, json.dumps(records, indent=1).encode())

    def _load(self) -> dict[str, object]:
        return read_json(self.path) or {}


def _stat_key(file: Path) -> list[int]:
    st = os.stat(file)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def read_json(path: Path) -> dict[str, object] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def derived_matches(
    file: Path, hashes: HashRecords, origin: dict[str, object], *, recheck: bool
) -> bool | None:
    """For a file made from another (the fp32 copy, an optimised graph), with a JSON sidecar
    beside it naming its ``origin`` and its sha256: None when there is no such file made from
    ``origin`` (missing, or its sidecar names another origin); else whether its bytes hash as
    recorded (``recheck``: read in full now)."""
    saved = read_json(_sidecar(file))
    if saved is None or any(saved.get(k) != v for k, v in origin.items()) or not file.is_file():
        return None
    return hashes.sha256(file, recheck=recheck) == saved.get("sha256")


def record_derived(file: Path, digest: str, origin: dict[str, object], hashes: HashRecords) -> None:
    """Write ``file``'s sidecar (its ``origin`` and ``digest``) and remember its hash."""
    write_atomic(_sidecar(file), json.dumps({**origin, "sha256": digest}).encode())
    hashes.record(file, digest)


def _sidecar(file: Path) -> Path:
    return file.with_name(file.name + ".json")
