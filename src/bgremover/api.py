"""The Python API: ``bgremover.remove(image)`` and ``load_remover(settings)``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from .engine import RemoveOptions, Remover
from .engine.decode import ImageSource
from .workers.removers import load_remover

__all__ = ["load_remover", "remove"]


@lru_cache(maxsize=1)
def _default_remover() -> Remover:
    # One loaded model per process for the convenience function, as the CLI does per run.
    return load_remover()


def remove(image: ImageSource, **options: Any) -> Image.Image:
    """Remove the background of one image (path, bytes, PIL image or uint8 array).

    Keyword options are those of ``RemoveOptions`` (``background_color="white"``,
    ``format="mask"``, ``alpha_matting=True``, ...). Returns a PIL image: RGBA cut-out by
    default, RGB on a background, L for a mask.
    """
    return _default_remover().remove(image, RemoveOptions(**options))
