"""The one sanitiser for every name that reaches a path-like place (an archive entry, a
``Content-Disposition`` header, the UI): uploads, form fields and imported rows all pass here,
so no name can carry a folder, a control character (CR/LF splits headers) or unbounded length."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

MAX_NAME = 200


def clean_text(raw: str | None, limit: int = MAX_NAME) -> str:
    """NFC text without control or format characters, trimmed, at most ``limit`` long."""
    text = unicodedata.normalize("NFC", raw or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C").strip()
    return text[:limit].strip()


def display_name(raw: str | None) -> str:
    """A safe file name for showing and for download names: no folders, no control
    characters, no leading dots; ``image`` when nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = clean_text(name, limit=len(name)).strip(" .")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (
            (stem[: MAX_NAME - len(ext) - 1] + dot + ext)
            if dot and len(ext) < 10
            else name[:MAX_NAME]
        )
    return name or "image"


def _visible(value: str) -> str:
    cleaned = clean_text(value)
    if not cleaned:
        raise ValueError("a name needs at least one visible character")
    return cleaned


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_visible)]
"""A batch or session name as a pydantic field: cleaned, never blank."""

FileName = Annotated[str, Field(max_length=1000), AfterValidator(display_name)]
"""A file name as a pydantic field: through ``display_name``."""
