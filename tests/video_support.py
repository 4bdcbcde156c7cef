"""Small generated clips for the video tests and bench: a sample photo moving over a
coloured background (320×240, 10 fps), with and without sound, turned, animated, broken."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SIZE = (320, 240)


def moving_frames(count: int = 20, size: tuple[int, int] = SIZE) -> list[Image.Image]:
    """The cat photo, a third of the width, sliding left to right over green."""
    width, height = size
    photo = Image.open(SAMPLES / "chelsea.jpg").convert("RGB")
    photo = photo.resize((width // 3, round(width / 3 * photo.height / photo.width)))
    frames = []
    for index in range(count):
        frame = Image.new("RGB", size, (30, 140, 60))
        x = round(index * (width - photo.width) / max(1, count - 1))
        frame.paste(photo, (x, (height - photo.height) // 2))
        frames.append(frame)
    return frames


def still_frames(count: int = 20, size: tuple[int, int] = SIZE) -> list[Image.Image]:
    """A still camera: the photo in place, with a little sensor noise per frame."""
    base = np.asarray(moving_frames(1, size)[0], dtype=np.int16)
    noise = np.random.default_rng(7)
    return [
        Image.fromarray(np.clip(base + noise.integers(-6, 7, base.shape), 0, 255).astype(np.uint8))
        for _ in range(count)
    ]


def write_mp4(
    path: Path,
    frames: list[Image.Image],
    *,
    fps: int = 10,
    audio: bool = False,
    rotation: int | None = None,
    codec: str = "libx264",
) -> Path:
    """H.264 (or ``codec``) in what ``path``'s suffix says; ``audio``: a 440 Hz AAC tone."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=44100) if audio else None
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
        out.mux(stream.encode(None))
        if sound is not None:
            seconds = len(frames) / fps
            t = np.arange(int(44100 * seconds)) / 44100
            tone = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)[None, :]
            chunk = 1024
            for start in range(0, tone.shape[1], chunk):
                piece = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(tone[:, start : start + chunk]), format="fltp",
                    layout="mono",
                )  # fmt: skip
                piece.sample_rate = 44100
                piece.pts = start
                piece.time_base = Fraction(1, 44100)
                out.mux(sound.encode(piece))
            out.mux(sound.encode(None))
    return path


def write_animation(path: Path, frames: list[Image.Image], fmt: str) -> Path:
    """An animated GIF or WebP at 10 fps."""
    first, *rest = frames
    first.save(path, fmt, save_all=True, append_images=rest, duration=100, loop=0)
    return path
