"""``BicubicUpscaler``: the plain 4x bicubic engine (an honest baseline and the media tests' engine).

Same per-frame protocol as the diffusion model (``vsr.model.engines.FrameProcessor``), no model, no state.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vsr.model.protocol import check_frame, new_seed, torch_ready


class BicubicUpscaler:
    """Exact ``scale``x bicubic upscaling of HWC uint8 (or uint16) RGB frames on the CPU.

    Uses ``torch.nn.functional.interpolate`` (bicubic, align_corners False, no antialias: it only
    matters when shrinking) in float32 on 0..255 values, then clamps to [0, 255], rounds half to even
    and converts back to uint8. The output is exactly (scale*H, scale*W, 3) for any input size.
    """

    def __init__(self, scale: int = 4) -> None:
        if scale < 1:
            raise ValueError(f"scale must be a positive integer; got {scale}.")
        self.scale = scale
        self._seed: int | None = None
        self._frames = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input of ``width`` x ``height`` pixels."""
        return width * self.scale, height * self.scale

    def start_stream(self, seed: int | None = None, frame: int = 0) -> int:
        """Begin a new video (``frame``: the index of its first frame, for a piece of a longer one).
        Bicubic draws no noise; the seed is kept only so runs report one."""
        self._seed = new_seed() if seed is None else int(seed)
        self._frames = int(frame)
        return self._seed

    def reset(self) -> None:
        """Scene cut: nothing to clear (bicubic has no temporal state)."""

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (scale*H, scale*W, 3) uint8 RGB; uint16 (a deep source) -> uint16, the
        same arithmetic on 0..65535 (float32 holds every 16-bit level exactly)."""
        check_frame(rgb)
        h, w, _ = rgb.shape
        deep = rgb.dtype == np.uint16
        pixels = torch.from_numpy(torch_ready(rgb.astype(np.int32) if deep else rgb))
        x = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        top = 65535.0 if deep else 255.0
        with torch.inference_mode():
            y = F.interpolate(x, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
            y = y.clamp_(0.0, top).round_().to(torch.int32 if deep else torch.uint8)
        self._frames += 1
        out = np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())
        return out.astype(np.uint16) if deep else out

    def flush(self) -> list[np.ndarray]:
        """Frames still held back: none (every ``process`` call returns its frame)."""
        return []

    def save_stream(self) -> dict:
        """Bicubic carries no temporal state; only the seed and the frame count (for ``describe``)."""
        return {"engine": "bicubic", "seed": self._seed, "frames": self._frames}

    def load_stream(self, state: object) -> None:
        """Go on after ``save_stream``'s frame (nothing to restore but the counters)."""
        if not isinstance(state, dict) or state.get("engine") != "bicubic":
            raise ValueError("This stream state is not the bicubic engine's; resume with the engine that saved it.")
        self._seed, self._frames = state["seed"], int(state["frames"])

    def describe(self) -> dict:
        """JSON-safe description of the engine for plans, logs and reports."""
        return {
            "engine": "bicubic",
            "device": "cpu",
            "precision": "fp32",
            "steps": 0,
            "seed": self._seed,
            "scale": self.scale,
        }
