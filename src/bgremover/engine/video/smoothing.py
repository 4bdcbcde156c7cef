"""Temporal smoothing of a clip's masks, and the flicker it removes.

A model sees each frame alone, so on a still camera the edge of a mask shimmers from frame
to frame. ``Smoother`` blends each mask with the previous smoothed one, but only where the
picture did not change: where something moved, the new mask wins at once, so a moving
subject is not followed by a ghost. Costs two greyscale differences per frame.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageChops, ImageFilter

STRENGTH = 0.6
"""The previous mask's weight where the picture is still (0: no smoothing)."""
MOTION_LEVEL = 16
"""A grey-level change (of 255, box-blurred over 5×5 pixels) at and above which a pixel
counts as moving and keeps this frame's mask alone."""


class Smoother:
    """Feed it each frame's image and model mask in order; it returns the smoothed mask."""

    def __init__(self, strength: float = STRENGTH, motion_level: float = MOTION_LEVEL) -> None:
        self._strength = strength
        self._motion_level = motion_level
        self._grey: Image.Image | None = None
        self._mask: np.ndarray | None = None

    def __call__(self, image: Image.Image, mask: Image.Image) -> Image.Image:
        grey = image.convert("L")
        current = np.asarray(mask, dtype=np.float32)
        if self._grey is None or self._mask is None or self._mask.shape != current.shape:
            smoothed = current
        else:
            change = ImageChops.difference(grey, self._grey).filter(ImageFilter.BoxBlur(2))
            still = 1.0 - np.minimum(np.asarray(change, np.float32) / self._motion_level, 1.0)
            weight = self._strength * still
            smoothed = weight * self._mask + (1.0 - weight) * current
        self._grey, self._mask = grey, smoothed
        return Image.fromarray(np.clip(np.rint(smoothed), 0, 255).astype(np.uint8), "L")


def flicker(masks: Iterable[Image.Image]) -> float:
    """Mean absolute alpha change between consecutive masks, as a share of full (0-1): on a
    still camera's clip, every bit of it is flicker."""
    changes: list[float] = []
    previous: np.ndarray | None = None
    for mask in masks:
        current = np.asarray(mask, dtype=np.float32) / 255.0
        if previous is not None:
            changes.append(float(np.abs(current - previous).mean()))
        previous = current
    return float(np.mean(changes)) if changes else 0.0
