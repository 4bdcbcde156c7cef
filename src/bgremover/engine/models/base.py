"""The model contract and the registry: adding a model is one small class in one file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
from PIL import Image

from ..decode import in_mode
from ..errors import ModelError


@dataclass(frozen=True)
class ModelSource(ABC):
    """Where a model's weights come from; ``fetch`` writes a verified copy to ``dest``."""

    @abstractmethod
    def fetch(self, dest: Path) -> None: ...

    @abstractmethod
    def describe(self) -> str: ...


class SegmentationModel(ABC):
    """A salient-object model: an RGB image in, a foreground probability map out.

    A family (ISNet, U²-Net, BiRefNet, BRIA RMBG) is a subclass that states its input size,
    normalisation and which output it reads, and how that output becomes a 0–1 map; a
    subclass of a family only says which weights."""

    name: ClassVar[str]
    description: ClassVar[str]
    file_name: ClassVar[str] = ""
    """The downloaded file's name in the models folder (built-in models)."""
    sha256: ClassVar[str | None] = None
    """Hash of the whole ONNX file; None for a file the user supplied."""
    size_bytes: ClassVar[int | None] = None
    source: ClassVar[ModelSource | None] = None
    """Where a built-in model is downloaded from; None for a family's own class."""

    family: ClassVar[str]
    """The family's name, as ``bgremover models add --family`` takes it."""
    input_size: ClassVar[tuple[int, int]]
    """(width, height) of the model's input."""
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    """Per-channel normalisation of pixels scaled to 0–1 by the image's brightest value."""
    output_index: ClassVar[int] = 0
    """Which of the graph's outputs is the prediction (Python indexing: -1 is the last)."""

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The model's input tensor for an RGB image: Lanczos resize, divide by the
        brightest channel value, normalise per channel, NCHW float32.

        Scaling by the image's own maximum (not 255) is what rembg does for every family; it
        lifts dim photos and keeps our masks within IoU 0.99 of rembg's for the same network.
        """
        resized = in_mode(image, "RGB").resize(self.input_size, Image.Resampling.LANCZOS)
        pixels = np.asarray(resized, dtype=np.float32)
        pixels /= max(float(pixels.max()), 1e-6)
        tensor = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(tensor.transpose(2, 0, 1)[np.newaxis])

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        """A float32 HxW map at the model's resolution from the output ``output_index``
        names (the pipeline then stretches it min-max to 0–1, as rembg does for every
        family). Default: the first channel of the first image, as the graph gives it."""
        return np.asarray(output[0, 0], dtype=np.float32)


_M = TypeVar("_M", bound=type[SegmentationModel])
_REGISTRY: dict[str, type[SegmentationModel]] = {}


def register(cls: _M) -> _M:
    """Class decorator: make a model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_models() -> dict[str, type[SegmentationModel]]:
    return dict(_REGISTRY)


def get_model(name: str, *, added: list[str] | None = None) -> type[SegmentationModel]:
    """The built-in model ``name``; the error lists these and the ``added`` ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join([*sorted(_REGISTRY), *(added or [])])
        raise ModelError(
            f"unknown model {name!r}; known models: {known} (add your own ONNX file with "
            "`bgremover models add NAME --family F --file PATH`)",
            code="unknown_model",
        ) from None


_FAMILIES: dict[str, type[SegmentationModel]] = {}


def register_family(cls: _M) -> _M:
    """Class decorator: make a family's pre/post-processing available by its ``family``
    name, for model files the user adds (``bgremover models add --family``)."""
    _FAMILIES[cls.family] = cls
    return cls


def families() -> dict[str, type[SegmentationModel]]:
    """Every family by name."""
    return dict(_FAMILIES)


def get_family(name: str) -> type[SegmentationModel]:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ModelError(
            f"unknown model family {name!r}; choose one of {', '.join(sorted(_FAMILIES))}",
            code="unknown_family",
        ) from None
