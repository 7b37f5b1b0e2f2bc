"""The memory plan: a job's predicted peak on its device (``vsr.job.peak_memory``, from the networks'
sizes, ``vsr.job.model_sizes``), its budget (``vsr.job.memory_budget``) and the tiling it needs, decided
before any work; and out-of-memory errors during a plan or a job turned into job errors.

``plan_memory`` chooses whole frames when they fit the budget, else the largest tiles that do
(``vsr.model.tiling``), else raises ``NotEnoughMemory`` naming the largest input of this shape that fits.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from vsr.formatting import gb_text as _gb
from vsr.job.errors import NotEnoughMemory, OutOfMemory
from vsr.job.memory_budget import MEDIA_BYTES_PER_PIXEL, Budget, memory_budget
from vsr.job.model_sizes import ModelSizes, model_sizes
from vsr.job.peak_memory import COEFFICIENTS, FLOW_ALL_PAIRS, FrameMemory, flow_method, flow_size, predict_frame
from vsr.model.tiling import Tiling
from vsr.options import MIN_TILE, SCALE, UpscaleOptions

logger = logging.getLogger(__name__)

TILE_CHOICES = (256, 192, 160, 128, 96, 80, 64, 48, 40, 32)
"""Latent tile sides ``auto`` tries, largest (fewest tiles, least overlap work) first."""
ELEMENT = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryPlan:
    """A job's predicted peak memory on its device, its budget, and the tiling chosen to fit it."""

    device: str
    precision: str
    flow: str
    peak_bytes: int
    untiled_peak_bytes: int
    budget_bytes: int | None
    budget_text: str
    tiling: Tiling
    largest_phase: str
    sizes_source: str
    notes: tuple[str, ...] = field(default=())

    def to_text(self) -> str:
        """'peak memory about 6.1 GB of 16.8 GB free on cuda:0 (24.0 GB in all); whole frames'."""
        where = f"of {self.budget_text}" if self.budget_bytes is not None else f"({self.budget_text})"
        cut = "whole frames" if not self.tiling.enabled else f"tiled: {self.tiling.describe()}"
        untiled = (f" (whole frames would need {_gb(self.untiled_peak_bytes)})" if self.tiling.enabled else "")
        return f"peak memory about {_gb(self.peak_bytes)} {where}; {cut}{untiled}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tiling"] = asdict(self.tiling)
        data["notes"] = list(self.notes)
        return data


def element_size(precision: str, device: str) -> int:
    """Bytes per value of the networks for a precision name ('auto' resolves as vsr.model.devices does)."""
    if precision in ELEMENT:
        return ELEMENT[precision]
    return 4 if device == "cpu" else 2  # 'auto' or unknown: fp16 on a GPU, fp32 (or bf16: smaller) on a CPU


def plan_memory(sizes: ModelSizes, width: int, height: int, *, device: str, precision: str, tile: int | str,
                budget: Budget, flow: str = FLOW_ALL_PAIRS, flow_scale: float = 1.0,
                media: bool | None = None) -> MemoryPlan:
    """Predict the job's peak and choose its tiling; ``NotEnoughMemory`` when nothing fits ``budget``.

    ``tile``: ``"auto"`` (whole frames when they fit, else the largest tiles that do), ``"off"`` or a
    latent tile side. ``media`` (default: on a CPU or MPS) adds the RAM of decoding and encoding.
    """
    element = element_size(precision, device)
    extra = MEDIA_BYTES_PER_PIXEL * width * height * 16 if (device in ("cpu", "mps") if media is None else media) else 0

    def peak(tiling: Tiling, w: int = width, h: int = height) -> FrameMemory:
        return predict_frame(sizes, w, h, element=element, tiling=tiling, device=device, flow=flow,
                             flow_scale=flow_scale)

    untiled = peak(Tiling())
    limit = None if budget.bytes is None else budget.bytes - extra
    if tile == "off" or (tile == "auto" and (limit is None or untiled.peak <= limit)):
        tiling = Tiling()
    elif tile == "auto":
        tiling = _fitting_tiling(peak, width, height, limit)
    else:
        tiling = Tiling(denoise=int(tile), decode=int(tile))
    chosen = peak(tiling)
    if limit is not None and chosen.peak > limit:
        raise _not_enough(peak, width, height, chosen, budget, extra, tile)
    return MemoryPlan(device, precision, flow, chosen.peak + extra, untiled.peak + extra, budget.bytes, budget.text,
                      tiling, chosen.largest_phase if chosen.frame_peak >= chosen.load else "loading", sizes.source)


def _fitting_tiling(peak: Callable[..., FrameMemory], width: int, height: int, limit: int) -> Tiling:
    """The largest denoise and decode tiles (whole frames first) whose phases fit ``limit``; the
    smallest tiles when none does (the caller then refuses)."""
    side = max(-(-width // SCALE), -(-height // SCALE)) * SCALE
    choices: list[int | None] = [None, *(t for t in TILE_CHOICES if t < side)]

    def first(phases: tuple[str, ...], make) -> int | None:
        for size in choices:
            memory = peak(make(size))
            if memory.frame_peak - max(memory.phases.values()) + max(memory.phases[p] for p in phases) <= limit:
                return size
        return TILE_CHOICES[-1]

    denoise = first(("condition", "denoise"), lambda s: Tiling(denoise=s, decode=TILE_CHOICES[-1]))
    decode = first(("encode", "decode"), lambda s: Tiling(denoise=TILE_CHOICES[-1], decode=s))
    return Tiling(denoise=denoise, decode=decode)


def _not_enough(peak: Callable[..., FrameMemory], width: int, height: int, chosen: FrameMemory, budget: Budget,
                extra: int, tile: int | str) -> NotEnoughMemory:
    """The refusal, naming the largest input of this aspect ratio that fits with the smallest tiles.
    ``peak(tiling, width, height)`` predicts a frame of another size."""
    smallest = Tiling(denoise=MIN_TILE, decode=MIN_TILE)

    def size(scale: float) -> tuple[int, int]:
        return max(SCALE, int(width * scale) // SCALE * SCALE), max(SCALE, int(height * scale) // SCALE * SCALE)

    def fits(scale: float) -> bool:
        w, h = size(scale)
        media = MEDIA_BYTES_PER_PIXEL * w * h * 16 if extra else 0
        return budget.bytes is not None and peak(smallest, w, h).peak + media <= budget.bytes

    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    largest = size(low) if low > 0 and fits(low) else None
    where = f"the {chosen.largest_phase} step" if chosen.frame_peak >= chosen.load else "loading the model"
    reach = (f"The largest input of this shape that fits is about {largest[0]}x{largest[1]}." if largest else
             "Not even a small input fits: the model itself needs more than that.")
    tiled = "" if tile == "auto" else f" With --tile {tile} it does not fit; --tile auto picks tiles that do, if any."
    fix = ("Fix: use a smaller input (downscale the video first; --height resizes only after the model), "
           "--precision bf16 or fp16 where available, --flow-scale 0.5 when the flow step is the largest, or "
           "raise --max-memory / STREAM_DIFFVSR_MAX_MEMORY if more memory is free.")
    return NotEnoughMemory(
        f"This job needs about {_gb(chosen.peak + extra)} of memory (most at {where}), more than "
        f"{budget.text}.{tiled} {reach} {fix}",
        needed_bytes=chosen.peak + extra, budget_bytes=budget.bytes or 0, largest=largest,
    )


def job_memory(options: UpscaleOptions, engine: dict[str, Any], width: int, height: int) -> MemoryPlan:
    """The ``MemoryPlan`` of a job on ``width`` x ``height`` input frames with the engine described by
    ``engine`` (``FrameProcessor.describe()``); raises ``NotEnoughMemory`` when it cannot fit."""
    device = str(engine.get("device") or options.device)
    precision = str(engine.get("precision") or options.precision)
    budget = memory_budget(device, options.max_memory)
    if engine.get("engine") == "bicubic":
        return _bicubic_memory(width, height, device, precision, budget)
    sizes = model_sizes(options.model_id, options.flow_weights)
    scale = float(engine.get("flow_scale") or options.flow_scale)
    flow = flow_method(engine, *flow_size(width * SCALE, height * SCALE, scale))
    return plan_memory(sizes, width, height, device=device, precision=precision, tile=options.tile,
                       budget=budget, flow=flow, flow_scale=scale)


def _bicubic_memory(width: int, height: int, device: str, precision: str, budget: Budget) -> MemoryPlan:
    """Bicubic needs the libraries, a few HR frames and the media pipeline; it is never tiled."""
    hr = width * height * 16
    peak = COEFFICIENTS.baseline_cpu + 40 * hr + MEDIA_BYTES_PER_PIXEL * hr
    plan = MemoryPlan(device, precision, "none", peak, peak, budget.bytes, budget.text, Tiling(), "output",
                      "bicubic (no model)")
    if budget.bytes is not None and peak > budget.bytes:
        raise NotEnoughMemory(
            f"Even bicubic upscaling of {width}x{height} needs about {_gb(peak)}, more than {budget.text}. Fix: use a "
            "smaller input, or raise --max-memory / STREAM_DIFFVSR_MAX_MEMORY if more memory is free.",
            needed_bytes=peak, budget_bytes=budget.bytes, largest=None)
    return plan


# Out of memory during a plan or a job: a job error that names the fix, not a crash.

_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA), MemoryError, and the RuntimeErrors torch raises when the
    CPU or MPS allocator fails ("DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory")."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXTS)


def out_of_memory(exc: BaseException, *, where: str, device: str, frame: int | None = None,
                  plan: MemoryPlan | None = None, left: str = "Nothing was written.") -> OutOfMemory | None:
    """The ``OutOfMemory`` job error for ``exc`` when it is an out-of-memory error, else None.

    ``where`` says what ran out ("frame 12 (0.480 s) of clip.mp4", "loading the model"); ``plan`` is
    the job's memory plan, whose prediction and tiling the message quotes; ``left`` what the caller
    leaves behind.
    """
    if not is_out_of_memory(exc):
        return None
    _release_cached(device)
    needed = plan.peak_bytes if plan is not None else None
    known = (f" The plan predicted about {_gb(needed)} of {plan.budget_text}"
             f" ({'tiled: ' + plan.tiling.describe() if plan.tiling.enabled else 'whole frames'})."
             if plan is not None and needed is not None else "")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return OutOfMemory(
        f"Out of memory on {device} while {where} ({type(exc).__name__}: {first}).{known} This is a memory limit, "
        "not a bug. Fix: set a smaller --max-memory / STREAM_DIFFVSR_MAX_MEMORY (the plan then cuts frames into "
        "tiles) or a smaller --tile (e.g. 64 or 32), use --precision bf16 or fp16 where available, close other "
        f"programs using that memory, or use a smaller input. {left}",
        frame=frame, device=device, needed_bytes=needed,
    )


def device_label(name: str) -> str:
    """The device an option names, resolved (``auto`` -> ``cpu`` / ``cuda`` / ``mps``) when it can be."""
    from vsr.model.devices import resolve_device
    from vsr.model.errors import DeviceError

    try:
        return str(resolve_device(name))
    except DeviceError:
        return name


def _release_cached(device: str) -> None:
    """Give cached GPU memory back after an out-of-memory error, so the process can go on."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
