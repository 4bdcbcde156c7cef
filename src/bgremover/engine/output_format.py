"""The formats a result can be written in: its own module, free of heavy imports, because
the CLI's options name it before any command runs."""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    PNG = "png"
    WEBP = "webp"
    JPEG = "jpeg"
    MASK = "mask"
    # Clips (``engine.video``): a photo asked for one of these gets ``still_format``'s.
    WEBM = "webm"
    """VP9 with alpha: plays in browsers."""
    MOV = "mov"
    """ProRes 4444 with alpha: for video editors."""
    GIF = "gif"
    MP4 = "mp4"
    """H.264 on a background colour or image (white unless told)."""
    ZIP = "zip"
    """Every frame as a PNG."""

    @property
    def extension(self) -> str:
        return {"jpeg": ".jpg", "mask": ".png"}.get(self.value, f".{self.value}")

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
            "webm": "video/webm",
            "mov": "video/quicktime",
            "gif": "image/gif",
            "mp4": "video/mp4",
            "zip": "application/zip",
        }[self.value]
