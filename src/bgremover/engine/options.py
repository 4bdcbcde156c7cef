"""What a caller may ask of one removal; validated once, shared by the API, CLI and jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from PIL import ImageColor
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# Re-exported: its own module keeps it importable without pydantic (the CLI's --help).
from .output_format import OutputFormat as OutputFormat

RGBA = tuple[int, int, int, int]

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A model's name (built-in or added): it reaches URLs, HTML and file names."""
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


def parse_color(value: object) -> RGBA | None:
    """``"#ff0000"``, ``"#f00a"``, ``"white"``, ``"rgb(1,2,3)"`` or a 3/4-tuple as RGBA."""
    if value is None or value == "":
        return None
    if isinstance(value, (tuple, list)) and len(value) in (3, 4):
        channels = tuple(int(v) for v in value)
    elif isinstance(value, str):
        try:
            channels = ImageColor.getcolor(value.strip(), "RGBA")  # type: ignore[assignment]
        except ValueError:
            raise ValueError(
                f"{value!r} is not a colour; use a name (white), #rrggbb, #rrggbbaa or rgb(r,g,b)"
            ) from None
    else:
        raise ValueError(f"{value!r} is not a colour")
    if len(channels) == 3:
        channels = (*channels, 255)
    if any(not 0 <= c <= 255 for c in channels):
        raise ValueError(f"colour channels must be 0–255, got {channels}")
    return channels  # type: ignore[return-value]


Color = Annotated[RGBA | None, BeforeValidator(parse_color)]


class RemoveOptions(BaseModel):
    """Output and quality options for one image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: OutputFormat = OutputFormat.PNG
    background_color: Color = None
    """Composite onto this colour instead of leaving the background transparent."""
    background_image: Path | None = None
    """Composite onto this image (scaled to cover, centred)."""
    background_blur: float = Field(default=0.0, ge=0.0, le=100.0)
    """Gaussian blur radius applied to ``background_image``."""
    brightness: float = Field(default=1.0, ge=0.0, le=2.0)
    """Scale the subject's colours (1 unchanged, 0 black), as CSS ``brightness()`` does."""
    contrast: float = Field(default=1.0, ge=0.0, le=2.0)
    """Spread the subject's colours from mid-grey (1 unchanged, 0 grey), as CSS
    ``contrast()`` does; applied after brightness."""
    alpha_matting: bool = False
    """Refine soft edges (hair, fur) with closed-form matting; slower."""
    alpha_matting_foreground_threshold: int = Field(default=240, ge=1, le=255)
    alpha_matting_background_threshold: int = Field(default=10, ge=0, le=254)
    alpha_matting_erode_size: int = Field(default=10, ge=0, le=100)
    refine_foreground: bool = False
    """Estimate the subject's own colours on its soft edges (hair, fur), so the old
    background's colour does not show through them on a new one; the mask is unchanged.
    It cuts the edges' colour error to 0.42×, for 15–16 % of a 12 MP job on an idle
    2-core CPU (bench/quality_bench.py --cost): just over the 15 % at which it would be on
    by default. A mask output has no colours to refine."""
    post_process_mask: bool = False
    """Smooth the mask and cut it to hard edges (removes speckles)."""
    temporal_smoothing: bool = False
    """Clips: steady each frame's mask with the previous one's where the picture did not
    move (``engine.video.smoothing``), against edges that shimmer on a still camera."""
    quality: int = Field(default=90, ge=1, le=100)
    """WebP and JPEG quality."""
    model: ModelName | None = None
    """Which model makes the mask (``bgremover models list``); None: the worker's default
    (``BGREMOVER_MODEL``). The caller picks the ``Remover``; the engine does not read it."""

    @model_validator(mode="after")
    def _consistent(self) -> RemoveOptions:
        if self.background_color is not None and self.background_image is not None:
            raise ValueError("give a background colour or a background image, not both")
        if self.alpha_matting_background_threshold >= self.alpha_matting_foreground_threshold:
            raise ValueError("alpha matting: background threshold must be below the foreground one")
        return self
