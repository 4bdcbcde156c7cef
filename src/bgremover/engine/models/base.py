"""The model contract and the registry: adding a model is one small class in one file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
from PIL import Image

from ..errors import ModelError


@dataclass(frozen=True)
class ModelSource(ABC):
    """Where a model's weights come from; ``fetch`` writes a verified copy to ``dest``."""

    @abstractmethod
    def fetch(self, dest: Path) -> None: ...

    @abstractmethod
    def describe(self) -> str: ...


class SegmentationModel(ABC):
    """A salient-object model: an RGB image in, a foreground probability map out."""

    name: ClassVar[str]
    description: ClassVar[str]
    file_name: ClassVar[str]
    sha256: ClassVar[str | None]
    """Hash of the whole ONNX file; None for a file the user supplied."""
    size_bytes: ClassVar[int | None]
    source: ClassVar[ModelSource | None]

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The model's input tensor for an RGB image (resizing and normalisation)."""

    @abstractmethod
    def postprocess(self, output: np.ndarray) -> np.ndarray:
        """A float32 HxW mask in 0–1 at the model's resolution from its first output."""


_M = TypeVar("_M", bound=type[SegmentationModel])
_REGISTRY: dict[str, type[SegmentationModel]] = {}


def register(cls: _M) -> _M:
    """Class decorator: make a model available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def registered_models() -> dict[str, type[SegmentationModel]]:
    return dict(_REGISTRY)


def get_model(name: str) -> type[SegmentationModel]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(
            f"unknown model {name!r}; known models: {known} (or set BGREMOVER_MODEL_PATH to an "
            "ISNet-compatible .onnx file)",
            code="unknown_model",
        ) from None
