"""BRIA RMBG-1.4 (2023; BRIA's non-commercial licence): ISNet's architecture, BRIA's weights."""

from __future__ import annotations

from typing import ClassVar

from .base import SegmentationModel, register_family


@register_family
class BriaRmbg(SegmentationModel):
    """1024² input, mean 0.5 and std 1.0 on [0, 1] pixels; the first output is a sigmoid map,
    stretched min-max.

    The constants are BRIA's own ``utilities.py`` (``normalize(image / 255, [0.5]*3,
    [1.0]*3)``, then ``(result - mi) / (ma - mi)``); rembg's ``bria_rmbg`` session normalises
    with the ImageNet mean and std instead, and we follow the model's publisher. The resize
    (Lanczos; BRIA's code is bilinear) and the divide by the image's brightest value (BRIA's
    by 255, the same for any photo with a white-ish pixel) are rembg's, as for every family.
    RMBG-2.0 is a BiRefNet: add its file with ``--family birefnet``."""

    name: ClassVar[str] = "bria-rmbg-file"
    description: ClassVar[str] = "A BRIA RMBG-1.4 ONNX file given by path"

    family: ClassVar[str] = "bria-rmbg"
    input_size: ClassVar[tuple[int, int]] = (1024, 1024)
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, float, float]] = (1.0, 1.0, 1.0)
