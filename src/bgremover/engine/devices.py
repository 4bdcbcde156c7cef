"""Which accelerator runs the model: a device name maps to onnxruntime execution providers.

``auto`` takes the best accelerator the installed onnxruntime offers and falls back to the
CPU with one log line per process, never silently (a GPU wheel that cannot find its CUDA
libraries otherwise costs its user days). A device asked for by name that is not there is an
error at start, naming what is there and the fix: someone who asked for the GPU would rather
not find out from a slow night's batch that it ran on the CPU.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort

    from .models.optimized import GraphCache

log = logging.getLogger(__name__)

PROVIDERS: dict[str, tuple[str, ...]] = {
    "cuda": ("CUDAExecutionProvider",),
    # AMD's wheels ship the ROCm provider (older) or MIGraphX (its successor).
    "rocm": ("ROCMExecutionProvider", "MIGraphXExecutionProvider"),
    "directml": ("DmlExecutionProvider",),
    "coreml": ("CoreMLExecutionProvider",),
    "openvino": ("OpenVINOExecutionProvider",),
    "cpu": ("CPUExecutionProvider",),
}
"""Each device's providers, best first; the order of the keys is ``auto``'s preference."""

Device = Literal["auto", "cpu", "cuda", "rocm", "openvino", "coreml", "directml"]
"""What runs the model (``BGREMOVER_DEVICE``, ``--device``); each maps to ``PROVIDERS``. Here,
not in config, so the command line's options are typed without loading the settings."""

DEVICES: tuple[str, ...] = ("auto", *PROVIDERS)
"""The names ``Device`` allows, ``auto`` first then in ``auto``'s order of preference."""

FIXES: dict[str, str] = {
    "cuda": "pip install 'bgremover[gpu]' (onnxruntime-gpu in place of onnxruntime; CUDA 12 "
    "and cuDNN 9 libraries on the library path)",
    "rocm": "install AMD's onnxruntime-rocm or onnxruntime-migraphx wheel in place of "
    "onnxruntime (https://onnxruntime.ai/docs/execution-providers/MIGraphX-ExecutionProvider.html)",
    "directml": "pip uninstall onnxruntime && pip install onnxruntime-directml (Windows)",
    "coreml": "use the standard onnxruntime wheel on macOS: pip install 'bgremover[cpu]'",
    "openvino": "pip uninstall onnxruntime && pip install onnxruntime-openvino",
    "cpu": "pip install 'bgremover[cpu]'",
}


ACCELERATOR_PROCESSES = 2
"""Worker processes a ``bgremover worker`` starts on an accelerator by default (the CPU
gets one per 2 cores): each holds its own model and context in device memory, and a second
one keeps the device busy while the first decodes and encodes on the CPU. A guess, not a
measurement: no GPU was available when it was set (bench/device_bench.py measures)."""


@dataclass(frozen=True)
class DeviceChoice:
    """One device to try: its name and the onnxruntime provider that runs it."""

    device: str
    provider: str

    @property
    def accelerated(self) -> bool:
        """Anything but the CPU: runs the fp16 weights as they are and batches images."""
        return self.device != "cpu"


class DeviceUnavailable(ModelError):
    """The device asked for by name is not in this onnxruntime, or cannot start."""

    code = "device_unavailable"


def candidates(requested: str, available: Sequence[str]) -> list[DeviceChoice]:
    """The devices to try in order, given onnxruntime's ``get_available_providers()``.

    ``auto``: every available accelerator, best first, then the CPU. A named device: that
    one alone; ``DeviceUnavailable`` when its provider is not available.
    """
    if requested not in DEVICES:
        raise DeviceUnavailable(
            f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}",
            code="unknown_device",
        )
    order = PROVIDERS if requested == "auto" else {requested: PROVIDERS[requested]}
    choices = []
    for device, providers in order.items():
        provider = next((p for p in providers if p in available), None)
        if provider is not None:
            choices.append(DeviceChoice(device, provider))
    if requested == "auto":
        return choices if choices and choices[-1] == _CPU else [*choices, _CPU]
    if not choices:
        raise DeviceUnavailable(unavailable_message(requested, available))
    return choices


_CPU = DeviceChoice("cpu", "CPUExecutionProvider")


def unavailable_message(requested: str, available: Sequence[str]) -> str:
    """What went wrong with an explicitly requested device, what there is, and the fix."""
    offered = sorted({d for d, ps in PROVIDERS.items() if any(p in available for p in ps)})
    return (
        f"device {requested!r} is not available: the installed onnxruntime offers "
        f"{', '.join(offered) or 'no device'} ({', '.join(available) or 'no providers'}). "
        f"To use {requested}: {FIXES[requested]}; or run with --device auto "
        "(BGREMOVER_DEVICE=auto) to take the best device there is."
    )


@functools.cache
def announce(message: str) -> None:
    """Log ``message`` once per process: every worker load and every CLI image would
    otherwise repeat the same fallback line."""
    log.warning("%s", message)


def expected(requested: str) -> DeviceChoice:
    """The device a session for ``requested`` starts on, as far as the installed onnxruntime
    tells without loading a model; logs ``auto``'s fallback to the CPU (once)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    choice = candidates(requested, available)[0]
    if requested == "auto" and not choice.accelerated:
        announce(
            f"device auto: onnxruntime {ort.__version__} offers no accelerator "
            f"({', '.join(available)}), so the model runs on the CPU. For an NVIDIA GPU: "
            f"{FIXES['cuda']}; or set BGREMOVER_DEVICE=cpu to say the CPU is meant."
        )
    return choice


def open_session(
    model_path: Path,
    options: ort.SessionOptions,
    requested: str,
    *,
    accelerated_model: Callable[[], bytes] | None = None,
    graph_cache: GraphCache | None = None,
) -> tuple[ort.InferenceSession, DeviceChoice]:
    """An onnxruntime session on the best of ``requested``'s devices that starts. On an
    accelerator it loads what ``accelerated_model`` returns (default ``model_path``): the
    CPU runs the fp32 copy faster, a GPU the fp16 weights as they are (``models/fp32.py``).

    A provider can be listed and still fail to start (a GPU wheel without its CUDA
    libraries, a driver too old): ``auto`` then logs why and tries the next device; a named
    device raises ``DeviceUnavailable`` with onnxruntime's reason. A model that loads on no
    device is ``ModelError`` ``model_corrupt``.
    """
    import onnxruntime as ort

    expected(requested)  # the auto fallback line, when there is no accelerator at all
    tried = candidates(requested, ort.get_available_providers())
    for index, choice in enumerate(tried):
        try:
            model: str | bytes = str(model_path)
            if choice.accelerated and accelerated_model is not None:
                model = accelerated_model()
            if not choice.accelerated and graph_cache is not None:
                session = graph_cache.session(options)  # the same file, optimised once
            else:
                session = ort.InferenceSession(model, options, providers=[choice.provider])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            if choice.accelerated:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            else:
                raise ModelError(
                    f"{model_path}: onnxruntime cannot load it as a model ({exc}); re-fetch "
                    "it with `bgremover models pull` or check BGREMOVER_MODEL_PATH",
                    code="model_corrupt",
                ) from None
        else:
            # A provider whose libraries fail to load is dropped by onnxruntime with a
            # message on stderr, and the session quietly runs on the CPU: not what was asked.
            if choice.provider in session.get_providers():
                return session, choice
            reason = "onnxruntime could not load it (see its messages above)"
        if requested != "auto":
            raise DeviceUnavailable(
                f"device {requested!r} ({choice.provider}) failed to start: {reason}. "
                f"Fix: {FIXES[choice.device]}; or run with --device auto or cpu."
            )
        announce(
            f"device auto: {choice.device} ({choice.provider}) is installed but failed to "
            f"start ({reason}), so the model runs on {tried[index + 1].device}"
        )
    raise AssertionError("unreachable: the CPU, last of auto's devices, returns or raises")
