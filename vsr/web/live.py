"""The Live tab's logic, without Gradio: a camera's frames in, the upscaled picture out, continuously.

One ``LiveSession`` per visitor holds a ``vsr.api.Upscaler`` (the model's temporal state carried from
frame to frame) and an engine thread. A frame that arrives while the engine is busy is dropped (and
counted), never queued, so the picture stays current; the page shows input and output frame rates,
the dropped frames and the latency (a frame's arrival to its upscaled picture). The input is scaled
down to ``live_size``: the largest picture of the camera's shape that this device upscales at
``LIVE_FPS`` or better (from the engine's calibration) and that fits its memory (``vsr.job.memory``).
``app.py`` wires it to a ``gr.Image(sources=["webcam"], streaming=True).stream(...)`` that shares the
file jobs' concurrency group: one live visitor (or job) per device at a time, others see their place
in the queue, each session for at most ``LIVE_SECONDS``.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vsr.job.resize import resize_rgb

logger = logging.getLogger(__name__)

LIVE_FPS = 4.0
"""The least output frame rate that counts as usable: the input is made small enough for it."""
LIVE_SECONDS = 60
"""One visitor's live session lasts at most this long; the next in line then gets the device."""
IDLE_SECONDS = 5.0
"""A session that got no frame for this long is over: its engine thread ends, its state is dropped."""
SHORT_SIDES = (720, 540, 480, 360, 288, 240, 180, 144, 120, 96, 72, 48, 32)
"""The input's short sides tried, largest first."""
WINDOW_S = 3.0
"""Rates are counted over the last few seconds."""
ZERO_GPU_TEXT = (
    "The Live tab is not offered on this ZeroGPU Space: ZeroGPU lends its GPU only for the length of one "
    "function call, reserved ahead for a known amount of work, while a camera sends a frame at a time for as "
    "long as it runs. Upload a recording instead, or run the app on your own GPU (see the docs).")


def live_size(width: int, height: int, seconds_per_frame: Callable[[int, int], float],
              fits: Callable[[int, int], bool], fps: float = LIVE_FPS) -> tuple[int, int]:
    """The input size for a ``width`` x ``height`` camera: the largest of its shape (even sides, never
    larger than the camera's) that takes at most ``1 / fps`` seconds per frame and ``fits`` in memory;
    the smallest tried when none is fast enough."""
    short = min(width, height)
    candidates = [side for side in SHORT_SIDES if side <= short] or [short]
    size = (width, height)
    for side in candidates:
        scale = side / short
        size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
        if seconds_per_frame(*size) <= 1 / fps and fits(*size):
            return size
    return size


class _Rate:
    """Events per second over the last ``WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)

    def per_second(self, now: float) -> float:
        while self._times and now - self._times[0] > WINDOW_S:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(now - self._times[0], 1e-6)


@dataclass(frozen=True)
class LiveFigures:
    input_fps: float
    output_fps: float
    frames_in: int
    frames_out: int
    dropped: int
    latency_ms: float | None
    size: tuple[int, int] | None
    output: tuple[int, int] | None

    def to_text(self) -> str:
        size = (f"input scaled to {self.size[0]}x{self.size[1]} (the largest this device upscales at "
                f"{LIVE_FPS:g} frames/s or better) -> {self.output[0]}x{self.output[1]}"
                if self.size and self.output else "measuring the input size…")
        latency = f"{self.latency_ms:.0f} ms" if self.latency_ms is not None else "–"
        return (f"**In** {self.input_fps:.1f} frames/s · **out** {self.output_fps:.1f} frames/s · "
                f"**dropped** {self.dropped} of {self.frames_in} · **latency** {latency}  \n{size}")


class LiveSession:
    """One visitor's live stream: ``offer`` each camera frame; ``newest`` gives the newest upscaled
    picture (once) and the figures. ``upscaler``: a ``vsr.api.Upscaler``; ``size_for(w, h)``: the
    input size for a camera of that size (``live_size`` with this device's figures)."""

    def __init__(self, upscaler: Any, size_for: Callable[[int, int], tuple[int, int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upscaler = upscaler
        self.size_for = size_for
        self.clock = clock
        self._lock = threading.Lock()
        self._busy = False
        self._in, self._out = _Rate(), _Rate()
        self.frames_in = self.frames_out = self.dropped = 0
        self._latencies: deque[float] = deque(maxlen=20)
        self._newest: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self._camera: tuple[int, int] | None = None
        self.error: BaseException | None = None
        self.last_frame_at = clock()

    def offer(self, rgb: np.ndarray) -> bool:
        """A camera frame arrived: upscale it in the engine thread when the engine is free, else drop
        it. Returns whether it was taken."""
        now = self.clock()
        with self._lock:
            self.frames_in += 1
            self.last_frame_at = now
            self._in.tick(now)
            if self._busy:
                self.dropped += 1
                return False
            self._busy = True
        threading.Thread(target=self._upscale, args=(rgb, now), name="vsr-live", daemon=True).start()
        return True

    def newest(self) -> tuple[np.ndarray | None, LiveFigures]:
        """The newest upscaled picture not handed out yet (None: none since), and the figures."""
        if self.error is not None:
            raise self.error
        with self._lock:
            picture, self._newest = self._newest, None
            return picture, self.figures()

    def figures(self) -> LiveFigures:
        now = self.clock()
        latency = statistics.median(self._latencies) * 1000 if self._latencies else None
        output = (self._size[0] * self.upscaler.scale, self._size[1] * self.upscaler.scale) if self._size else None
        return LiveFigures(self._in.per_second(now), self._out.per_second(now), self.frames_in, self.frames_out,
                           self.dropped, latency, self._size, output)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until the engine thread has finished its frame (tests, and the end of a session)."""
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)

    def _upscale(self, rgb: np.ndarray, arrived: float) -> None:
        try:
            camera = (rgb.shape[1], rgb.shape[0])
            if camera != self._camera:
                self._camera, self._size = camera, self.size_for(*camera)
                self.upscaler.reset()
                logger.info("live: camera %dx%d, upscaling at %dx%d", *camera, *self._size)
            assert self._size is not None
            small = resize_rgb(rgb, *self._size)
            out = self.upscaler.upscale_frame(small if small.flags.writeable else small.copy())
            done = self.clock()
            with self._lock:
                self._newest = out
                self.frames_out += 1
                self._out.tick(done)
                self._latencies.append(done - arrived)
        except BaseException as exc:  # noqa: BLE001 - raised in the page's handler on its next call
            logger.warning("live upscaling failed: %r", exc)
            self.error = exc
        finally:
            with self._lock:
                self._busy = False


class LiveDesk:
    """The live sessions of this process, one per visitor (browser session); a session that went
    quiet for ``IDLE_SECONDS`` is replaced by a fresh one (its temporal state starts over).
    ``make_upscaler()`` builds an ``Upscaler``; ``size_for`` as ``LiveSession``'s."""

    def __init__(self, make_upscaler: Callable[[str], Any],
                 size_for: Callable[[str], Callable[[int, int], tuple[int, int]]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.make_upscaler = make_upscaler
        self.size_for = size_for
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, LiveSession]] = {}

    def frame(self, session: str, engine: str, rgb: np.ndarray, *,
              wait: bool = False) -> tuple[np.ndarray | None, str]:
        """One camera frame of ``session``'s stream with ``engine``: the newest upscaled picture (None:
        nothing new) and the figures in words. ``wait``: wait for this frame's picture (the API's
        one-frame call; a frame dropped because the engine was busy still gives none)."""
        if rgb is None or rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError("The camera sent no picture; allow the page to use it, then press record.")
        live = self.session(session, engine)
        if live.offer(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)) and wait:
            live.wait_idle()
        picture, figures = live.newest()
        return picture, figures.to_text()

    def session(self, session: str, engine: str) -> LiveSession:
        with self._lock:
            kept = self._sessions.get(session)
            if kept is None or kept[0] != engine or self.clock() - kept[1].last_frame_at > IDLE_SECONDS:
                kept = (engine, LiveSession(self.make_upscaler(engine), self.size_for(engine), self.clock))
                self._sessions[session] = kept
            return kept[1]

    def end(self, session: str) -> None:  # noqa: D401
        """The visitor left: drop their session (its engine thread finishes its frame)."""
        with self._lock:
            self._sessions.pop(session, None)


def desk_for(settings: Any) -> LiveDesk:
    """The process's live sessions on ``settings`` (a ``vsr.options.UpscaleOptions``): each visitor's
    ``Upscaler`` on the shared engine of the engine they chose, and the input size from that engine's
    calibration on this device and the memory model."""
    from vsr import job
    from vsr.api import Upscaler
    from vsr.job.errors import NotEnoughMemory
    from vsr.job.memory import job_memory

    def make_upscaler(engine: str) -> Any:
        return Upscaler.from_options(settings.replace(engine=engine))

    def size_for(engine: str) -> Callable[[int, int], tuple[int, int]]:
        options = settings.replace(engine=engine)

        def size(width: int, height: int) -> tuple[int, int]:
            estimator = job.estimator_for(options)
            description = estimator.engine()
            calibration = estimator.calibration(min(width, 320), min(height, 320))

            def fits(w: int, h: int) -> bool:
                try:
                    job_memory(options, description, w, h)
                except NotEnoughMemory:
                    return False
                return True

            return live_size(width, height, calibration.seconds_per_frame, fits)

        return size

    return LiveDesk(make_upscaler, size_for)
