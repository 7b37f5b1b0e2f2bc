"""The per-frame engine protocol shared by every upscaler, and ``load_engine`` that builds one.

A ``FrameProcessor`` turns a stream of low-resolution frames into frames exactly ``scale`` times
larger, one call per frame, in presentation order. Frames are HWC ``uint8`` RGB numpy arrays
(values 0..255) both ways. See docs/ARCHITECTURE.md for the contract the job builds on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

ENGINE_NAMES = ("stream-diffvsr", "bicubic")


@runtime_checkable
class FrameProcessor(Protocol):
    """One video at a time, one frame in, one ``scale``x frame out.

    - ``process(rgb)``: HWC uint8 RGB (H, W, 3) in, HWC uint8 RGB (scale*H, scale*W, 3) out.
    - ``start_stream(seed)``: begin a new video; clears temporal state, seeds the noise generator
      (a fresh random seed when ``None``) and returns the seed used.
    - ``reset()``: scene cut; the next frame is treated as a first frame, noise draws continue.
    - ``flush()``: frames still held back (both engines hold none, so ``[]``).
    - ``describe()``: a JSON-safe dict (engine, device, precision, steps, seed, ...).
    """

    scale: int

    def output_size(self, width: int, height: int) -> tuple[int, int]: ...

    def process(self, rgb: np.ndarray) -> np.ndarray: ...

    def start_stream(self, seed: int | None = None) -> int: ...

    def reset(self) -> None: ...

    def flush(self) -> list[np.ndarray]: ...

    def describe(self) -> dict: ...


def check_frame(rgb: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``rgb`` is an HWC uint8 RGB frame of at least 1x1 pixels."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"A frame must be a numpy array (H, W, 3) of uint8 RGB; got {type(rgb).__name__}.")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(
            f"A frame must have shape (H, W, 3) (HWC RGB); got {rgb.shape}. "
            "Convert grey or RGBA frames to RGB before upscaling."
        )
    if rgb.dtype != np.uint8:
        raise ValueError(
            f"A frame must be uint8 (0..255); got dtype {rgb.dtype}. Convert with np.clip(x, 0, 255).astype(np.uint8)."
        )


def new_seed() -> int:
    """A fresh random seed (63 bits, from the OS entropy pool) that ``start_stream`` can report."""
    return int(np.random.SeedSequence().entropy % (2**63))


def load_engine(
    name: str,
    *,
    model_id: str = "Jamichsu/Stream-DiffVSR",
    flow_weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    steps: int = 4,
    seed: int | None = None,
    attention: str = "sdpa",
    flow_scale: float = 1.0,
) -> FrameProcessor:
    """Build the engine ``name`` (``"stream-diffvsr"`` or ``"bicubic"``) and start its first stream.

    ``seed`` is passed to ``start_stream`` so the returned engine is ready to process frames; call
    ``start_stream`` again before every further video. ``flow_scale`` (1, 0.5, 0.25): optical flow on
    frames downscaled by it (1 = exact). The bicubic engine ignores the model arguments. Loading
    failures raise ``vsr.errors.ModelLoadError`` (never a silent fallback to another engine).
    """
    if name == "bicubic":
        from vsr.bicubic import BicubicUpscaler

        engine: FrameProcessor = BicubicUpscaler()
    elif name == "stream-diffvsr":
        from vsr.stream import StreamDiffVSRUpscaler

        engine = StreamDiffVSRUpscaler.from_pretrained(
            model_id,
            flow_weights=flow_weights,
            device=device,
            precision=precision,
            steps=steps,
            attention=attention,
            flow_scale=flow_scale,
        )
    else:
        raise ValueError(f"Unknown engine {name!r}. Use one of: {', '.join(ENGINE_NAMES)}.")
    engine.start_stream(seed)
    logger.info("engine ready: %s", engine.describe())
    return engine
