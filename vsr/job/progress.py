"""``ProgressEvent``: what a running job tells its caller, and the rate/ETA bookkeeping behind it.

One callback receives every event; the CLI renders them with tqdm, the web app with ``gr.Progress``
and live preview images.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

Stage = Literal["loading", "upscaling", "finishing", "verifying", "done"]
STAGES: tuple[str, ...] = ("loading", "upscaling", "finishing", "verifying", "done")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a job.

    ``done``/``total`` count output frames (``total`` is the plan's estimate; the real count may differ
    by a frame or two on variable-rate sources). ``fps`` is the recent upscaling rate in frames per
    second and ``eta_seconds`` the time left at that rate (``None`` until measurable).
    ``input_frame`` / ``output_frame`` are the newest low-resolution and upscaled frames, HWC uint8 RGB
    (values 0..255), or ``None``. ``scene_cut`` is the index of the frame where the temporal context
    was just reset, on the one event that reports it.
    """

    stage: Stage
    done: int
    total: int
    fps: float | None = None
    eta_seconds: float | None = None
    input_frame: np.ndarray | None = None
    output_frame: np.ndarray | None = None
    message: str = ""
    scene_cut: int | None = None

    @property
    def fraction(self) -> float:
        """Share of the frames done, 0.0 .. 1.0."""
        if self.total <= 0:
            return 0.0
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[ProgressEvent], None]


class RateMeter:
    """Frames per second over the last ``window`` frames, and the ETA for the frames left."""

    def __init__(self, window: int = 20, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._times: deque[float] = deque(maxlen=window + 1)
        self._times.append(clock())

    def tick(self) -> None:
        """Record that one more frame is done."""
        self._times.append(self._clock())

    @property
    def fps(self) -> float | None:
        if len(self._times) < 2:
            return None
        elapsed = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / elapsed if elapsed > 0 else None

    def eta(self, remaining: int) -> float | None:
        fps = self.fps
        if fps is None or fps <= 0:
            return None
        return max(0, remaining) / fps
