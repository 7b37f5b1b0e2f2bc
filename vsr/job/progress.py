"""``ProgressEvent``: what a running job tells its caller, and the rate/ETA bookkeeping behind it.

One callback receives every event; the CLI renders them with tqdm, the web app as its status line
and live preview images. Both word the numbers with ``counter_text``, so they always agree.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from vsr.formatting import duration_text, speed_text

Stage = Literal["loading", "upscaling", "finishing", "verifying", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report of a job.

    ``done``/``total`` count output frames (``total`` is the plan's estimate; the real count may differ
    by a frame or two on variable-rate sources). ``fps`` is the recent upscaling rate in frames per
    second and ``eta_seconds`` the time left at that rate (``None`` until measurable).
    ``input_frame`` / ``output_frame`` are the newest low-resolution and upscaled frames, HWC uint8 RGB
    (values 0..255; uint16, 0..65535, from a source deeper than 8 bits: ``media.colour.to_8bit`` shows
    them), or ``None``. ``scene_cut`` is the index of the frame where the temporal context
    was just reset, on the one event that reports it. ``workers``: on a job spread over several
    workers, each one's speed in words (shown after the counter).
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
    workers: str = ""

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


def status_text(stage: str, done: int, total: int, fps: float | None, eta: float | None, message: str = "") -> str:
    """What a job is doing, in plain words, for every interface (the page's status line; the CLI's
    bar outside the upscaling stage, where it shows ``counter_text`` after the stage's name)."""
    if stage == "loading":
        return f"Loading the model… {message}".strip()
    if stage == "upscaling":
        return f"Upscaling {counter_text(done, total, fps, eta)}"
    if stage == "finishing":
        return f"Finishing the file (all {done} frames upscaled; writing audio and subtitles)…"
    if stage == "verifying":
        return "Checking the finished file (frames, frame rate, duration, audio)…"
    if stage == "done":
        return f"Done: {done} frames."
    return message or stage


def counter_text(done: int, total: int, fps: float | None, eta_seconds: float | None) -> str:
    """A running job's numbers in words, the same in every interface:
    ``"frame 24 of 120 · 3.10 frames/s · about 31 s left"``."""
    left = f"about {duration_text(eta_seconds)} left" if eta_seconds is not None else "time left: measuring"
    return f"frame {done} of {total} · {speed_text(fps)} · {left}"
