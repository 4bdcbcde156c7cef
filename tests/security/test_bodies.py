"""Request bodies are bounded before they cost memory or disk: a body whose Content-Length is
over its endpoint's limit gets 413 before a byte of it is read, a chunked one is cut off
where it passes the limit, and an uploaded file stops being stored where it passes the
per-file limit (the file is refused, the rest of the batch still runs)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bgremover.web.bodies import JSON_BODY_LIMIT

from ..serving import served
from .conftest import Server
from .wire import Answer, chunk, connect, read_answer, request_head

pytestmark = pytest.mark.model

MB = 1_000_000
FILE_LIMIT = 1 * MB
IMPORT_LIMIT = 1 * MB


@dataclass(frozen=True)
class Tight:
    url: str
    process: subprocess.Popen[str]
    tmp: Path
    """The server's TMPDIR, where multipart parsing spools files."""


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tight]:
    """A server with small body limits: 1 MB a file, 40 files a batch, 1 MB an import."""
    tmp = tmp_path_factory.mktemp("spool")
    env = {
        "TMPDIR": str(tmp),
        "BGREMOVER_MAX_UPLOAD_BYTES": str(FILE_LIMIT),
        "BGREMOVER_MAX_FILES_PER_UPLOAD": "40",
        "BGREMOVER_MAX_IMPORT_BYTES": str(IMPORT_LIMIT),
        "BGREMOVER_HEADER_TIMEOUT": "2",
        "BGREMOVER_BODY_TIMEOUT": "2",
    }
    with served(tmp_path_factory.mktemp("bodies"), env=env) as (url, process):
        yield Tight(url, process, tmp)


def declare_and_wait(url: str, path: str, length: int, content_type: str) -> Answer:
    """Send only the head of a request whose body would be ``length`` bytes, and read the
    answer (status 0 when the server waited for the body and dropped the connection)."""
    with connect(url) as sock:
        sock.sendall(
            request_head(url, "POST", path, Content_Type=content_type, Content_Length=length)
        )
        return read_answer(sock)


def assert_too_large(answer: Answer, *words: str) -> None:
    assert answer.status == 413, answer
    error = answer.json()["error"]
    assert error["code"] == "body_too_large", error
    for word in words:
        assert word in error["message"], error


@pytest.mark.parametrize("path", ["/api/presets", "/api/import", "/api/batches/manual"])
def test_a_declared_150_mb_json_body_is_refused_before_it_is_sent(
    server: Server, path: str
) -> None:
    answer = declare_and_wait(server.url, path, 150 * MB, "application/json")
    assert_too_large(answer, path)
    server.assert_healthy()


def test_declared_uploads_over_what_a_batch_may_hold_are_refused_before_they_are_sent(
    server: Server,
) -> None:
    form = "multipart/form-data; boundary=x"
    batch = declare_and_wait(server.url, "/api/batches", 100_000 * MB, form)
    assert_too_large(batch, "BGREMOVER_MAX_UPLOAD_BYTES", "BGREMOVER_MAX_FILES_PER_UPLOAD")
    derive_path = f"/api/jobs/{server.good_job['id']}/derive"
    derive = declare_and_wait(server.url, derive_path, 200 * MB, form)
    assert_too_large(derive, "BGREMOVER_MAX_UPLOAD_BYTES")
    server.assert_healthy()


@pytest.mark.parametrize(
    ("path", "limit", "setting"),
    [("/api/import", IMPORT_LIMIT, "BGREMOVER_MAX_IMPORT_BYTES"),
     ("/api/presets", JSON_BODY_LIMIT, "")],
)  # fmt: skip
def test_a_chunked_body_is_cut_off_where_it_passes_the_limit(
    tight: Tight, path: str, limit: int, setting: str
) -> None:
    """The body never ends: only a server that stops reading at the limit answers."""
    piece = b" " * 65536
    chunked = {"Content_Type": "application/json", "Transfer_Encoding": "chunked"}
    with connect(tight.url) as sock:
        sock.sendall(request_head(tight.url, "POST", path, **chunked))
        sent = 0
        while sent + len(piece) <= limit:
            sock.sendall(chunk(piece))
            sent += len(piece)
        sock.sendall(chunk(b" " * (limit - sent + 1)))  # one byte over, and no end chunk
        assert_too_large(read_answer(sock), path, setting)


def spooled_bytes(tight: Tight) -> int:
    """Bytes in the files the server process holds open under its TMPDIR (where multipart
    parsing spools uploads; they have no name there, so they are found by descriptor)."""
    total = 0
    fds = Path(f"/proc/{tight.process.pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
            if target.startswith(str(tight.tmp)):
                total += fd.stat().st_size
        except OSError:  # closed meanwhile
            continue
    return total


def part(boundary: str, file_name: str) -> bytes:
    """A file part's opening: its boundary and headers."""
    return (
        f"--{boundary}\r\nContent-Disposition: form-data; name=files; "
        f"filename={file_name}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_an_oversized_file_is_not_stored_past_the_file_limit(
    tight: Tight, photos: dict[str, Path]
) -> None:
    boundary = "bgremover-test-boundary"
    huge = part(boundary, "huge.png") + b"\x89PNG\r\n\x1a\n" + b"\0" * (24 * MB)
    rest = (
        b"\r\n" + part(boundary, "coffee.jpg") + photos["coffee.jpg"].read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )  # fmt: skip
    form = {
        "Content_Type": f"multipart/form-data; boundary={boundary}",
        "Content_Length": len(huge) + len(rest),
    }
    with connect(tight.url) as sock:
        sock.sendall(request_head(tight.url, "POST", "/api/batches", **form))
        sock.sendall(huge)
        # sendall returned: the server has read all but what the kernel buffers hold (a
        # few MB), so a server that stores the whole part has far more than the limit here.
        assert spooled_bytes(tight) <= FILE_LIMIT + 1
        sock.sendall(rest)
        answer = read_answer(sock)
    assert answer.status == 201, answer
    created = answer.json()
    assert [j["file_name"] for j in created["jobs"]] == ["coffee.jpg"]
    assert [(r["file_name"], r["error"]["code"]) for r in created["rejected"]] == [
        ("huge.png", "file_too_large")
    ]
