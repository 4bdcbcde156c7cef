"""The Python API: ``bgremover.remove(image)`` and ``load_remover(settings)``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from .config import Settings
from .engine import RemoveOptions, Remover
from .engine.decode import ImageSource
from .engine.models import ModelStore


def load_remover(settings: Settings | None = None) -> Remover:
    """A ``Remover`` for the configured model, fetching the model first if it is missing."""
    settings = settings or Settings()
    store = ModelStore(settings.models_dir)
    return Remover(
        store.resolve(settings.model, settings.model_path),
        intra_op_threads=settings.intra_op_threads,
        lean_memory=settings.lean_model_memory,
        max_image_pixels=settings.max_image_pixels,
        max_input_bytes=settings.max_upload_bytes,
        device=settings.device,
        batch_size=settings.batch_size,
    )


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
