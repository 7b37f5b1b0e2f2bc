"""``EncodeThread``: the job's encode side, a bounded queue drained by one thread into the writer.

The job's main thread upscales; this thread resizes finished frames to the output size (when a
preset asks for it) and hands them to ``media.VideoWriter.write``, so encoding overlaps the model.
The queue is bounded, so memory stays flat; an error in the thread is re-raised in the caller on
its next ``put`` or at ``finish``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from vsr.job.resize import resize_rgb

logger = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class _Call:
    """A function queued between frames (``EncodeThread.call``)."""

    fn: Callable[[], object]

_POLL = 0.05  # seconds between checks of the cancel flag while the queue is full


class EncodeThread:
    """Feed ``writer.write(rgb, pts)`` from a bounded queue in a background thread.

    Frames put here are HWC uint8 RGB (uint16 from a deep source) at the model's size; they are
    resized with Lanczos to ``width`` x ``height`` when that differs. Use ``put`` per frame, then ``finish`` (waits for the
    queue to drain and re-raises any error) or, on any failure, ``stop`` (drops what is queued and
    joins the thread).
    """

    def __init__(self, writer: Any, width: int, height: int, queue_size: int = 4) -> None:
        self._writer = writer
        self._size = (width, height)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsr-encode", daemon=True)
        self._thread.start()

    def put(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        """Queue one frame; blocks while the queue is full (the encoder's failure ends the wait)."""
        while True:
            self._raise_error()
            try:
                self._queue.put((rgb, pts, duration), timeout=_POLL)
                return
            except queue.Full:
                continue

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` in the encode thread after every frame queued before it (a checkpoint: close
        the segment, save the state), so the upscaling goes on meanwhile."""
        while True:
            self._raise_error()
            try:
                self._queue.put(_Call(fn), timeout=_POLL)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every queued frame is written; re-raise the thread's error, if any."""
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=_POLL)
                break
            except queue.Full:
                continue
        self._thread.join()
        self._raise_error()

    def stop(self) -> None:
        """Drop queued frames and end the thread (after the frame it is writing, if any)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            try:
                self._queue.put_nowait(_END)
            except queue.Full:
                pass
            self._thread.join(timeout=_POLL)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._queue.get()
                if item is _END or self._stop.is_set():
                    return
                if isinstance(item, _Call):
                    item.fn()
                    continue
                rgb, pts, duration = item  # type: ignore[misc]
                rgb = resize_rgb(rgb, *self._size)
                self._writer.write(rgb, pts, duration)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, never swallowed
            logger.debug("encode thread failed: %r", exc)
            self._error = exc
