"""Honest time estimates: time the real engine on this device, cache the result, extrapolate.

A calibration runs the loaded ``FrameProcessor`` on synthetic frames (content does not change the
cost of either engine) and records *steady-state* seconds per frame: after one untimed warm-up
pass, each measurement starts a stream, processes one first frame untimed (the first frame takes a
different, cheaper path through the diffusion model), then times ``TIMED_FRAMES`` following frames
and keeps the fastest (the first call at a new size also pays one-off set-up costs). Two small
sizes are always measured (``BASE_SIZES``, low-resolution input pixels); seconds per frame is then
a line in the input pixel count (fixed cost + cost per pixel), which is how both engines scale.
Then sizes of the job's own shape are measured on the way up to the job's own size (each side
doubled from the last, ``_rungs``), while the line through the points so far predicts that the
next one costs at most ``REAL_SIZE_BUDGET`` seconds per frame: estimates then come from nearby
points (at the job's own size, exactly), not from a long extrapolation of two tiny sizes, where a
moment of load on a busy machine would be multiplied. Every
point is cached in ``calibration.json`` under the options' cache directory, keyed by the engine
description (engine, model, device, precision, steps, attention), the device name and the torch
version, so later plans on the same device answer without running the model. A cached answer
is returned without taking the engine's lock, so planning never waits for a running job; the lock
is taken only to measure.

Every finished job records the steady-state speed it actually had at its own frame size
(``record``; ``vsr.job.runner.run`` calls it), so later estimates at that size are measured ones. Where the
model must not run outside a job (a Hugging Face ZeroGPU Space has no GPU outside its GPU function),
the plan uses ``lookup`` and, when nothing was measured yet, ``provisional``: a clearly labelled
estimate from the paper's published speed until the first job there records the real one.

This module times the engine; ``vsr.job.pipeline`` measures decoding, encoding and verifying and
adds the stages up into the job's time (``bench/estimates.py`` compares it with real jobs).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from media import write_durably
from vsr.job import pipeline
from vsr.model import engines
from vsr.model.engines import engine_lock
from vsr.model.protocol import FrameProcessor
from vsr.options import SCALE, UpscaleOptions

logger = logging.getLogger(__name__)

BASE_SIZES: tuple[tuple[int, int], ...] = ((32, 24), (64, 48))
"""(width, height) of the low-resolution frames always measured."""
TIMED_FRAMES = 2
"""Each round of a measurement starts a stream, processes a first frame untimed and times this many."""
MAX_ROUNDS = 4
MIN_TIMED_SECONDS = 0.3
"""A cheap engine is measured in more rounds (up to ``MAX_ROUNDS``, until this much time was timed),
keeping the fastest frame: on a busy machine one or two timings of a millisecond can be ten times too
slow, and the line through the small sizes would carry that error to every larger size."""
MIN_RECORDED_FRAMES = 2
"""A job records its speed only when it timed at least this many steady-state frames."""
PROVISIONAL_PIXELS = 320 * 180
PROVISIONAL_SECONDS: dict[str, float] = {"stream-diffvsr": 0.328, "bicubic": 0.002}
"""Seconds per frame at ``PROVISIONAL_PIXELS`` input pixels (a 720p output) with 4 steps, used until a
device has a measurement: for Stream-DiffVSR the paper's published 0.328 s per 720p frame on an RTX
4090; for bicubic a generous guess. Scaled linearly in input pixels and (for the model) steps."""
PROVISIONAL_STEPS = 4
REAL_SIZE_BUDGET = 2.0
"""Measure at the job's real size when the small-size line predicts at most this many seconds per frame."""
CACHE_FILE = "calibration.json"
CPU_ENGINES = frozenset({"bicubic"})
"""Engines that never touch a GPU, so they may be loaded and timed outside a ZeroGPU call."""
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Calibration:
    """Measured steady-state seconds per frame at some input sizes, for one engine on one device.

    ``points`` maps input pixel counts (width x height of the low-resolution frame) to seconds per
    frame. ``cached`` says whether every point used came from the cache.
    """

    key: str
    points: tuple[tuple[int, float], ...]
    cached: bool
    provisional: bool = False
    """True when nothing was measured on this device yet: the points are ``provisional``'s guess."""

    def seconds_per_frame(self, width: int, height: int) -> float:
        """Seconds to upscale one frame of ``width`` x ``height`` input pixels.

        Exact at a measured size; otherwise linear in pixels between the two nearest measured sizes,
        or along the line through the two largest (or smallest) ones beyond them. Never negative.
        """
        pixels = width * height
        points = sorted(self.points)
        for p, s in points:
            if p == pixels:
                return s
        if len(points) == 1:
            p, s = points[0]
            return s * pixels / p
        if pixels < points[0][0]:
            (p0, s0), (p1, s1) = points[0], points[1]
        elif pixels > points[-1][0]:
            (p0, s0), (p1, s1) = points[-2], points[-1]
        else:
            index = next(i for i, (p, _) in enumerate(points) if p > pixels)
            (p0, s0), (p1, s1) = points[index - 1], points[index]
        slope = max(0.0, (s1 - s0) / (p1 - p0))
        return max(0.0, s0 + slope * (pixels - p0))

    def describe(self) -> str:
        if self.provisional:
            return ("provisional: not yet measured on this device; based on the paper's 0.328 s per 720p frame "
                    "on an RTX 4090, scaled by pixels and steps; the first job here measures the real speed")
        sizes = ", ".join(f"{p} px: {s * 1000:.1f} ms" for p, s in sorted(self.points))
        return f"measured on this device ({'cached' if self.cached else 'just now'}; per frame at {sizes})"


def device_name(device: str) -> str:
    """A stable name of the hardware an engine runs on (GPU model or CPU), for the cache key."""
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return f"cuda:{torch.cuda.get_device_name(index)}"
    if device == "mps":
        return f"mps:{platform.machine()}"
    return f"cpu:{platform.processor() or platform.machine()}:{os.cpu_count()}cpus:{torch.get_num_threads()}threads"


def cache_key(processor: FrameProcessor) -> str:
    """The calibration cache key of ``processor``: its description without the seed, plus the device."""
    description = {k: v for k, v in processor.describe().items() if k != "seed"}
    description["hardware"] = device_name(str(description.get("device", "cpu")))
    description["torch"] = torch.__version__
    return json.dumps(description, sort_keys=True, default=str)


def calibrate(processor: FrameProcessor, cache_dir: Path, width: int, height: int) -> Calibration:
    """Calibration for ``processor``, measuring what the cache in ``cache_dir`` does not have yet.

    ``width`` x ``height`` is the job's input frame size (measured too when cheap, see module doc).
    A fully cached answer returns at once, without the engine's lock, even while a job runs on the
    engine. Measuring takes the engine's lock (``vsr.model.engines``), so it never runs inside another
    job's stream, and leaves the processor's stream state reset; callers start their own stream.
    """
    key = cache_key(processor)
    points, missing = _needed(_cached_points(cache_dir, key), width, height)
    if not missing:
        return Calibration(key, tuple(sorted(points.items())), cached=True)
    with engine_lock(processor):
        # Another plan may have measured while this one waited for the lock.
        points, missing = _needed(_cached_points(cache_dir, key), width, height)
        if not missing:
            return Calibration(key, tuple(sorted(points.items())), cached=True)
        measured: dict[int, float] = {}
        _warm_up(processor)
        while missing:
            for w, h in missing:
                measured[w * h] = points[w * h] = measure(processor, w, h)
            points, missing = _needed(points, width, height)
    _merge(cache_dir, key, measured)
    return Calibration(key, tuple(sorted(points.items())), cached=False)


def lookup(cache_dir: Path, key: str) -> Calibration | None:
    """The cached calibration under ``key`` (see ``cache_key``), or None when nothing is cached.

    Never runs or locks an engine: this is what a plan uses where the model may not run.
    """
    points = _cached_points(cache_dir, key)
    return Calibration(key, tuple(sorted(points.items())), cached=True) if points else None


def provisional(key: str, engine: str, steps: int) -> Calibration:
    """A labelled guess (``Calibration.provisional``) for ``engine`` at ``steps`` denoising steps,
    for a device with no measurement yet (see ``PROVISIONAL_SECONDS``); linear in input pixels."""
    seconds = PROVISIONAL_SECONDS[engine] * (steps / PROVISIONAL_STEPS if engine != "bicubic" else 1.0)
    points = ((PROVISIONAL_PIXELS, seconds), (4 * PROVISIONAL_PIXELS, 4 * seconds))
    return Calibration(key, points, cached=False, provisional=True)


def record(cache_dir: Path, keys: Iterable[str], width: int, height: int, seconds_per_frame: float) -> None:
    """Store a job's measured steady-state ``seconds_per_frame`` at ``width`` x ``height`` input
    pixels under each of ``keys``, replacing an earlier figure for that size. Later plans at that
    size use it as it is; other sizes are interpolated with it (``Calibration.seconds_per_frame``)."""
    if not (seconds_per_frame > 0 and seconds_per_frame != float("inf")):
        raise ValueError(f"seconds per frame must be a positive finite number; got {seconds_per_frame!r}.")
    for key in dict.fromkeys(keys):
        _merge(cache_dir, key, {width * height: float(seconds_per_frame)})
    logger.info("calibration: recorded %.4f s per frame at %dx%d input from a finished job", seconds_per_frame,
                width, height)


def _cached_points(cache_dir: Path, key: str) -> dict[int, float]:
    entry = _read_cache(cache_dir).get(key, {})
    try:
        return {int(p): float(s) for p, s in entry.items()} if isinstance(entry, dict) else {}
    except (TypeError, ValueError):
        logger.warning("ignoring a malformed calibration entry in %s; it will be measured again", cache_dir)
        return {}


def _needed(points: dict[int, float], width: int, height: int) -> tuple[dict[int, float], list[tuple[int, int]]]:
    """(points, sizes to measure next): the base sizes not measured yet; once they are, the next of
    ``_rungs`` towards the job's ``width`` x ``height`` when the line so far predicts that it costs
    at most ``REAL_SIZE_BUDGET`` seconds per frame; nothing when the job's size is measured."""
    missing = [(w, h) for w, h in BASE_SIZES if w * h not in points]
    if missing or width * height in points:
        return points, missing
    rungs = _rungs(width, height, max(points))
    if rungs and Calibration("", tuple(points.items()), cached=True).seconds_per_frame(*rungs[0]) <= REAL_SIZE_BUDGET:
        return points, [rungs[0]]
    return points, []


def _rungs(width: int, height: int, above: int) -> list[tuple[int, int]]:
    """Sizes of the job's shape above ``above`` pixels, smallest first: its own size, and the sizes
    with both sides halved again and again."""
    rungs = []
    while width * height > above and min(width, height) >= 2:
        rungs.append((width, height))
        width, height = width // 2, height // 2
    return rungs[::-1]


def _merge(cache_dir: Path, key: str, points: dict[int, float]) -> None:
    """Add ``points`` to ``key``'s entry in the cache file (read, update, write atomically)."""
    if not points:
        return
    with _LOCK:
        cache = _read_cache(cache_dir)
        entry = cache.get(key) if isinstance(cache.get(key), dict) else {}
        entry.update({str(p): s for p, s in points.items()})
        cache[key] = dict(sorted(entry.items(), key=lambda item: int(item[0])))
        _write_cache(cache_dir, cache)


def measure(processor: FrameProcessor, width: int, height: int) -> float:
    """Steady-state seconds per frame of ``processor`` at ``width`` x ``height`` input pixels: the
    fastest frame of one or more rounds (``TIMED_FRAMES``, ``MAX_ROUNDS``, ``MIN_TIMED_SECONDS``)."""
    frames = _frames(width, height, 1 + TIMED_FRAMES)
    times: list[float] = []
    try:
        for _ in range(MAX_ROUNDS):
            processor.start_stream(0)
            processor.process(frames[0])
            for frame in frames[1:]:
                start = time.perf_counter()
                processor.process(frame)
                times.append(time.perf_counter() - start)
            if sum(times) >= MIN_TIMED_SECONDS:
                break
        seconds = min(times)
    finally:
        processor.reset()
    logger.info("calibration: %dx%d input takes %.4f s per frame", width, height, seconds)
    return seconds


def _warm_up(processor: FrameProcessor) -> None:
    """One untimed first frame and one following frame at the smallest size: lazy initialisation
    (kernels, the optical-flow model's first call) must not count as steady-state time."""
    width, height = BASE_SIZES[0]
    processor.start_stream(0)
    try:
        for frame in _frames(width, height, 2):
            processor.process(frame)
    finally:
        processor.reset()


def _frames(width: int, height: int, count: int) -> list[np.ndarray]:
    """Smooth moving test pictures, HWC uint8 RGB, so optical flow has something to track."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = []
    for i in range(count):
        r = 127 + 100 * np.sin((x + 2 * i) / 7.0)
        g = 127 + 100 * np.cos((y + i) / 5.0)
        b = 127 + 60 * np.sin((x + y) / 11.0)
        frames.append(np.stack([r, g, b], axis=2).clip(0, 255).astype(np.uint8))
    return frames


def _read_cache(cache_dir: Path) -> dict:
    path = cache_dir / CACHE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable calibration cache %s (%s); it will be rewritten", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_dir: Path, cache: dict) -> None:
    """Write the cache atomically (``media.write_durably``), so a crash never leaves half a file."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(cache, indent=1, sort_keys=True).encode("utf-8")
        write_durably(cache_dir / CACHE_FILE, lambda fh: fh.write(data))
    except OSError as exc:
        logger.warning("could not save the calibration cache in %s (%s); the next plan will measure again. "
                       "Set STREAM_DIFFVSR_CACHE_DIR to a writable folder.", cache_dir, exc)


# ---------------------------------------------------------------------------------------------
# Estimators: what a plan is handed to learn the engine's description and speed.


class Estimator(Protocol):
    """The time-estimate component a plan is given (``vsr.job.planning.plan(..., estimator=)``).

    - ``engine()``: the engine's description (``FrameProcessor.describe()`` keys).
    - ``will_measure(width, height)``: whether ``calibration`` at that input size would run the
      engine to measure (slow: the caller says so to its user first); False when cached.
    - ``calibration(width, height)``: the speed at that input size (``Calibration``).
    - ``media(info, settings)``: what decoding ``info``'s video, encoding with ``settings`` and
      verifying cost on this machine (``vsr.job.pipeline.MediaCosts``; measured in well under a second).
    """

    def engine(self) -> dict[str, Any]: ...

    def will_measure(self, width: int, height: int) -> bool: ...

    def calibration(self, width: int, height: int) -> Calibration: ...

    def media(self, info: Any, settings: Any) -> pipeline.MediaCosts: ...


@dataclass(frozen=True)
class EngineEstimator:
    """A real engine's speed on this device: cached measurements, measured (and cached) where missing.

    The engine is ``processor``, or the process's shared engine for ``options`` (loaded only when
    first needed, after the plan has checked the input). ``on_measure`` is called just before a
    measurement runs, so an interface can tell its user why this plan takes a few seconds.
    """

    options: UpscaleOptions
    processor: FrameProcessor | None = None
    on_measure: Callable[[], None] | None = None

    def _engine(self) -> FrameProcessor:
        return self.processor if self.processor is not None else engines.get_processor(self.options)

    def engine(self) -> dict[str, Any]:
        return self._engine().describe()

    def will_measure(self, width: int, height: int) -> bool:
        points = _cached_points(self.options.cache_dir, cache_key(self._engine()))
        return bool(_needed(points, width, height)[1])

    def calibration(self, width: int, height: int) -> Calibration:
        if self.on_measure is not None and self.will_measure(width, height):
            self.on_measure()
        return calibrate(self._engine(), self.options.cache_dir, width, height)

    def media(self, info: Any, settings: Any) -> pipeline.MediaCosts:
        return pipeline.media_costs(info, settings)


@dataclass(frozen=True)
class CachedEstimator:
    """An engine's speed without loading or running it: measurements cached under ``key`` by earlier
    jobs, or the labelled ``provisional`` figure when there are none (a ZeroGPU Space, where there is
    no GPU outside the job's GPU call)."""

    key: str
    description: dict[str, Any]
    cache_dir: Path

    def engine(self) -> dict[str, Any]:
        return dict(self.description)

    def will_measure(self, width: int, height: int) -> bool:
        return False

    def calibration(self, width: int, height: int) -> Calibration:
        engine, steps = self.description["engine"], int(self.description.get("steps") or 4)
        return lookup(self.cache_dir, self.key) or provisional(self.key, engine, steps)

    def media(self, info: Any, settings: Any) -> pipeline.MediaCosts:
        return pipeline.media_costs(info, settings)  # the CPU side: no GPU needed


def zerogpu_calibration_key(options: UpscaleOptions) -> str:
    """The calibration cache key of ``options``' engine on a ZeroGPU Space, built without loading it
    (no GPU outside the GPU call). The job records its speed under it, too."""
    return json.dumps({
        "engine": options.engine, "model": options.model_id,
        "flow_weights": str(options.flow_weights) if options.flow_weights else None,
        "precision": options.precision, "steps": options.steps, "attention": options.attention,
        "flow_scale": options.flow_scale, "hardware": "zerogpu", "torch": torch.__version__,
        "optimisations": ",".join(options.optimisations),
    }, sort_keys=True)


def zerogpu_estimator(options: UpscaleOptions) -> CachedEstimator:
    """The estimator of a ZeroGPU plan: the engine is described from ``options`` (it loads only in the
    GPU call) and its speed is what earlier jobs on the Space recorded, or provisional."""
    description = {
        "engine": options.engine, "device": "ZeroGPU",
        "precision": options.precision if options.precision != "auto" else "precision chosen on the GPU",
        "steps": options.steps, "seed": options.seed, "scale": SCALE, "model": options.model_id,
        "flow_weights": str(options.flow_weights) if options.flow_weights else None,
        "attention": options.attention, "flow_scale": options.flow_scale,
        "optimisations": ",".join(options.optimisations),
    }
    return CachedEstimator(zerogpu_calibration_key(options), description, options.cache_dir)


def estimator_for(options: UpscaleOptions, processor: FrameProcessor | None = None, *,
                  zero_gpu: bool = False, on_measure: Callable[[], None] | None = None) -> Estimator:
    """The estimator an interface hands to ``plan``: on ZeroGPU, for a GPU engine, the cached one
    (nothing is loaded); otherwise ``processor`` (default: the process's shared engine for
    ``options``, ``vsr.model.engines.get_processor``, loaded when first needed) timed on this device."""
    if zero_gpu and processor is None and options.engine not in CPU_ENGINES:
        return zerogpu_estimator(options)
    return EngineEstimator(options, processor, on_measure)
