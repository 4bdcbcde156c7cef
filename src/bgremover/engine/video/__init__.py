"""Clips: video files and animated GIF/WebP, cut frame by frame with the photo pipeline.

``probe`` says whether a file is a clip and checks it against the limits before a frame is
decoded; ``frames`` decodes upright frames with their presentation times; ``writers``
encodes the results (WebM VP9 and MOV ProRes 4444 with alpha, animated WebP/GIF, H.264 MP4
on a background, a ZIP of PNG frames); ``smoothing`` steadies the masks between frames;
``clip`` runs them together.
"""

from .clip import ClipResult, FrameCallback, MaskCheckpoints, process_clip
from .formats import CLIP_FORMATS, clip_format, still_format
from .probe import ClipInfo, ClipLimits, is_clip, open_clip

__all__ = [
    "CLIP_FORMATS",
    "ClipInfo",
    "ClipLimits",
    "ClipResult",
    "FrameCallback",
    "MaskCheckpoints",
    "clip_format",
    "is_clip",
    "open_clip",
    "process_clip",
    "still_format",
]
