"""The fp32 copy onnxruntime runs: the same masks as the fp16 model as shipped, one output,
and a cache that is checked and made again when it goes bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bgremover import RemoveOptions, Remover
from bgremover.engine.models import IsNet, ModelStore, ResolvedModel, sha256_file

pytestmark = pytest.mark.model

SAMPLE_NAMES = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]


@pytest.fixture(scope="module")
def fp16_masks(remover: Remover, photos: dict[str, Path]) -> dict[str, np.ndarray]:
    """Masks from the downloaded fp16 file run as it is (what the product did before)."""
    shipped = ResolvedModel(
        IsNet(),
        remover.model_name,
        remover.model_sha256,
        remover.model_path,
        session_path=remover.model_path,
    )
    fp16 = Remover(shipped)
    options = RemoveOptions(format="mask")
    return {name: np.asarray(fp16.remove(photos[name], options)) for name in SAMPLE_NAMES}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_fp32_copy_gives_the_fp16_mask(
    remover: Remover, photos: dict[str, Path], fp16_masks: dict[str, np.ndarray], name: str
) -> None:
    assert remover.session_path != remover.model_path, "the product should run the fp32 copy"
    ours = np.asarray(remover.remove(photos[name], RemoveOptions(format="mask")))
    before = fp16_masks[name]
    assert ours.shape == before.shape
    a, b = ours >= 128, before >= 128
    assert (a & b).sum() / (a | b).sum() >= 0.999
    assert np.abs(ours.astype(np.int16) - before.astype(np.int16)).max() <= 2


def test_copy_is_fp32_with_only_the_first_output(remover: Remover) -> None:
    graph = onnx.load(str(remover.session_path)).graph
    assert [o.name for o in graph.output] == ["output"]
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer)
    assert not any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT16
        for node in graph.node
        if node.op_type == "Cast"
        for a in node.attribute
    )


def test_corrupt_or_stale_copy_is_made_again(remover: Remover, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    source = remover.model_path
    copy = store.runtime_copy(source, sha256_file(source))
    made = sha256_file(copy)

    with open(copy, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert store.runtime_copy(source, sha256_file(source)) == copy
    assert sha256_file(copy) == made

    # A copy made from another file (its sidecar names another source hash) is not used.
    sidecar = copy.with_name(copy.name + ".json")
    sidecar.write_text(sidecar.read_text().replace(sha256_file(source), "0" * 64))
    inode = copy.stat().st_ino
    assert store.runtime_copy(source, sha256_file(source)) == copy
    assert copy.stat().st_ino != inode, "the stale copy was kept"
    # (verified.json: the hashes the next load trusts while the files stay unchanged)
    assert sorted(p.name for p in copy.parent.iterdir()) == [
        copy.name,
        sidecar.name,
        "verified.json",
    ]
