"""The storage contract on both backends: a local folder and a real S3 protocol server."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgremover import Settings
from bgremover.storage import (
    LocalStorage,
    Storage,
    StorageError,
    StorageUnavailable,
    open_storage,
    outage_reason,
)
from tests.cluster_support import S3_CREDENTIALS, S3Server, s3_server

KEY = "originals/ab/" + "ab" + "0" * 62
RESULT = "results/12/" + "12" + "f" * 30 + ".png"
MASK = "masks/cd/" + "cd" + "e" * 62 + ".png"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3")
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        data_dir=tmp_path,
        storage_url=server.url(f"run-{os.getpid()}/{tmp_path.name}"),
        s3_endpoint_url=server.endpoint,
    )
    return open_storage(settings)


def _file(tmp_path: Path, content: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("key", [KEY, MASK], ids=["original", "mask"])
def test_a_stored_file_reads_back_whole_and_its_source_is_consumed(
    storage: Storage, tmp_path: Path, key: str
) -> None:
    content = os.urandom(300_000)
    source = _file(tmp_path, content)
    storage.put(key, source)
    assert not source.exists()
    assert storage.exists(key) and storage.size(key) == len(content)
    with storage.open(key) as stream:
        assert stream.read() == content
    target = tmp_path / "copy"
    storage.get(key, target)
    assert target.read_bytes() == content
    with storage.readable(key, tmp_path) as local:
        assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(content).digest()


def test_missing_files_are_reported_as_missing(storage: Storage, tmp_path: Path) -> None:
    assert storage.size(RESULT) is None and not storage.exists(RESULT)
    with pytest.raises(FileNotFoundError):
        storage.open(RESULT)
    with pytest.raises(FileNotFoundError):
        storage.get(RESULT, tmp_path / "x")
    assert storage.delete(RESULT) is False


def test_delete_removes_the_file(storage: Storage, tmp_path: Path) -> None:
    storage.put(RESULT, _file(tmp_path, b"png"))
    assert storage.delete(RESULT) is True
    assert not storage.exists(RESULT)


def test_a_replaced_file_is_seen_whole(storage: Storage, tmp_path: Path) -> None:
    storage.put(RESULT, _file(tmp_path, b"first"))
    storage.put(RESULT, _file(tmp_path, b"second version"))
    with storage.open(RESULT) as stream:
        assert stream.read() == b"second version"


@pytest.mark.parametrize(
    "key",
    [
        "../outside",
        "/etc/passwd",
        "originals/ab/../../../etc/passwd",
        "originals/ab/" + "a" * 64 + "/../x",
        "originals\\ab\\" + "a" * 64,
        "originals/ab/photo.jpg",
        "originals/cd/" + "ab" * 32,  # a fan-out the store does not make
        "secrets/ab/" + "ab" * 32,  # nor a folder
        "results/ab/" + "ab" * 16 + ".sh",
        "masks/ab/" + "ab" * 32,  # a mask is a PNG
        "masks/ab/" + "ab" * 31 + "/../x.png",
        "",
    ],
)
def test_keys_that_could_leave_the_store_are_refused(
    storage: Storage, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ValueError):
        storage.put(key, _file(tmp_path, b"x"))
    with pytest.raises(ValueError):
        storage.size(key)
    assert not (tmp_path.parent / "outside").exists()


def test_an_unreachable_s3_server_is_an_error_that_names_the_fix(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, storage_url="s3://nowhere/x", s3_endpoint_url="http://127.0.0.1:9"
    )
    storage = open_storage(settings)
    with pytest.raises(StorageError, match="BGREMOVER_S3_ENDPOINT_URL"):
        storage.check()
    # Down, not refusing: a job waits for it rather than failing, and people are told so
    # without the server's address.
    with pytest.raises(StorageUnavailable) as down:
        storage.probe()
    assert outage_reason(down.value) == "results storage does not answer"


def test_a_probe_writes_and_leaves_nothing(storage: Storage, tmp_path: Path) -> None:
    storage.probe()
    storage.probe()
    if isinstance(storage, LocalStorage):
        assert not list(storage.root.iterdir())


def test_a_full_or_failing_disk_is_an_outage_and_a_missing_file_is_not() -> None:
    assert outage_reason(OSError(errno.ENOSPC, "No space left")) == "results storage is full"
    assert outage_reason(OSError(errno.EROFS, "Read-only")) == "results storage is read-only"
    wrapped = StorageError("could not store")
    wrapped.__cause__ = OSError(errno.EIO, "I/O error")
    assert outage_reason(wrapped) == "results storage has input/output errors"
    assert outage_reason(FileNotFoundError(errno.ENOENT, "gone")) is None
    assert outage_reason(OSError(errno.EACCES, "Permission denied")) is None
    assert outage_reason(ValueError("bad key")) is None


def test_a_storage_url_of_another_kind_is_refused_with_the_forms_that_work(
    tmp_path: Path,
) -> None:
    with pytest.raises(StorageError, match=r"file:///absolute/path or s3://bucket/prefix"):
        open_storage(Settings(data_dir=tmp_path, storage_url="ftp://example.com/x"))
