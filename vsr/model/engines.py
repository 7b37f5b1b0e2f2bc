"""Building engines, and the process-wide cache and locks that let jobs share them.

``load_engine`` builds one engine (``"stream-diffvsr"`` or ``"bicubic"``). ``get_processor`` keeps
one loaded engine per set of model options for the whole process (one diffusion model at a time),
so the app and repeated jobs share it. ``engine_lock(engine)`` is the one lock per loaded engine:
a stream (a job, or a calibration) owns the engine's temporal state, and two streams sharing one
engine at once would interleave their frames through it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

from vsr.model.protocol import FrameProcessor
from vsr.options import DEFAULT_MODEL_ID, ENGINES, UpscaleOptions

logger = logging.getLogger(__name__)


def load_engine(
    name: str,
    *,
    model_id: str = DEFAULT_MODEL_ID,
    flow_weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    steps: int = 4,
    seed: int | None = None,
    attention: str = "sdpa",
    flow_scale: float = 1.0,
    optimisations: str | tuple[str, ...] = "auto",
    cache_dir: str | Path | None = None,
) -> FrameProcessor:
    """Build the engine ``name`` (``"stream-diffvsr"`` or ``"bicubic"``) and start its first stream.

    ``seed`` is passed to ``start_stream`` so the returned engine is ready to process frames; call
    ``start_stream`` again before every further video. ``flow_scale`` (1, 0.5, 0.25): optical flow on
    frames downscaled by it (1 = exact). The bicubic engine ignores the model
    arguments. Loading failures raise ``vsr.model.errors.ModelLoadError`` (never a silent fallback to
    another engine). ``optimisations`` are the speed switches (``vsr.model.switches``); compiled
    kernels and AOTInductor packages are cached under ``cache_dir``.
    """
    if name == "bicubic":
        from vsr.model.bicubic import BicubicUpscaler

        engine: FrameProcessor = BicubicUpscaler()
    elif name == "stream-diffvsr":
        from vsr.model.stream import StreamDiffVSRUpscaler

        engine = StreamDiffVSRUpscaler.from_pretrained(
            model_id,
            flow_weights=flow_weights,
            device=device,
            precision=precision,
            steps=steps,
            attention=attention,
            flow_scale=flow_scale,
            optimisations=optimisations,
            cache_dir=cache_dir,
        )
    else:
        raise ValueError(f"Unknown engine {name!r}. Use one of: {', '.join(ENGINES)}.")
    engine.start_stream(seed)
    logger.info("engine ready: %s", engine.describe())
    return engine


_PROCESSORS: OrderedDict[tuple, FrameProcessor] = OrderedDict()
_PROCESSORS_LOCK = threading.Lock()


def processor_key(options: UpscaleOptions) -> tuple:
    """The options that decide which model is loaded (the seed is not one: it is set per video)."""
    if options.engine == "bicubic":
        return ("bicubic",)
    return (
        options.engine,
        options.model_id,
        str(options.flow_weights) if options.flow_weights else None,
        options.device,
        options.precision,
        options.steps,
        options.attention,
        options.flow_scale,
        options.optimisations,
    )


def get_processor(options: UpscaleOptions) -> FrameProcessor:
    """The engine for ``options``, loaded on first use and then shared by every job of this process.

    Only one diffusion model is kept: asking for a different one (another model id, device,
    precision...) releases the previous one first, so two never sit in GPU memory together.
    Raises ``vsr.model.errors.ModelLoadError`` when the model cannot be loaded.
    """
    key = processor_key(options)
    with _PROCESSORS_LOCK:
        if key in _PROCESSORS:
            _PROCESSORS.move_to_end(key)
            return _PROCESSORS[key]
        if key[0] != "bicubic":
            for old in [k for k in _PROCESSORS if k[0] != "bicubic"]:
                logger.info("releasing engine %s to load %s", old, key)
                del _PROCESSORS[old]
            _release_gpu_memory()
        started = time.perf_counter()
        processor = load_engine(
            options.engine,
            model_id=options.model_id,
            flow_weights=options.flow_weights,
            device=options.device,
            precision=options.precision,
            steps=options.steps,
            seed=options.seed,
            attention=options.attention,
            flow_scale=options.flow_scale,
            optimisations=options.optimisations,
            cache_dir=options.cache_dir,
        )
        logger.info("loaded engine %s in %.1f s", key, time.perf_counter() - started)
        _PROCESSORS[key] = processor
        return processor


def clear_processors() -> None:
    """Forget every cached engine (tests; or to free memory in a long-lived process)."""
    with _PROCESSORS_LOCK:
        _PROCESSORS.clear()
        _release_gpu_memory()


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def engine_lock(engine: Any) -> threading.Lock:
    """The lock of ``engine`` (created on first use, forgotten with the engine)."""
    with _GUARD:
        lock = _LOCKS.get(engine)
        if lock is None:
            lock = _LOCKS[engine] = threading.Lock()
        return lock
