"""Encoding a clip's result frames: one writer per output format, each fed frames in
order with their times and closed once (the caller makes the file atomic).

VP9 and ProRes keep the alpha channel (browsers play the WebM; editors take the MOV);
H.264 has none, so an MP4 is the cut-out on its background; GIF and animated WebP are
written by Pillow (FFmpeg reads no animated WebP, and Pillow's GIF keeps transparency).
"""

from __future__ import annotations

import zipfile
from fractions import Fraction
from pathlib import Path
from typing import Protocol, cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image

from ..errors import OutputError
from ..options import OutputFormat
from ..png import write_png

_MS = Fraction(1, 1000)
"""The time base of written frames: milliseconds keep any source's timestamps to the ms."""


class ClipWriter(Protocol):
    def write(self, image: Image.Image, time: float) -> None:
        """Add the next frame, shown from ``time`` seconds."""

    def close(self) -> None:
        """Finish the file (audio, trailers)."""


# (codec, pixel format, codec options) per format that FFmpeg writes.
_VIDEO = {
    OutputFormat.WEBM: ("libvpx-vp9", "yuva420p",
                        {"deadline": "realtime", "cpu-used": "8", "threads": "1", "crf": "32",
                         "b": "0", "auto-alt-ref": "0"}),
    OutputFormat.MOV: ("prores_ks", "yuva444p10le",
                       {"profile": "4444", "alpha_bits": "16", "threads": "1"}),
    OutputFormat.MP4: ("libx264", "yuv420p", {"preset": "veryfast", "crf": "20", "threads": "1"}),
}  # fmt: skip
# Audio a container takes as it is; anything else is re-encoded to the first.
_AUDIO = {
    OutputFormat.WEBM: ("libopus", {"opus", "vorbis"}),
    OutputFormat.MOV: ("aac", {"aac", "mp3", "alac", "pcm_s16le", "ac3"}),
    OutputFormat.MP4: ("aac", {"aac", "mp3", "alac", "ac3", "opus"}),
}


def open_writer(
    fmt: OutputFormat, path: Path, fps: Fraction, *, audio_from: Path | None = None
) -> ClipWriter:
    """A writer of ``fmt`` at ``path``; ``audio_from``: a file whose first audio stream is
    copied (or re-encoded where the container cannot hold it) once the frames are in."""
    if fmt in _VIDEO:
        return _VideoWriter(fmt, path, fps, audio_from)
    if fmt in (OutputFormat.GIF, OutputFormat.WEBP):
        return _AnimationWriter(fmt, path)
    if fmt is OutputFormat.ZIP:
        return _ZipWriter(path)
    raise OutputError(f"{fmt.value} is not a clip format; choose webm, mov, mp4, gif, webp or zip")


class _VideoWriter:
    def __init__(self, fmt: OutputFormat, path: Path, fps: Fraction, audio: Path | None) -> None:
        self._container = av.open(str(path), "w", format=fmt.value)  # the name may be a temp one
        codec, pix_fmt, options = _VIDEO[fmt]
        stream = self._container.add_stream(codec, rate=fps, options=dict(options))
        self._stream = cast(VideoStream, stream)
        self._stream.pix_fmt = pix_fmt
        self._stream.codec_context.time_base = _MS
        self._pix_fmt = pix_fmt
        self._last_pts = -1
        self._size: tuple[int, int] | None = None
        # Every stream is added before the first frame is written (the header lists them).
        self._audio = _Audio(fmt, audio, self._container) if audio is not None else None

    def write(self, image: Image.Image, time: float) -> None:
        if self._size is None:
            self._size = _even(image.size) if self._pix_fmt == "yuv420p" else image.size
            self._stream.width, self._stream.height = self._size
        if image.size != self._size:
            image = image.crop((0, 0, *self._size))
        mode = "RGBA" if self._pix_fmt.startswith("yuva") else "RGB"
        pixels = np.asarray(image.convert(mode))
        frame = av.VideoFrame.from_ndarray(pixels, format="rgba" if mode == "RGBA" else "rgb24")
        pts = max(round(time / _MS), self._last_pts + 1)  # strictly increasing, as muxers need
        frame.pts, frame.time_base, self._last_pts = pts, _MS, pts
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))
            if self._audio is not None:
                self._audio.write()
        finally:
            if self._audio is not None:
                self._audio.source.close()
            self._container.close()


class _Audio:
    """The source's first audio stream into the output: its packets as they are where the
    container takes the codec, else decoded and encoded again (AAC into WebM: Opus)."""

    def __init__(self, fmt: OutputFormat, source: Path, out: av.container.OutputContainer) -> None:
        self.source = av.open(str(source))
        self._out = out
        self._input = self.source.streams.audio[0]
        codec, copyable = _AUDIO[fmt]
        self._copy = self._input.codec_context.name in copyable
        self._stream: AudioStream
        if self._copy:
            self._stream = out.add_stream_from_template(self._input)
        else:
            rate = 48000 if codec == "libopus" else self._input.codec_context.sample_rate
            self._stream = cast(AudioStream, out.add_stream(codec, rate=rate))

    def write(self) -> None:
        if self._copy:
            for packet in self.source.demux(self._input):
                if packet.dts is not None:
                    packet.stream = self._stream
                    self._out.mux(packet)
            return
        for frame in self.source.decode(self._input):
            frame.pts = None
            self._out.mux(self._stream.encode(frame))
        self._out.mux(self._stream.encode(None))


def _even(size: tuple[int, int]) -> tuple[int, int]:
    """H.264's 4:2:0 needs even sides: an odd one loses its last pixel row or column."""
    width, height = size
    return max(2, width - width % 2), max(2, height - height % 2)


class _AnimationWriter:
    """Animated GIF or WebP: frames are held until ``close`` (they are for short clips)."""

    def __init__(self, fmt: OutputFormat, path: Path) -> None:
        self._fmt, self._path = fmt, path
        self._frames: list[Image.Image] = []
        self._times: list[float] = []

    def write(self, image: Image.Image, time: float) -> None:
        self._frames.append(image)
        self._times.append(time)

    def close(self) -> None:
        if not self._frames:
            return
        steps = [b - a for a, b in zip(self._times, self._times[1:], strict=False)]
        durations = [max(20, round(s * 1000)) for s in steps]
        durations.append(durations[-1] if durations else 100)
        first, *rest = self._frames
        common = {"save_all": True, "append_images": rest, "duration": durations, "loop": 0}
        if self._fmt is OutputFormat.GIF:
            first.save(self._path, "GIF", disposal=2, optimize=False, **common)
        else:
            first.save(self._path, "WEBP", quality=90, method=2, **common)


class _ZipWriter:
    """Every frame as ``frame-000001.png`` in a ZIP (PNG is compressed already: stored)."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED)
        self._count = 0

    def write(self, image: Image.Image, time: float) -> None:
        self._count += 1
        self._zip.writestr(f"frame-{self._count:06d}.png", write_png(image))

    def close(self) -> None:
        self._zip.close()
