"""Honest time estimates: time the real engine on this device, cache the result, extrapolate.

A calibration runs the loaded ``FrameProcessor`` on synthetic frames (content does not change the
cost of either engine) and records *steady-state* seconds per frame: after one untimed warm-up
pass, each measurement starts a stream, processes one first frame untimed (the first frame takes a
different, cheaper path through the diffusion model), then times ``TIMED_FRAMES`` following frames
and keeps the fastest (the first call at a new size also pays one-off set-up costs). Two small
sizes are always measured (``BASE_SIZES``, low-resolution input pixels); seconds per frame is then
a line in the input pixel count (fixed cost + cost per pixel), which is how both engines scale.
When that line predicts that the job's own frame size costs at most ``REAL_SIZE_BUDGET`` seconds
per frame, the real size is measured too, and estimates near it use that point directly. Every
point is cached in ``calibration.json`` under the options' cache directory, keyed by the engine
description (engine, model, device, precision, steps, attention), the device name and the torch
version, so later plans on the same device answer without running the model.

The estimate covers model time, which dominates; decoding and encoding run in their own threads at
the same time (``bench/job.py`` measures what they add).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vsr.engine_lock import engine_lock
from vsr.engines import FrameProcessor

logger = logging.getLogger(__name__)

BASE_SIZES: tuple[tuple[int, int], ...] = ((32, 24), (64, 48))
"""(width, height) of the low-resolution frames always measured."""
TIMED_FRAMES = 2
REAL_SIZE_BUDGET = 2.0
"""Measure at the job's real size when the small-size line predicts at most this many seconds per frame."""
CACHE_FILE = "calibration.json"
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
    The processor's stream state is left reset; callers start their own stream afterwards. Holds
    the engine's lock (``vsr.engine_lock``) meanwhile, so it never runs inside another job's stream.
    """
    key = cache_key(processor)
    with _LOCK, engine_lock(processor):
        cache = _read_cache(cache_dir)
        points: dict[int, float] = {int(p): float(s) for p, s in cache.get(key, {}).items()}
        measured = False
        for w, h in BASE_SIZES:
            if w * h not in points:
                if not measured:
                    _warm_up(processor)
                points[w * h] = measure(processor, w, h)
                measured = True
        guess = Calibration(key, tuple(points.items()), cached=not measured)
        if width * height not in points and guess.seconds_per_frame(width, height) <= REAL_SIZE_BUDGET:
            points[width * height] = measure(processor, width, height)
            measured = True
        if measured:
            cache[key] = {str(p): s for p, s in sorted(points.items())}
            _write_cache(cache_dir, cache)
    return Calibration(key, tuple(sorted(points.items())), cached=not measured)


def measure(processor: FrameProcessor, width: int, height: int) -> float:
    """Steady-state seconds per frame of ``processor`` at ``width`` x ``height`` input pixels."""
    frames = _frames(width, height, 1 + TIMED_FRAMES)
    processor.start_stream(0)
    try:
        processor.process(frames[0])
        times = []
        for frame in frames[1:]:
            start = time.perf_counter()
            processor.process(frame)
            times.append(time.perf_counter() - start)
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
    """Write the cache atomically (temporary file + rename), so a crash never leaves half a file."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".calibration-", suffix=".json", dir=cache_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(cache, handle, indent=1, sort_keys=True)
        try:
            os.replace(name, cache_dir / CACHE_FILE)
        finally:
            Path(name).unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("could not save the calibration cache in %s (%s); the next plan will measure again. "
                       "Set STREAM_DIFFVSR_CACHE_DIR to a writable folder.", cache_dir, exc)
