"""What a preset holds, and the rule for its name: pydantic models without the database layer,
so `bgremover remove` reads its options without loading SQLAlchemy (``presets`` stores them).

A preset name reaches HTML, URLs and messages, so it is held to a strict alphabet here, once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ..engine.options import ModelName, OutputFormat, RemoveOptions, parse_color

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?")
NAME_RULE = (
    "a preset name is 1–64 letters (A–Z, a–z), digits, spaces, '-' or '_', "
    "starting with a letter or digit and not ending in a space"
)


def _valid_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid preset name: {NAME_RULE}")
    return value


PresetName = Annotated[str, AfterValidator(_valid_name)]


def _hex_color(value: object) -> str | None:
    """Any colour ``parse_color`` reads, kept as ``#rrggbb`` (``#rrggbbaa`` when not opaque);
    ``none`` is no colour (so a form field can clear a preset's)."""
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    rgba = parse_color(value)
    if rgba is None:
        return None
    text = "#" + "".join(f"{c:02x}" for c in rgba)
    return text[:7] if rgba[3] == 255 else text


class PresetOptions(BaseModel):
    """What a preset sets: the options ``POST /api/batches`` takes besides the files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: OutputFormat = OutputFormat.PNG
    background_color: Annotated[str | None, BeforeValidator(_hex_color)] = None
    """Composite onto this colour; none leaves the background transparent."""
    alpha_matting: bool = False
    refine_foreground: bool = False
    post_process_mask: bool = False
    temporal_smoothing: bool = False
    """Clips: steady the masks between frames (``RemoveOptions.temporal_smoothing``)."""
    model: ModelName | None = None
    """The model (None: the server's default)."""
    priority: int = Field(default=0, ge=-1000, le=1000)

    def overridden(self, **given: Any) -> PresetOptions:
        """These options with every field in ``given`` that is not None replacing its own
        (``background_color="none"`` clears the preset's)."""
        changes = {key: value for key, value in given.items() if value is not None}
        own = self.model_dump(include=set(PresetOptions.model_fields))
        return PresetOptions.model_validate({**own, **changes})

    def remove_options(self, **extra: Any) -> RemoveOptions:
        """The image options (all but the queue priority), with ``extra`` ones a preset does
        not hold (a background image, quality)."""
        fields = self.model_dump(include=set(PresetOptions.model_fields) - {"priority"})
        return RemoveOptions(**fields, **extra)


class Preset(PresetOptions):
    name: PresetName
