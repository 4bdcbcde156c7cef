"""The Python API: ``bgremover.remove(image)``, ``remove_clip(clip, destination)`` and
``load_remover(settings)``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .config import Settings
from .engine import RemoveOptions, Remover
from .engine.decode import ImageSource
from .workers.removers import load_remover

if TYPE_CHECKING:
    from .engine.video.clip import ClipResult, FrameCallback

__all__ = ["load_remover", "remove", "remove_clip"]


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


def remove_clip(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    progress: FrameCallback | None = None,
    **options: Any,
) -> ClipResult:
    """Cut out a clip (MP4, MOV, WebM, MKV, animated GIF or WebP) into ``destination``.

    Keyword options are those of ``RemoveOptions``; ``format`` picks the result: ``webm``
    (VP9 with alpha, the default), ``mov`` (ProRes 4444 with alpha), ``mp4`` (H.264 on a
    background), ``gif``, ``webp`` or ``zip`` (PNG frames). ``progress(done, frames)``
    is called before the first frame and after each.
    """
    from .engine.video.clip import process_clip
    from .engine.video.probe import open_clip
    from .workers.clips import clip_limits

    settings = settings or Settings()
    path = Path(os.fspath(source))
    info = open_clip(path, clip_limits(settings), name=str(path))
    remover = _default_remover() if settings == Settings() else load_remover(settings)
    return process_clip(
        remover, path, Path(os.fspath(destination)), RemoveOptions(**options), info,
        name=str(path), progress=progress,
    )  # fmt: skip
