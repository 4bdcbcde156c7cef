"""Mask: from the model's probability map to an alpha channel at the image's own size."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# Closed-form matting is O(pixels) with a large constant; solve it at about a megapixel and
# scale the result up, as rembg does, so a 12 MP photo takes seconds rather than minutes.
_MATTING_MAX_SIDE = 1024


def stretch(prediction: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0–1, so the most confident pixel is fully opaque."""
    low, high = float(prediction.min()), float(prediction.max())
    if high - low < 1e-6:
        return np.zeros_like(prediction, dtype=np.float32)
    return ((prediction - low) / (high - low)).astype(np.float32)


def to_size(mask: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """An 8-bit mask resized to ``size`` (width, height).

    Rounded to 8 bits where rembg and ISNet's own code truncate: the one step in which our
    masks differ from rembg's for the same network (a dithered 451×300 palette photo: IoU
    0.995 rounded, 1.000 truncated). Truncated, only the single most confident pixel reaches
    255 and a solid subject comes out at 254, slightly see-through (coffee.jpg: 0 % of its
    subject opaque, 92 % rounded), so we keep rounding.
    """
    image = Image.fromarray(np.round(mask * 255.0).astype(np.uint8), mode="L")
    return image.resize(size, Image.Resampling.LANCZOS)


def post_process(mask: Image.Image) -> Image.Image:
    """Open (remove specks), blur and threshold: hard, smooth edges."""
    opened = mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    blurred = opened.filter(ImageFilter.GaussianBlur(2))
    return blurred.point(lambda v: 255 if v >= 127 else 0)


def alpha_matting(
    image: Image.Image,
    mask: Image.Image,
    *,
    foreground_threshold: int,
    background_threshold: int,
    erode_size: int,
) -> tuple[Image.Image, Image.Image]:
    """Refined alpha and the estimated pure foreground colours (no background fringe)."""
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    full_size = image.size
    scale = min(1.0, _MATTING_MAX_SIDE / max(full_size))
    work_size = (max(1, round(full_size[0] * scale)), max(1, round(full_size[1] * scale)))
    rgb = image.convert("RGB").resize(work_size, Image.Resampling.BILINEAR)
    small_mask = mask.resize(work_size, Image.Resampling.BILINEAR)

    trimap = _trimap(small_mask, foreground_threshold, background_threshold, erode_size)
    pixels = np.asarray(rgb, dtype=np.float64) / 255.0
    alpha = np.clip(estimate_alpha_cf(pixels, trimap / 255.0), 0.0, 1.0)
    foreground = np.clip(estimate_foreground_ml(pixels, alpha), 0.0, 1.0)

    alpha_image = Image.fromarray(np.round(alpha * 255).astype(np.uint8), mode="L")
    fg_image = Image.fromarray(np.round(foreground * 255).astype(np.uint8), mode="RGB")
    if work_size != full_size:
        alpha_image = alpha_image.resize(full_size, Image.Resampling.LANCZOS)
        fg_image = fg_image.resize(full_size, Image.Resampling.LANCZOS)
    return alpha_image, fg_image


def _trimap(mask: Image.Image, fg_threshold: int, bg_threshold: int, erode: int) -> np.ndarray:
    """255 sure foreground, 0 sure background, 128 unknown; sure regions eroded by ``erode``."""
    values = np.asarray(mask)
    foreground = Image.fromarray(((values > fg_threshold) * 255).astype(np.uint8), mode="L")
    background = Image.fromarray(((values < bg_threshold) * 255).astype(np.uint8), mode="L")
    if erode > 0:
        kernel = ImageFilter.MinFilter(2 * erode + 1)
        foreground, background = foreground.filter(kernel), background.filter(kernel)
    trimap = np.full(values.shape, 128, dtype=np.float64)
    trimap[np.asarray(foreground) > 0] = 255
    trimap[np.asarray(background) > 0] = 0
    return trimap
