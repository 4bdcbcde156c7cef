"""The optimised graph a CPU session keeps for the next start: used when sound, giving the
same masks as a session that optimises the copy itself, and made again when it is corrupt
or was made for another CPU or onnxruntime."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgremover import RemoveOptions, Remover
from bgremover.engine.models import ModelStore, optimized


def kept_graphs(store: ModelStore) -> list[Path]:
    return sorted(store.models_dir.glob("*.ort-*.onnx"))


def mask_of(remover: Remover, image: Image.Image) -> np.ndarray:
    return np.asarray(remover.remove(image, RemoveOptions(format="mask")))


@pytest.fixture
def photo() -> Image.Image:
    pixels = np.random.default_rng(7).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_a_second_start_loads_the_kept_graph_and_masks_stay_the_same(
    store: ModelStore, tiny_model: Path, photo: Image.Image
) -> None:
    resolved = store.resolve("isnet-file", tiny_model)
    first = Remover(resolved)
    [graph] = kept_graphs(store)
    made = graph.stat()

    again = Remover(store.resolve("isnet-file", tiny_model))
    assert kept_graphs(store) == [graph]
    assert (graph.stat().st_ino, graph.stat().st_mtime_ns) == (made.st_ino, made.st_mtime_ns), (
        "the second start optimised the model again instead of loading the kept graph"
    )
    uncached = Remover(dataclasses.replace(resolved, graph_cache=None))
    expected = mask_of(uncached, photo)
    assert np.array_equal(mask_of(first, photo), expected)
    assert np.array_equal(mask_of(again, photo), expected)


def test_a_corrupt_kept_graph_is_made_again(
    store: ModelStore, tiny_model: Path, photo: Image.Image
) -> None:
    resolved = store.resolve("isnet-file", tiny_model)
    expected = mask_of(Remover(dataclasses.replace(resolved, graph_cache=None)), photo)
    Remover(resolved)
    [graph] = kept_graphs(store)
    with open(graph, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(graph.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    copy = resolved.session_path
    assert store.verify_runtime_copy(tiny_model, resolved.sha256) == graph  # models verify
    inode = graph.stat().st_ino

    remover = Remover(store.resolve("isnet-file", tiny_model))
    assert graph.stat().st_ino != inode, "the corrupt graph was loaded"
    assert np.array_equal(mask_of(remover, photo), expected)
    assert store.verify_runtime_copy(tiny_model, resolved.sha256) is None
    assert copy.is_file()


def test_another_cpu_or_onnxruntime_makes_its_own_graph(
    store: ModelStore, tiny_model: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = store.resolve("isnet-file", tiny_model)
    expected = mask_of(Remover(resolved), photo)
    [ours] = kept_graphs(store)
    made = ours.stat().st_mtime_ns

    monkeypatch.setattr(optimized, "cpu_identity", lambda: "model name : another CPU")
    theirs = Remover(store.resolve("isnet-file", tiny_model))
    assert len(kept_graphs(store)) == 2, "a graph laid out for another CPU was used"
    assert ours.stat().st_mtime_ns == made
    assert np.array_equal(mask_of(theirs, photo), expected)


def test_the_cpu_identity_is_stable_between_reads() -> None:
    """A key that changed between starts (a clock speed in it, say) would make a new graph
    at every start and fill the folder."""
    optimized.cpu_identity.cache_clear()
    first = optimized.cpu_identity()
    optimized.cpu_identity.cache_clear()
    assert optimized.cpu_identity() == first
    assert "MHz" not in first


def test_a_folder_that_takes_no_graph_still_loads_the_model(
    store: ModelStore, tiny_model: Path, photo: Image.Image, tmp_path: Path
) -> None:
    """A models folder mounted read-only once its copy was made: onnxruntime cannot write
    the graph, and the model loads anyway (optimised at each start, as before)."""
    resolved = store.resolve("isnet-file", tiny_model)
    assert resolved.graph_cache is not None
    expected = mask_of(Remover(dataclasses.replace(resolved, graph_cache=None)), photo)
    resolved.graph_cache.path = tmp_path / "gone" / "graph.onnx"  # a folder it cannot write
    assert np.array_equal(mask_of(Remover(resolved), photo), expected)
    assert kept_graphs(store) == []
