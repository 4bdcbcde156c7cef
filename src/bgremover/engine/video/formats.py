"""Which result format a clip or a photo gets when asked for the other kind's format, so a
batch of photos and clips can share one set of options."""

from __future__ import annotations

from ..output_format import OutputFormat

CLIP_FORMATS = frozenset(
    {OutputFormat.WEBM, OutputFormat.MOV, OutputFormat.GIF, OutputFormat.MP4, OutputFormat.ZIP}
)
"""Formats only a clip is written in (WebP is both: a still or an animation)."""

_FOR_CLIPS = {
    OutputFormat.PNG: OutputFormat.WEBM,  # transparent, and it plays in browsers
    OutputFormat.JPEG: OutputFormat.MP4,  # opaque on a background, as JPEG is
    OutputFormat.MASK: OutputFormat.ZIP,  # the masks as PNG frames
}
_FOR_STILLS = {
    OutputFormat.WEBM: OutputFormat.PNG,
    OutputFormat.MOV: OutputFormat.PNG,
    OutputFormat.GIF: OutputFormat.PNG,
    OutputFormat.ZIP: OutputFormat.PNG,
    OutputFormat.MP4: OutputFormat.JPEG,
}


def clip_format(fmt: OutputFormat) -> OutputFormat:
    """The format a clip is written in when ``fmt`` is asked for."""
    return _FOR_CLIPS.get(fmt, fmt)


def still_format(fmt: OutputFormat) -> OutputFormat:
    """The format a photo (or a one-frame GIF) is written in when ``fmt`` is asked for."""
    return _FOR_STILLS.get(fmt, fmt)
