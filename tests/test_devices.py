"""Which device runs the model: provider selection, auto's fallback line, a named device that
is missing, and N images through the model as one batch tensor. All on the CPU: the tests of
a real GPU are bench/device_bench.py's to run where there is one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import httpx
import numpy as np
import pytest
from PIL import Image

from bgremover.engine import BatchItem, InputError, Remover
from bgremover.engine.devices import (
    DEVICES,
    Device,
    DeviceChoice,
    DeviceUnavailable,
    announce,
    candidates,
)
from bgremover.engine.models import ModelStore
from bgremover.engine.models.fp32 import batched_bytes

from .serving import output_of, served

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@pytest.fixture(autouse=True)
def fresh_announcements() -> Iterator[None]:
    """Each test sees the once-per-process log lines as a new process would."""
    announce.cache_clear()
    yield
    announce.cache_clear()


def remover(tiny_model: Path, tmp_path: Path, **kwargs: object) -> Remover:
    resolved = ModelStore(tmp_path / "models").resolve("isnet-general-use", tiny_model)
    return Remover(resolved, **kwargs)  # type: ignore[arg-type]


def test_the_setting_and_the_engine_know_the_same_devices() -> None:
    assert set(get_args(Device)) == set(DEVICES)


def test_auto_takes_the_best_accelerator_installed_and_the_cpu_last() -> None:
    assert candidates("auto", [CPU]) == [DeviceChoice("cpu", CPU)]
    # The CPU wheel lists Azure's remote provider too: no accelerator.
    assert candidates("auto", ["AzureExecutionProvider", CPU]) == [DeviceChoice("cpu", CPU)]
    offered = ["OpenVINOExecutionProvider", CUDA, CPU]
    assert [c.device for c in candidates("auto", offered)] == ["cuda", "openvino", "cpu"]
    # AMD's newer wheels name the ROCm device's provider MIGraphX.
    assert candidates("rocm", ["MIGraphXExecutionProvider", CPU]) == [
        DeviceChoice("rocm", "MIGraphXExecutionProvider")
    ]
    assert candidates("directml", ["DmlExecutionProvider", CPU])[0].accelerated


def test_a_named_device_that_is_missing_is_an_error_with_what_there_is_and_the_fix() -> None:
    with pytest.raises(DeviceUnavailable) as raised:
        candidates("cuda", ["AzureExecutionProvider", CPU])
    message = str(raised.value)
    assert "device 'cuda' is not available" in message
    assert "offers cpu" in message
    assert "pip install 'bgremover[gpu]'" in message
    assert raised.value.code == "device_unavailable"


def test_auto_without_an_accelerator_says_so_in_one_log_line_once(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bgremover.engine.devices"):
        first = remover(tiny_model, tmp_path, device="auto")
        remover(tiny_model, tmp_path, device="auto")
    assert first.device == DeviceChoice("cpu", CPU)
    lines = [r.getMessage() for r in caplog.records if r.name == "bgremover.engine.devices"]
    assert len(lines) == 1, lines
    assert "device auto" in lines[0] and "runs on the CPU" in lines[0]
    assert "\n" not in lines[0]
    assert "pip install 'bgremover[gpu]'" in lines[0]


@pytest.fixture
def cuda_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime lists CUDA but cannot start it (a GPU wheel without its CUDA libraries):
    the CPU wheel here, asked for CUDA, runs the session on the CPU instead, as such a
    broken GPU install does. Only the list is made up."""
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])


@pytest.mark.usefixtures("cuda_listed")
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_auto_falls_back_with_a_line_when_a_listed_accelerator_fails_to_start(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bgremover.engine.devices"):
        loaded = remover(tiny_model, tmp_path, device="auto")
    assert loaded.device == DeviceChoice("cpu", CPU)
    assert loaded.batch_size == 1  # the CPU's default
    lines = [r.getMessage() for r in caplog.records if r.name == "bgremover.engine.devices"]
    assert len(lines) == 1, lines
    assert "cuda (CUDAExecutionProvider) is installed but failed to start" in lines[0]
    assert "runs on cpu" in lines[0]


@pytest.mark.usefixtures("cuda_listed")
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_named_device_that_fails_to_start_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailable, match=r"device 'cuda' \(CUDAExecutionProvider\)"):
        remover(tiny_model, tmp_path, device="cuda")


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A different picture per seed, so that a mixed-up batch shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def test_a_batch_of_n_gives_the_masks_of_n_single_runs(tiny_model: Path, tmp_path: Path) -> None:
    images = [photo(320, 240, 1), photo(200, 300, 2), photo(640, 480, 3)]
    single = remover(tiny_model, tmp_path, device="cpu")
    batched = remover(tiny_model, tmp_path, device="cpu", batch_size=3)
    assert (single.batch_size, batched.batch_size) == (1, 3)

    results = batched.process_batch([BatchItem(image) for image in images])
    for image, result in zip(images, results, strict=True):
        assert not isinstance(result, Exception), result
        alone = single.process(image)
        assert result.mask.size == image.size
        assert np.array_equal(np.asarray(result.mask), np.asarray(alone.mask))


def test_process_many_batches_on_and_a_bad_image_fails_alone(
    tiny_model: Path, tmp_path: Path
) -> None:
    batched = remover(tiny_model, tmp_path, device="cpu", batch_size=2)
    stages: list[str] = []
    items = [
        BatchItem(photo(100, 80, 4), progress=lambda stage, _: stages.append(stage.value)),
        BatchItem(b"not an image"),
        BatchItem(photo(90, 120, 5)),
        BatchItem(photo(60, 60, 6)),
        BatchItem(photo(50, 70, 7)),
    ]
    results = list(batched.process_many(items))
    assert [item for item, _ in results] == items
    assert isinstance(results[1][1], InputError)
    assert all(not isinstance(r, Exception) for i, (_, r) in enumerate(results) if i != 1)
    assert [size for _, r in results if not isinstance(r, Exception) for size in [r.size]] == [
        (100, 80), (90, 120), (60, 60), (50, 70),
    ]  # fmt: skip
    assert "AI model" in stages and stages[-1] == "Saving"


@pytest.mark.model
def test_the_accelerators_copy_of_isnet_takes_a_batch_and_computes_what_was_shipped(
    remover: Remover, photos: dict[str, Path]
) -> None:
    """What a GPU loads (fp16 weights, one output, a free batch dimension), run here on the
    CPU: two photos as one tensor give the shipped model's output for the second (the split
    of a batch back into images is the tiny model's test above)."""
    import onnxruntime

    batched = onnxruntime.InferenceSession(batched_bytes(remover.model_path), providers=[CPU])
    shipped = onnxruntime.InferenceSession(str(remover.model_path), providers=[CPU])
    assert len(batched.get_outputs()) == 1
    name = shipped.get_inputs()[0].name
    tensors = [
        remover.model.preprocess(Image.open(photos[n]).convert("RGB"))
        for n in ("chelsea.jpg", "coffee.jpg")
    ]
    together = batched.run(None, {name: np.concatenate(tensors)})[0]
    alone = shipped.run([shipped.get_outputs()[0].name], {name: tensors[1]})[0]
    assert together.shape == (2, *alone.shape[1:])
    np.testing.assert_allclose(together[1], alone[0], atol=1e-3)
    assert not np.allclose(together[0], together[1], atol=1e-2)


def test_serve_shows_its_device_in_the_start_line_health_stats_and_config(
    tmp_path: Path, tiny_model: Path
) -> None:
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_MAX_CONCURRENT_JOBS": "1"}
    with served(tmp_path / "data", "--device", "cpu", env=env) as (url, process):
        assert httpx.get(f"{url}/api/health", timeout=10).json()["device"] == "cpu"
        assert httpx.get(f"{url}/api/stats", timeout=10).json()["device"] == "cpu"
        assert httpx.get(f"{url}/api/config", timeout=10).json()["device"] == "cpu"
        # The UI's footer, filled from /api/config (app.js showDevice).
        assert 'id="device"' in httpx.get(f"{url}/", timeout=10).text
        assert "(model on cpu;" in output_of(process)
