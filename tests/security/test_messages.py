"""Messages that name the real problem and the real setting: a corrupt PNG is corrupt, a
pixel bomb is over BGREMOVER_MAX_IMAGE_PIXELS, and a bad setting is one clear line."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from bgremover import Settings
from bgremover.engine.decode import decode
from bgremover.engine.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds (almost) no pixels: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_a_png_signature_followed_by_garbage_is_reported_as_corrupt() -> None:
    with pytest.raises(InputError) as caught:
        decode(PNG_SIGNATURE + os.urandom(4000), name="photo.png", max_pixels=10**8)
    assert caught.value.code == "corrupt_image"
    assert "corrupt" in str(caught.value) and "not supported" not in str(caught.value)


def test_a_pixel_bomb_is_reported_against_our_own_limit() -> None:
    with pytest.raises(InputError) as caught:
        decode(png_header(30_000, 30_000), name="bomb.png", max_pixels=100_000_000)
    message = str(caught.value)
    assert caught.value.code == "image_too_large"
    assert "BGREMOVER_MAX_IMAGE_PIXELS" in message and "900 megapixels" in message
    assert "178956970" not in message and "178,956,970" not in message


@pytest.mark.parametrize(("value", "seconds"), [("30", 30), ("1.5", 1.5), ("PT2M", 120)])
def test_durations_accept_plain_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("BGREMOVER_CLEANUP_INTERVAL", value)
    assert Settings().cleanup_interval == timedelta(seconds=seconds)


def test_a_bad_setting_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "BGREMOVER_DATA_DIR": str(tmp_path), "BGREMOVER_CLEANUP_INTERVAL": "soon"}
    run = subprocess.run(
        [sys.executable, "-m", "bgremover", "serve", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "BGREMOVER_CLEANUP_INTERVAL" in lines[0] and "'soon'" in lines[0]
    assert "seconds" in lines[0] and "Traceback" not in run.stderr
