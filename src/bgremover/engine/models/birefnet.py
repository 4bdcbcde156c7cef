"""BiRefNet (2024; MIT licence) and models of its architecture (BRIA RMBG-2.0)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import SegmentationModel, register_family


@register_family
class BiRefNet(SegmentationModel):
    """1024² input, ImageNet mean and std on [0, 1] pixels; the graph gives logits, so the
    prediction is their sigmoid.

    Which output: BiRefNet's own inference (``inference.py``, the Hugging Face model card)
    takes the *last* of the model's predictions, ``model(x)[-1].sigmoid()``; in eval mode the
    model returns only its final map, so the ONNX exports (BiRefNet's ``Convert2ONNX``
    notebook, which rembg's ``birefnet-*.onnx`` files come from) carry that one output, and
    rembg's ``birefnet_general`` session reading output 0 reads the same tensor. We read the
    last output, which is BiRefNet's rule and rembg's too for those files, and stays right for
    an export that keeps the side outputs (they come first). rembg then stretches the sigmoid
    min-max, as our pipeline does for every family; BiRefNet's own code does not stretch,
    which for a confident map (values reaching 0 and 1) is the same.
    """

    name: ClassVar[str] = "birefnet-file"
    description: ClassVar[str] = "A BiRefNet ONNX file given by path"

    family: ClassVar[str] = "birefnet"
    input_size: ClassVar[tuple[int, int]] = (1024, 1024)
    mean: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)
    output_index: ClassVar[int] = -1

    def postprocess(self, output: np.ndarray) -> np.ndarray:
        logits = np.asarray(output[0, 0], dtype=np.float32)
        # 1 / (1 + e^-x) without overflow warnings for large negative logits.
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logits)), dtype=np.float32)
