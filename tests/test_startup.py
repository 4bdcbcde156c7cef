"""Start-up: commands load only what they use; the model's hash is checked once per change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bgremover.engine.models import IsNetGeneralUse, ModelStore, hashes

# (Not pydantic: Typer itself imports it to parse a subcommand's options.)
HEAVY = ("onnxruntime", "onnx", "sqlalchemy", "alembic", "fastapi", "uvicorn", "numpy", "PIL")


def test_help_loads_no_model_runtime_database_or_web_stack() -> None:
    # A fresh interpreter, as `bgremover --help` starts: the CLI module and every subcommand's
    # help, then which of the heavy libraries got imported.
    script = f"""
import json, sys
from bgremover.cli import app
for args in (["--help"], ["remove", "--help"], ["serve", "--help"], ["models", "--help"]):
    try:
        app(args, prog_name="bgremover")
    except SystemExit:
        pass
heavy = {HEAVY!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))), file=sys.stderr)
"""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Remove the background" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.fixture
def hash_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose bytes are read for a hash from now on."""
    reads: list[Path] = []
    real = hashes.sha256_file

    def counting(path: Path) -> str:
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(hashes, "sha256_file", counting)
    return reads


def test_a_load_reads_no_model_bytes_for_a_hash_while_the_files_are_unchanged(
    tiny_model: Path, tmp_path: Path, hash_reads: list[Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    first = store.resolve("isnet-general-use", tiny_model)
    assert first.session_path != tiny_model  # converted and cached
    assert hash_reads == [tiny_model]  # the source once; the copy's hash came from writing it

    hash_reads.clear()
    again = ModelStore(tmp_path / "models").resolve("isnet-general-use", tiny_model)
    assert again.session_path == first.session_path
    assert hash_reads == []


def test_a_changed_file_is_hashed_again_and_a_corrupt_copy_is_refused(
    tiny_model: Path, tmp_path: Path, hash_reads: list[Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    copy = store.resolve("isnet-general-use", tiny_model).session_path
    made = hashes.sha256_file(copy)
    stat = copy.stat()

    # The same bytes with another mtime: read again, still good, no conversion.
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    hash_reads.clear()
    assert store.resolve("isnet-general-use", tiny_model).session_path == copy
    assert hash_reads == [copy]
    assert copy.stat().st_ino == stat.st_ino

    # Other bytes of the same size, mtime put back: read again (ctime moved), refused, remade.
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copy.stat().st_size == stat.st_size
    assert store.resolve("isnet-general-use", tiny_model).session_path == copy
    assert hashes.sha256_file(copy) == made


def test_models_verify_reads_the_whole_file_and_names_the_fix(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    model = cache / "models" / IsNetGeneralUse.file_name
    model.parent.mkdir(parents=True)
    with open(model, "wb") as f:  # the published size, not its bytes
        f.truncate(IsNetGeneralUse.size_bytes or 0)
    env = {**os.environ, "BGREMOVER_CACHE_DIR": str(cache), "COLUMNS": "300", "NO_COLOR": "1"}
    env.pop("BGREMOVER_MODEL_PATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "bgremover", "models", "verify"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert str(model) in done.stderr
    assert "fails its sha256 check" in done.stderr
    assert "bgremover models pull --force" in done.stderr
