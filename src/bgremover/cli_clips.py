"""``bgremover remove clip.mp4``: the clips among the inputs, cut one after another after the
photos, each with a progress row that says which frame it is on."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

from .engine.output_format import OutputFormat

if TYPE_CHECKING:
    from .cli import Outcome, Planned
    from .config import Settings
    from .engine import RemoveOptions, Remover

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv"}
"""What a folder given to ``remove`` is searched for besides images."""


def split_clips(planned: list[Planned], fmt: OutputFormat) -> tuple[list[Planned], list[Planned]]:
    """(photos, clips) with each output named for the format it is written in: a clip asked
    for png is a WebM, a photo asked for webm a PNG (``engine.video.formats``)."""
    from dataclasses import replace

    from .engine.video.formats import clip_format, still_format
    from .engine.video.probe import is_clip

    photos: list[Planned] = []
    clips: list[Planned] = []
    for item in planned:
        try:
            clip = item.error is None and is_clip(item.source)
        except OSError:
            clip = False  # the photo path says what is wrong with it
        written = clip_format(fmt) if clip else still_format(fmt)
        if written is not fmt:
            item = replace(item, output=item.output.with_suffix(written.extension))
        (clips if clip else photos).append(item)
    return photos, clips


def run_clips(
    remover: Remover,
    clips: list[Planned],
    options: RemoveOptions,
    settings: Settings,
    *,
    overwrite: bool,
    progress_console: Console | None,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Cut each clip; a bad one fails alone with the reason, Ctrl-C cancels the rest."""
    if not clips:  # photos only: no PyAV to load
        return []
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    from .cli import Outcome
    from .engine import CancelToken, EngineError
    from .engine.video.clip import process_clip
    from .engine.video.probe import open_clip
    from .workers.clips import clip_label, clip_limits

    outcomes: list[Outcome] = []
    cancel = CancelToken()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stage]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=progress_console, disable=progress_console is None) as bar:
        for item in clips:
            if item.output.exists() and not overwrite:
                outcomes.append(Outcome(item, "skipped", "output exists (use --overwrite)"))
            elif cancel.cancelled:
                outcomes.append(Outcome(item, "cancelled", "not started"))
            else:
                task = bar.add_task(item.source.name, total=None, stage="")

                def frames(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done, total=total, stage=clip_label(done, total))

                try:
                    info = open_clip(item.source, clip_limits(settings), name=str(item.source))
                    process_clip(
                        remover, item.source, item.output, options, info,
                        name=str(item.source), progress=frames, cancel=cancel,
                    )  # fmt: skip
                    outcomes.append(Outcome(item, "done", str(item.output)))
                except KeyboardInterrupt:
                    cancel.cancel()
                    outcomes.append(Outcome(item, "cancelled", "interrupted"))
                except EngineError as exc:
                    outcomes.append(Outcome(item, "failed", exc.message, exc.code))
                bar.remove_task(task)
            report(outcomes[-1])
    return outcomes
