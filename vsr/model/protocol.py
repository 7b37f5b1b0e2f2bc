"""The per-frame engine protocol every upscaler implements, and the two helpers they share.

A ``FrameProcessor`` turns a stream of low-resolution frames into frames exactly ``scale`` times
larger, one call per frame, in presentation order. Frames are HWC ``uint8`` RGB numpy arrays
(values 0..255) both ways, or, for a source deeper than 8 bits, ``uint16`` (0..65535) both ways: an
engine gives back the dtype it was given and never rounds a deep frame to 8 bits on the way.
See docs/architecture.md for the contract the job builds on.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameProcessor(Protocol):
    """One video at a time, one frame in, one ``scale``x frame out.

    - ``process(rgb)``: HWC uint8 RGB (H, W, 3) in, HWC uint8 RGB (scale*H, scale*W, 3) out.
    - ``start_stream(seed)``: begin a new video; clears temporal state, seeds the noise generator
      (a fresh random seed when ``None``) and returns the seed used. ``start_stream(seed, frame=k)``:
      a piece of a video that starts at its frame k (one segment of a job on several workers): each
      frame still takes the noise a whole run takes for it (the noise of frame k depends only on
      the seed and k).
    - ``reset()``: scene cut; the next frame is treated as a first frame, noise draws continue.
    - ``flush()``: frames still held back (both engines hold none, so ``[]``).
    - ``describe()``: a JSON-safe dict (engine, device, precision, steps, seed, ...).
    - ``save_stream()``: everything the running stream carries to its next frame (temporal state,
      the noise generator's state, seed, counters), as picklable plain data and CPU tensors, copied,
      so a checkpoint can outlive the engine (a crash, the end of a ZeroGPU call).
    - ``load_stream(state)``: after ``start_stream(seed)``, go on exactly where ``save_stream`` was
      called (tensors back on this engine's device); the next ``process`` gives the frame an
      uninterrupted stream would have given. Raises ``ValueError`` for another engine's state.
    """

    scale: int

    def output_size(self, width: int, height: int) -> tuple[int, int]: ...

    def process(self, rgb: np.ndarray) -> np.ndarray: ...

    def start_stream(self, seed: int | None = None, frame: int = 0) -> int: ...

    def reset(self) -> None: ...

    def flush(self) -> list[np.ndarray]: ...

    def describe(self) -> dict: ...

    def save_stream(self) -> object: ...

    def load_stream(self, state: object) -> None: ...


def check_frame(rgb: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``rgb`` is an HWC uint8 (or uint16) RGB frame of at least 1x1 pixels."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"A frame must be a numpy array (H, W, 3) of uint8 RGB; got {type(rgb).__name__}.")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(
            f"A frame must have shape (H, W, 3) (HWC RGB); got {rgb.shape}. "
            "Convert grey or RGBA frames to RGB before upscaling."
        )
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"A frame must be uint8 (0..255) or, from a source deeper than 8 bits, uint16 (0..65535); got dtype "
            f"{rgb.dtype}. Convert with np.clip(x, 0, 255).astype(np.uint8)."
        )


def torch_ready(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` C-contiguous and writable (copied only when it is not), as ``torch.from_numpy`` takes it
    without warning "The given NumPy array is not writable" (``np.asarray`` of a PIL image is read-only)."""
    rgb = np.ascontiguousarray(rgb)
    return rgb if rgb.flags.writeable else rgb.copy()


def new_seed() -> int:
    """A fresh random seed (63 bits, from the OS entropy pool) that ``start_stream`` can report."""
    return int(np.random.SeedSequence().entropy % (2**63))
