"""The formats a result can be written in: its own module, free of heavy imports, because
the CLI's options name it before any command runs."""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    PNG = "png"
    WEBP = "webp"
    JPEG = "jpeg"
    MASK = "mask"

    @property
    def extension(self) -> str:
        return {"png": ".png", "webp": ".webp", "jpeg": ".jpg", "mask": ".png"}[self.value]

    def result_name(self, stem: str) -> str:
        """The file name of a result: ``photo`` → ``photo-no-bg.png`` (``photo-mask.png``)."""
        return f"{stem}{'-mask' if self is OutputFormat.MASK else '-no-bg'}{self.extension}"

    @property
    def media_type(self) -> str:
        return {
            "png": "image/png",
            "webp": "image/webp",
            "jpeg": "image/jpeg",
            "mask": "image/png",
        }[self.value]
