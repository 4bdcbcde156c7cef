"""U²-Net (2020) and its variants (u2netp, u2net_human_seg, silueta): 320² input."""

from __future__ import annotations

from typing import ClassVar

from .base import SegmentationModel, register_family


@register_family
class U2Net(SegmentationModel):
    """320² input, ImageNet mean and std on [0, 1] pixels; the graph has seven outputs (the
    fused map d0, then the six side maps d1–d6), each already a sigmoid, and the first is the
    prediction. rembg's ``u2net`` session reads output 0 and stretches it min-max; U²-Net's
    own ``u2net_test.py`` takes ``d1`` (its name for the fused map, the first returned) and
    min-max normalises it too."""

    name: ClassVar[str] = "u2net-file"
    description: ClassVar[str] = "A U²-Net ONNX file given by path"

    family: ClassVar[str] = "u2net"
    input_size: ClassVar[tuple[int, int]] = (320, 320)
    mean: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)
    std: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)
