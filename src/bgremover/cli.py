"""The command line: ``bgremover remove`` and ``bgremover models``."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .cli_clips import VIDEO_SUFFIXES, run_clips, split_clips

# Only what `--help` needs is imported here: each command imports the model runtime, the
# database layer, the web stack and rich's progress bars and tables where it uses them, so
# `bgremover --help` starts in a fraction of the time (issue 20; `python -X importtime`).
from .engine.devices import Device
from .engine.output_format import OutputFormat

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from .config import Settings
    from .engine import CancelToken, EngineError, Removal, RemoveOptions, Remover, Stage
    from .engine.models import CatalogEntry, ModelStore, SegmentationModel
    from .jobs.preset_options import PresetOptions
    from .jobs.schemas import Queue
    from .queue_control import QueueControl
    from .watch.backend import Backend

# Folders are searched for these (".hif" is Canon's HEIF); JPEG XL, which we cannot decode,
# is included so it is reported as unsupported instead of being skipped without a word.
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".tga",
    ".ppm", ".pgm", ".pnm", ".ico", ".psd", ".heic", ".heif", ".hif", ".avif", ".jxl",
}  # fmt: skip

app = typer.Typer(
    help="Remove image backgrounds with ISNet, locally.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(help="List, download and check models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
queue_app = typer.Typer(
    help="Pause, resume or show the job queue (every server and worker on its database).",
    no_args_is_help=True,
)
app.add_typer(queue_app, name="queue")

console = Console()
# Errors are never wrapped: a path cut in two cannot be copied or searched for.
err_console = Console(stderr=True, soft_wrap=True)


@dataclass
class Planned:
    """One input and where its result goes."""

    source: Path
    output: Path
    error: str | None = None


@dataclass
class Outcome:
    planned: Planned
    status: str  # done | failed | skipped | cancelled
    detail: str = ""
    """The output path when done, else the reason."""
    code: str | None = None
    """The error code of a failure (``corrupt_image``, ``unsupported_format``, ...)."""

    def as_line(self) -> str:
        """``path<TAB>status<TAB>output or reason``: whole, on one line, for scripts."""
        fields = (str(self.planned.source), self.status, self.detail)
        return "\t".join(f.translate(_ONE_LINE) for f in fields)

    def as_json(self) -> dict[str, str | None]:
        """The output is there when done or skipped (it existed); the reason when not done."""
        return {
            "path": str(self.planned.source),
            "status": self.status,
            "output": str(self.planned.output) if self.status in ("done", "skipped") else None,
            "reason": None if self.status == "done" else self.detail,
            "code": self.code,
        }


# Tabs and line breaks inside a field would split it; they become spaces.
_ONE_LINE = str.maketrans("\t\r\n", "   ")


def collect_inputs(inputs: list[str]) -> tuple[list[tuple[Path, Path]], list[Planned]]:
    """Expand files, folders (recursively) and globs into (file, base folder) pairs.

    Inputs that match nothing come back as failed entries so they show in the summary.
    """
    found: list[tuple[Path, Path]] = []
    missing: list[Planned] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
            )
            found.extend((p, path) for p in files)
        elif path.exists() or path.is_symlink():
            found.append((path, path.parent))
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
            found.extend((m, m.parent) for m in matches if m.is_file())
            if not matches:
                missing.append(Planned(path, path, error=f"{raw}: no files match this pattern"))
        else:
            missing.append(Planned(path, path, error=f"{raw}: no such file or directory"))
    return found, missing


def plan_outputs(
    found: list[tuple[Path, Path]], out_dir: Path | None, fmt: OutputFormat
) -> list[Planned]:
    """Output paths: ``name-no-bg.ext`` beside the input, or under ``out_dir`` keeping the
    folder structure; two inputs that would collide keep their original extension."""
    planned: list[Planned] = []
    taken: set[Path] = set()
    seen: set[Path] = set()
    for source, base in found:
        if source.resolve() in seen:
            continue
        seen.add(source.resolve())
        folder = source.parent if out_dir is None else out_dir / source.parent.relative_to(base)
        output = folder / fmt.result_name(source.stem)
        if output in taken:
            output = folder / fmt.result_name(f"{source.stem}-{source.suffix.lstrip('.')}")
        taken.add(output)
        planned.append(Planned(source, output))
    return planned


@app.command()
def remove(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or globs.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder (default: beside each input)."),
    ] = None,
    fmt: Annotated[
        OutputFormat | None, typer.Option("--format", "-f", help="Output format [default: png].")
    ] = None,
    bg_color: Annotated[
        str | None,
        typer.Option(
            "--bg-color", help="Background colour, e.g. white or #00ff00 (none: no colour)."
        ),
    ] = None,
    bg_image: Annotated[
        Path | None, typer.Option("--bg-image", help="Background image, scaled to cover.")
    ] = None,
    bg_blur: Annotated[float, typer.Option("--bg-blur", help="Blur radius for --bg-image.")] = 0.0,
    alpha_matting: Annotated[
        bool | None,
        typer.Option(
            "--alpha-matting/--no-alpha-matting",
            help="Refine soft edges such as hair (slower) [default: off].",
            show_default=False,
        ),
    ] = None,
    refine_foreground: Annotated[
        bool | None,
        typer.Option(
            "--refine-foreground/--no-refine-foreground",
            help="Estimate the subject's own colours on soft edges, so the old background "
            "does not tint hair and edges on a new one (slower) [default: off].",
            show_default=False,
        ),
    ] = None,
    post_process: Annotated[
        bool | None,
        typer.Option(
            "--post-process/--no-post-process",
            help="Smooth the mask to hard edges [default: off].",
            show_default=False,
        ),
    ] = None,
    smooth_clips: Annotated[
        bool | None,
        typer.Option(
            "--smooth-clips/--no-smooth-clips",
            help="Clips: steady the mask between frames where the picture is still [default: off].",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Start from this saved preset; the options given here override it."),
    ] = None,
    quality: Annotated[int, typer.Option(help="WebP/JPEG quality (1-100).")] = 90,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(help="Model name: built-in or added with `models add` (`models list`)."),
    ] = None,
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="An ISNet-compatible .onnx file.")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU cores to use (default: all); a batch runs one image per core at once, "
            "up to 4."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (files, counts) on stdout.")
    ] = False,
    device: DeviceOption = None,
) -> None:
    """Remove the background from images; writes NAME-no-bg.png (or the chosen format).

    On a terminal: a progress bar, then a summary table. Piped or redirected: one line per
    file as it ends (path, status, output or reason, tab-separated) and the totals on stderr.
    With --json: one JSON document on stdout.
    """
    from .engine import EngineError, plan_batch
    from .engine.video.formats import still_format
    from .workers.removers import load_remover

    settings = _settings(
        model=model, model_path=model_path, intra_op_threads=threads, device=device
    )
    options = _options(
        _preset(settings, preset),
        dict(format=fmt, background_color="none" if bg_image else bg_color,
             alpha_matting=alpha_matting, refine_foreground=refine_foreground,
             post_process_mask=post_process, temporal_smoothing=smooth_clips, model=model),
        background_image=bg_image, background_blur=bg_blur, quality=quality,
    )  # fmt: skip
    if options.model is not None and model_path is None:
        # A model named (--model, or the preset's) is that model, not BGREMOVER_MODEL_PATH's.
        settings = settings.model_copy(update={"model": options.model, "model_path": None})
    if bg_image is not None:
        _check_background(bg_image, settings.max_image_pixels)
    found, missing = collect_inputs(inputs)
    planned, clips = split_clips(plan_outputs(found, output, options.format), options.format)
    if not planned and not clips and not missing:
        err_console.print(f"[red]No images found[/] in {escape(', '.join(inputs))}")
        raise typer.Exit(2)

    plan = plan_batch(sum(_to_run(p, overwrite) for p in planned), settings.intra_op_threads)
    try:
        remover = load_remover(settings.model_copy(update={"intra_op_threads": plan.threads}))
    except EngineError as exc:
        what = "Device" if exc.code == "device_unavailable" else "Model"
        err_console.print(f"[red]{what} error:[/] {escape(str(exc))}")
        raise typer.Exit(3) from None

    lines = not as_json and not console.is_terminal
    report: Callable[[Outcome], None] = _print_line if lines else (lambda _: None)
    outcomes = [Outcome(m, "failed", m.error or "", "unreadable") for m in missing]
    for outcome in outcomes:
        report(outcome)
    photo_options = options.model_copy(update={"format": still_format(options.format)})
    outcomes += _process_all(
        remover, plan.lanes, planned, photo_options, overwrite, _progress_console(as_json), report
    )
    outcomes += run_clips(
        remover, clips, options, settings, overwrite=overwrite,
        progress_console=_progress_console(as_json), report=report,
    )  # fmt: skip
    if as_json:
        _print_json(outcomes)
    elif lines:
        err_console.print(_totals(outcomes), highlight=False)
    else:
        _print_summary(outcomes)
    if any(o.status in ("failed", "cancelled") for o in outcomes):
        raise typer.Exit(130 if any(o.status == "cancelled" for o in outcomes) else 1)


def _check_background(path: Path, max_pixels: int) -> None:
    """Ends the command with the reason when ``--bg-image`` is not an image the engine would
    take (too many pixels, not an image): said once, before any photo is processed."""
    from .engine.decode import measure
    from .engine.errors import InputError

    try:
        measure(path, name=str(path), max_pixels=max_pixels)
    except OSError as exc:
        message = f"--bg-image {path}: cannot be read ({exc.strerror})"
        err_console.print(message, markup=False, highlight=False)
    except InputError as exc:
        err_console.print(f"--bg-image {exc}", markup=False, highlight=False)
    else:
        return
    raise typer.Exit(2)


def _preset(settings: Settings, name: str | None) -> PresetOptions:
    """The options of the preset ``name`` from the server's database; ends the command with
    the reason when there is no such preset or the database cannot be read."""
    from .jobs.preset_options import PresetOptions

    if name is None:
        return PresetOptions()
    from sqlalchemy.exc import SQLAlchemyError

    from .jobs.database import default_url
    from .jobs.presets import UnknownPreset, open_presets

    where = settings.database_url or default_url(settings.data_dir)
    try:
        with open_presets(settings) as presets:
            return presets.get(name)
    except UnknownPreset as exc:
        fix = "save one in the web UI or with POST /api/presets"
        err_console.print(f"{exc} in {where}; {fix}", markup=False, highlight=False)
    except SQLAlchemyError as exc:
        err_console.print(
            f"cannot read presets from {where}: {exc}; check BGREMOVER_DATABASE_URL "
            "(or BGREMOVER_DATA_DIR) names the database `bgremover serve` uses",
            markup=False, highlight=False,
        )  # fmt: skip
    raise typer.Exit(2)


def _checked_model(settings: Settings, options: PresetOptions) -> PresetOptions:
    """``options`` when the model they name is one this machine has; else ends the command
    with the names there are."""
    from .engine import EngineError
    from .engine.models import ModelStore

    if options.model is not None:
        try:
            ModelStore(settings.models_dir).check_name(options.model)
        except EngineError as exc:
            err_console.print(escape(str(exc)), highlight=False)
            raise typer.Exit(2) from None
    return options


def _options(base: PresetOptions, given: dict[str, Any], **extra: Any) -> RemoveOptions:
    """``base`` with the options given (not None) over it; ends the command with the reason
    when they do not go together."""
    from pydantic import ValidationError

    try:
        return base.overridden(**given).remove_options(**extra)
    except ValidationError as exc:
        messages = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        err_console.print(f"[red]Invalid options:[/] {escape(messages)}")
        raise typer.Exit(2) from None


def _progress_console(as_json: bool) -> Console | None:
    """The bar goes where a person watches: stdout unless it carries JSON, else stderr."""
    if not as_json and console.is_terminal:
        return console
    return err_console if err_console.is_terminal else None


def _to_run(item: Planned, overwrite: bool) -> bool:
    return overwrite or not item.output.exists()


def _process_all(
    remover: Remover,
    lanes: int,
    planned: list[Planned],
    options: RemoveOptions,
    overwrite: bool,
    progress_console: Console | None,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .engine import BatchItem, CancelToken, Removal
    from .terminal import label_columns

    outcomes: dict[int, Outcome] = {}

    def end(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        report(outcome)

    cancel = CancelToken()
    columns = (
        *label_columns(),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns,
        console=progress_console or console,
        transient=False,
        disable=progress_console is None,
    ) as progress:
        total_task = progress.add_task("All images", total=100 * len(planned), stage="")
        todo: list[tuple[int, Planned]] = []
        for index, item in enumerate(planned):
            if not _to_run(item, overwrite):
                end(index, Outcome(item, "skipped", "output exists (use --overwrite)"))
                progress.advance(total_task, 100)
            else:
                todo.append((index, item))
        rows: dict[int, _Row] = {}

        estimates = _Estimates()

        def batch() -> Iterator[BatchItem]:
            # Pulled lazily by process_many, so a row appears when its image starts.
            for index, item in todo:
                weights = estimates.weights(item.source)
                rows[index] = row = _Row(progress, total_task, _short(item.source), weights)
                yield BatchItem(item.source, item.output, row.report)

        # The images run on process_many's lanes (threads); this thread takes Ctrl-C.
        results = remover.process_many(batch(), options, cancel=cancel, lanes=lanes)
        try:
            with _ctrl_c_cancels(cancel):
                for (index, item), (_, result) in zip(todo, results, strict=False):
                    if isinstance(result, Removal):
                        estimates.learn(result)
                    end(index, _outcome(item, result))
                    rows.pop(index).finish()
        except KeyboardInterrupt:
            cancel.cancel()
            results.close()
        for index, item in todo:
            if index not in outcomes:
                reason = "interrupted" if index in rows else "not started"
                end(index, Outcome(item, "cancelled", reason))
        for row in rows.values():
            progress.remove_task(row.task)
    return [outcomes[index] for index in sorted(outcomes)]


@contextlib.contextmanager
def _ctrl_c_cancels(cancel: CancelToken) -> Iterator[None]:
    """The first Ctrl-C cancels the images in flight and lets each end with its line; a
    KeyboardInterrupt raised wherever this thread was could cut a finished file's line out
    of the piped output. A second Ctrl-C stops at once."""

    def interrupt(signum: int, frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _outcome(item: Planned, result: Removal | EngineError) -> Outcome:
    from .engine import Cancelled, EngineError

    if isinstance(result, Cancelled):
        return Outcome(item, "cancelled", "interrupted")
    if isinstance(result, EngineError):
        return Outcome(item, "failed", result.message, result.code)
    return Outcome(item, "done", str(item.output))


class _Estimates:
    """Expected seconds per stage for each image by its size, as the job system prices
    them: the model takes as long at any size, the other stages scale with the pixels. The
    first image's timings calibrate the rest (and each later one refines its size)."""

    def __init__(self) -> None:
        from .jobs.eta.clock import StageClock

        self._clock = StageClock()

    def weights(self, path: Path) -> dict[Stage, float]:
        from .engine.decode import probe
        from .jobs.eta.clock import size_bucket

        try:
            _, width, height = probe(path)
        except OSError:
            width = height = None
        pixels = width * height if width and height else None
        return self._clock.weights(size_bucket(width, height), pixels)

    def learn(self, removal: Removal) -> None:
        from .jobs.eta.clock import size_bucket

        width, height = removal.size
        timings = {stage.value: seconds for stage, seconds in removal.timings.items()}
        self._clock.calibrate(width * height, timings)
        self._clock.observe(size_bucket(width, height), timings, width * height)


class _Row:
    """One image's progress row; keeps the overall bar at the sum of every image's percent."""

    def __init__(
        self, progress: Progress, total_task: TaskID, name: str, weights: dict[Stage, float]
    ) -> None:
        self.progress = progress
        self.total_task = total_task
        from .engine import Stage

        self.task = progress.add_task(name, total=100, stage=Stage.LOADING.value)
        self.weights = weights
        self.percent = 0.0

    def report(self, stage: Stage, fraction: float) -> None:
        from .engine import overall_percent

        # Never back: a stage report from the loading thread may trail the model's.
        percent = max(self.percent, overall_percent(stage, fraction, self.weights))
        self.progress.update(self.task, completed=percent, stage=stage.value)
        self.progress.advance(self.total_task, percent - self.percent)
        self.percent = percent

    def finish(self) -> None:
        """Count the image as done in the overall bar (also when it failed) and drop its row."""
        self.progress.advance(self.total_task, 100 - self.percent)
        self.percent = 100.0
        self.progress.remove_task(self.task)


def _short(path: Path, width: int = 32) -> str:
    name = path.name
    return name if len(name) <= width else name[: width - 1] + "…"


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    return {
        s: sum(o.status == s for o in outcomes) for s in ("done", "failed", "skipped", "cancelled")
    }


def _totals(outcomes: list[Outcome]) -> str:
    return ", ".join(f"{n} {s}" for s, n in _counts(outcomes).items() if n) or "nothing to do"


def _print_line(outcome: Outcome) -> None:
    # Plain print, not Rich: no wrapping, markup or ellipsis at any width; flushed so a
    # script reading the pipe sees each file as it ends.
    print(outcome.as_line(), flush=True)


def _print_json(outcomes: list[Outcome]) -> None:
    summary = {"files": [o.as_json() for o in outcomes], "counts": _counts(outcomes)}
    print(json.dumps(summary, indent=2, ensure_ascii=False), flush=True)


def _print_summary(outcomes: list[Outcome]) -> None:
    from rich.table import Table
    from rich.text import Text

    counts = _counts(outcomes)
    table = Table(title="Summary", show_lines=False)
    table.add_column("File")
    table.add_column("Status")
    table.add_column("Output / reason", overflow="fold")
    style = {"done": "green", "failed": "red", "skipped": "yellow", "cancelled": "magenta"}
    shown = [o for o in outcomes if o.status != "done"] if counts["done"] > 20 else outcomes
    for outcome in shown:
        # Text, not markup: names and reasons come from outside ("x[/b].jpg" is a file).
        table.add_row(
            Text(str(outcome.planned.source)),
            Text(outcome.status, style=style[outcome.status]),
            Text(outcome.detail),
        )
    if shown:
        console.print(table)
    console.print(_totals(outcomes))


DeviceOption = Annotated[
    Device | None,
    typer.Option(
        help="What runs the model: auto (the best accelerator the installed onnxruntime "
        "offers, else the CPU), or one by name; a named one that is missing is an error "
        "(or BGREMOVER_DEVICE).",
    ),
]


def _device(settings: Settings) -> str:
    """The device the model will run on; ends the command with what there is and the fix
    when the one asked for by name is not available."""
    from .engine.devices import DeviceUnavailable, expected

    try:
        return expected(settings.device).device
    except DeviceUnavailable as exc:
        err_console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None


def _settings(**overrides: Any) -> Settings:
    """Settings from the environment and options; a bad value ends the command with one
    line that names it (not a traceback)."""
    from pydantic import ValidationError

    from .config import Settings, settings_error

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err_console.print(settings_error(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Access token; required off loopback (or BGREMOVER_TOKEN).",
            envvar="BGREMOVER_TOKEN",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Jobs run at once (default 2).", min=1)
    ] = None,
    dev: Annotated[bool, typer.Option("--dev", help="Show the UI's test panel.")] = False,
    device: DeviceOption = None,
) -> None:
    """Run the web app, the scheduler and the worker pool until Ctrl-C."""
    from .logs import configure
    from .web import InsecureBinding, create_app
    from .web.serving import run

    settings = _settings(
        host=host, port=port, token=token, max_concurrent_jobs=workers, dev=dev or None,
        device=device,
    )  # fmt: skip
    configure(settings.log_format)
    # In the cluster each worker machine resolves its own device.
    runs_on = settings.device if settings.redis_url else _device(settings)
    try:
        web_app = create_app(settings)
    except InsecureBinding as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    banner = (
        f"BG Remover: http://{shown}:{settings.port}/  (model on {runs_on}; "
        "Ctrl-C stops; jobs resume next start)"
    )
    if settings.log_format == "json":  # a log shipper reads stdout too: JSON lines only
        logging.getLogger("bgremover").info(banner)
    else:
        console.print(banner, markup=False)
    run(web_app, settings)


@app.command()
def token() -> None:
    """Print a new random access token (256 bits) for BGREMOVER_TOKEN or --token."""
    from .web.tokens import new_token

    print(new_token())


@app.command()
def watch(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder to watch (with its subfolders).", file_okay=False, metavar="DIR"
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Results folder (default: DIR/no-bg).")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="Process with this saved preset's options.")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Send the jobs to this running `bgremover serve` (its URL) instead."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="The server's access token (or BGREMOVER_TOKEN).", envvar="BGREMOVER_TOKEN"
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model name (`models list`; the server's, with --server)."),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Turn every image that appears in DIR into a job; results go to the output folder.

    A file is taken once completely written. Finished files are remembered in the output
    folder (.bgremover-watch.json): a restart redoes none of them and takes the files added
    while it was stopped. Ctrl-C stops; queued jobs are followed again on the next start.
    """
    from .watch.folder import Rules
    from .watch.ledger import Ledger, LedgerError
    from .watch.nolinks import LinkRefused, OutputFolder
    from .watch.runner import Display, Runner

    root = folder.expanduser().resolve()
    if not root.is_dir():
        err_console.print(f"{folder}: no such folder", markup=False)
        raise typer.Exit(2)
    given = output.expanduser() if output else root / "no-bg"
    try:
        out = OutputFolder.open(root, given)
    except LinkRefused as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err_console.print(f"{given}: cannot be the output folder: {exc}", markup=False)
        raise typer.Exit(2) from None
    with out:
        if out.path == root:
            err_console.print(
                "the output folder must not be the watched folder itself; "
                "leave out -o to use DIR/no-bg", markup=False,
            )  # fmt: skip
            raise typer.Exit(2)
        settings = _settings(token=token, device=device)
        if server is None:  # a server runs the model where it is, on its own device
            _device(settings)
        try:
            ledger = Ledger(out)
        except LedgerError as exc:
            err_console.print(str(exc), markup=False)
            raise typer.Exit(2) from None
        backend = _watch_backend(settings, server, preset, model, f"Watch: {root.name}")
        runner = Runner(Rules(root, out.path), out, backend, ledger, Display(console),
                        settings.watch_settle.total_seconds())  # fmt: skip
        signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
        with contextlib.suppress(KeyboardInterrupt):
            runner.run()
        console.print(runner.summary(), highlight=False, soft_wrap=True)


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _watch_backend(
    settings: Settings, server: str | None, preset: str | None, model: str | None,
    batch_name: str,
) -> Backend:  # fmt: skip
    """This process's own job system, or the server at ``server`` (checked now, so a wrong
    URL, token, preset or model name ends the command at once with the reason)."""
    if server is None:
        from .watch.local import LocalJobs

        options = _preset(settings, preset)
        if model is not None:
            options = _checked_model(settings, options.overridden(model=model))
        return LocalJobs(settings, batch_name, options)
    from .watch.remote import RemoteJobs

    remote = RemoteJobs(server, settings.token, batch_name, preset, model)
    try:
        remote.check()
    except ConnectionError as exc:
        err_console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(2) from None
    return remote


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            help="Worker processes (default: one per 2 cores; 2 on an accelerator).",
            min=1,
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery's log level.")] = "INFO",
    device: DeviceOption = None,
) -> None:
    """Run Celery worker processes for a cluster (needs BGREMOVER_REDIS_URL and a shared
    BGREMOVER_DATABASE_URL and BGREMOVER_STORAGE_URL); each loads the model once."""
    settings = _settings(device=device)
    if not settings.redis_url:
        err_console.print(
            "bgremover worker: set BGREMOVER_REDIS_URL (and BGREMOVER_DATABASE_URL, "
            "BGREMOVER_STORAGE_URL) to the cluster's, as for `bgremover serve`"
        )
        raise typer.Exit(2)
    from .logs import configure

    configure(settings.log_format)  # from the start: Celery warns before it sets up logging
    # Its processes read the environment. Resolved once here: a named device that is
    # missing stops the start, and auto's fallback to the CPU is said once, not per process.
    runs_on = _device(settings)
    os.environ["BGREMOVER_DEVICE"] = "cpu" if runs_on == "cpu" else settings.device
    cores = os.cpu_count() or 1
    from .engine.devices import ACCELERATOR_PROCESSES

    processes = concurrency or (max(1, cores // 2) if runs_on == "cpu" else ACCELERATOR_PROCESSES)
    # Processes share the cores instead of each onnxruntime taking all of them.
    if not settings.intra_op_threads:
        os.environ["BGREMOVER_INTRA_OP_THREADS"] = str(max(1, cores // processes))
    from .celery_app import app as celery

    celery.worker_main(
        [
            # Celery's banner is no log line: a log shipper reading JSON would choke on it.
            *(["--quiet"] if settings.log_format == "json" else []),
            "worker",
            f"--concurrency={processes}",
            f"--loglevel={loglevel}",
            f"--hostname=bgremover-{os.getpid()}@%h",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


ServerOption = Annotated[
    str | None,
    typer.Option(help="Ask this running `bgremover serve` (its URL) instead of the database."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(help="The server's access token (or BGREMOVER_TOKEN).", envvar="BGREMOVER_TOKEN"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the queue's state as JSON.")]


@queue_app.command("pause")
def queue_pause(
    cancel_running: Annotated[
        bool,
        typer.Option("--cancel-running", help="Also stop running jobs; they go back to the queue."),
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start no pending job until `bgremover queue resume`; running jobs finish."""
    _queue_command(server, token, as_json, lambda queue: queue.pause(cancel_running))


@queue_app.command("resume")
def queue_resume(
    server: ServerOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Start pending jobs again."""
    _queue_command(server, token, as_json, lambda queue: queue.resume())


@queue_app.command("status")
def queue_status(
    server: ServerOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Whether the queue is paused (by whom, since when), paused batches, jobs by status."""
    _queue_command(server, token, as_json, lambda queue: queue.status())


def _queue_command(
    server: str | None, token: str | None, as_json: bool, act: Callable[[QueueControl], Queue]
) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from .jobs.database import default_url
    from .queue_control import LocalQueue, RemoteQueue

    settings = _settings(token=token)
    where = server or settings.database_url or default_url(settings.data_dir)
    try:
        control: QueueControl = (
            RemoteQueue(server, settings.token) if server else LocalQueue(settings)
        )
        try:
            state = act(control)
        finally:
            control.close()
    except (ConnectionError, SQLAlchemyError) as exc:
        err_console.print(f"{where}: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        print(state.model_dump_json())
        return
    if state.paused:
        since = state.paused_at.strftime("%Y-%m-%d %H:%M:%S UTC") if state.paused_at else "?"
        console.print(f"Queue paused by {state.paused_by} since {since}", markup=False)
    else:
        console.print("Queue running", markup=False)
    if state.paused_batches:
        console.print(f"Paused batches: {', '.join(state.paused_batches)}", markup=False)
    counts = state.counts
    console.print(
        f"{counts.pending} pending · {counts.processing} processing · {counts.completed} "
        f"completed · {counts.failed} failed · {counts.cancelled} cancelled",
        markup=False,
    )


@models_app.command("list")
def models_list() -> None:
    """Every model: built-in ones (whether downloaded) and those added from files (family,
    size, where from)."""
    from rich.table import Table
    from rich.text import Text

    from .engine.models import ModelStore, registered_models

    settings = _settings()
    store = ModelStore(settings.models_dir)
    table = Table()
    for column in ("Name", "Family", "Description", "Size", "Source", "Default"):
        table.add_column(column, overflow="fold")
    for name, cls in sorted(registered_models().items()):
        if cls.source is None:
            continue
        present = store.path_for(cls).is_file()
        table.add_row(
            name,
            cls.family,
            cls.description,
            f"{(cls.size_bytes or 0) / 1e6:.0f} MB",
            f"{cls.source.describe()} ({'downloaded' if present else 'not downloaded'})",
            "*" if name == settings.model else "",
        )
    for name, entry in sorted(store.catalog.entries().items()):
        cells = (
            name, entry.family, entry.description, f"{entry.size_bytes / 1e6:.0f} MB",
            entry.path, "*" if name == settings.model else "",
        )  # fmt: skip
        table.add_row(*map(Text, cells))  # the user's words and path as text, never markup
    console.print(table)
    if settings.model_path is not None:
        console.print(
            f"BGREMOVER_MODEL_PATH overrides the model: {settings.model_path}", markup=False
        )


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="The name jobs and options will choose it by.")],
    family: Annotated[
        str,
        typer.Option(
            help="Its pre/post-processing: isnet, isnet-anime, u2net, birefnet (also "
            "BRIA RMBG-2.0) or bria-rmbg (RMBG-1.4)."
        ),
    ],
    file: Annotated[
        Path, typer.Option(help="The ONNX file (e.g. ~/.u2net/birefnet-general.onnx).")
    ],
    description: Annotated[str, typer.Option(help="Shown in lists and the UI.")] = "",
) -> None:
    """Add a model from an ONNX file you have: checks it is an ONNX graph with the family's
    input and output shapes and records its sha256. The file stays where it is; every
    process using this cache folder (server, workers) can then run it."""
    from .engine import EngineError
    from .engine.models import ModelStore

    settings = _settings()
    try:
        entry = ModelStore(settings.models_dir).catalog.add(name, family, file, description)
    except EngineError as exc:
        err_console.print(escape(str(exc)), highlight=False)
        raise typer.Exit(2) from None
    console.print(
        f"{entry.name}: {entry.family}, sha256 {entry.sha256[:16]}…, {entry.path}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip


@models_app.command("remove")
def models_remove(
    name: Annotated[str, typer.Argument(help="A model added with `models add`.")],
) -> None:
    """Forget a model added from a file (the file itself is left alone)."""
    from .engine import EngineError
    from .engine.models import ModelStore

    settings = _settings()
    try:
        entry = ModelStore(settings.models_dir).catalog.remove(name)
    except EngineError as exc:
        err_console.print(escape(str(exc)), highlight=False)
        raise typer.Exit(2) from None
    console.print(f"{entry.name}: removed ({entry.path} is left as it is)", markup=False)


@models_app.command("pull")
def models_pull(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured one).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download again even if valid.")] = False,
) -> None:
    """Download a model and verify its hashes."""
    from .engine import EngineError
    from .engine.models import ModelStore, get_model

    settings = _settings()
    store = ModelStore(settings.models_dir)
    try:
        cls = get_model(name or settings.model)
        with console.status(
            f"Fetching {cls.name} from the {cls.source.describe() if cls.source else '?'}"
        ):
            path = store.pull(cls) if force else store.ensure(cls)
    except EngineError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(3) from None
    console.print(f"{cls.name}: verified", highlight=False)
    console.print(str(path), markup=False, highlight=False, soft_wrap=True)


@models_app.command("info")
def models_info(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured one).")
    ] = None,
) -> None:
    """Where a model lives, its source and whether the cached file passes its hash check."""
    from .engine import ModelError

    added = _added_model(name)
    if added is not None:
        store, entry = added
        try:
            store.check_added(entry)
        except ModelError as exc:
            status = exc.message
        else:
            status = "verified"
        _print_fields(
            name=entry.name, family=entry.family, description=entry.description,
            source="added from a file (`bgremover models add`)", sha256=entry.sha256,
            path=str(entry.path), status=status,
        )  # fmt: skip
        return
    store, cls = _registered_model(name)
    path = store.path_for(cls)
    if not path.is_file():
        status = "not downloaded (run `bgremover models pull`)"
    else:
        status = "verified" if store.is_valid(cls) else "CORRUPT (run models pull)"
    _print_fields(
        name=cls.name, description=cls.description,
        source=cls.source.describe() if cls.source else "none", sha256=str(cls.sha256),
        path=str(path), status=status,
    )  # fmt: skip


def _print_fields(**fields: str) -> None:
    """``label: value`` lines, the values aligned and printed as they are (a description or
    a path from the catalog is text, never rich markup)."""
    for label, value in fields.items():
        console.print(f"{label + ':':<13}{value}", markup=False, highlight=False, soft_wrap=True)


@models_app.command("verify")
def models_verify(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured one).")
    ] = None,
) -> None:
    """Read the whole model file (and its fp32 copy) and check their sha256 now; a load
    trusts a hash recorded while the file stays unchanged (size, times, inode)."""
    from .engine import ModelError

    added = _added_model(name)
    if added is not None:
        store, entry = added
        try:
            store.check_added(entry, recheck=True)
        except ModelError as exc:
            err_console.print(exc.message, markup=False, highlight=False)
            raise typer.Exit(1) from None
        console.print(f"{entry.name}: verified ({entry.path})", markup=False, soft_wrap=True)
        return
    store, cls = _registered_model(name)
    path = store.path_for(cls)
    if not path.is_file():
        err_console.print(f"{path}: not downloaded; run `bgremover models pull`", markup=False)
        raise typer.Exit(1)
    if not store.is_valid(cls, recheck=True):
        err_console.print(
            f"{path}: fails its sha256 check (expected {cls.sha256}); "
            "run `bgremover models pull --force` to fetch it again",
            markup=False, highlight=False,
        )  # fmt: skip
        raise typer.Exit(1)
    copy = store.verify_runtime_copy(path, cls.sha256 or store.hashes.sha256(path))
    if copy is not None:
        err_console.print(
            f"{copy}: fails its sha256 check; the next run makes it again from {path}",
            markup=False, highlight=False,
        )  # fmt: skip
        raise typer.Exit(1)
    console.print(f"{cls.name}: verified ({path})", markup=False, highlight=False, soft_wrap=True)


def _added_model(name: str | None) -> tuple[ModelStore, CatalogEntry] | None:
    """The model cache and the added model ``name`` names (default: the configured one);
    None when it names a built-in or no model."""
    from .engine.models import ModelStore, registered_models

    settings = _settings()
    name = name or settings.model
    store = ModelStore(settings.models_dir)
    entry = None if name in registered_models() else store.catalog.get(name)
    return None if entry is None else (store, entry)


def _registered_model(name: str | None) -> tuple[ModelStore, type[SegmentationModel]]:
    """The model cache and the model ``name`` names (default: the configured one); an
    unknown name ends the command with the names there are."""
    from .engine import EngineError
    from .engine.models import ModelStore, get_model

    settings = _settings()
    try:
        return ModelStore(settings.models_dir), get_model(name or settings.model)
    except EngineError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None


def main() -> None:
    app(prog_name="bgremover")
