"""The running job's result as a stream: the frames that go into the final file, also cut into short
MPEG-TS chunks (``media.ts_chunks``) that a player plays while the job runs.

``StreamedVideo`` wraps the job's ``SegmentedVideo``: every frame the encode thread writes there is
also handed to a ``ResultStream``, a second, cheap encoder (at most 1080p, x264 veryfast) in its own
thread, with the source's audio for the frames' range. No frame is upscaled twice. A checkpoint
(``commit``) first ends the stream's chunk, so a job resumed from that checkpoint (after a restart,
or in the next ZeroGPU call) continues the stream exactly where its chunks end; chunks written after
the last checkpoint are removed on resume, since those frames are made again.

``ChunkPlan`` decides each chunk's length from the measured speed: the first chunk is short (the
player starts after about one chunk's work); faster than real time, chunks stay short; slower than
real time, the player must wait between chunks whatever they are, so they grow (fewer, longer
pauses), up to ``max_seconds`` of video or ``max_work_seconds`` of work.

A failure of the stream never fails the job: it is logged, written to ``folder/error.txt`` (the page
says the preview stopped, and why), and the job goes on to its verified file.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from media.ts_chunks import Chunk, TsChunkWriter, list_chunks, stream_size

logger = logging.getLogger(__name__)

ERROR_FILE = "error.txt"
QUEUE_FRAMES = 8
_END = object()


@dataclass(frozen=True)
class ChunkPlan:
    """How long each chunk is, in seconds of video (see the module's doc)."""

    first_seconds: float = 1.0
    min_seconds: float = 2.0
    max_seconds: float = 16.0
    max_work_seconds: float = 60.0
    growth: float = 2.0

    def length(self, number: int, previous: float, speed: float | None) -> float:
        """Seconds of video for chunk ``number`` (0 = the first), after one of ``previous`` seconds,
        at ``speed`` (seconds of video made per second; None: not measured yet)."""
        if number == 0:
            return self.first_seconds
        if speed is None or speed >= 1.0:
            return self.min_seconds
        return min(self.max_seconds, max(self.min_seconds, previous * self.growth))

    def ends_here(self, video_seconds: float, work_seconds: float, length: float) -> bool:
        """Whether a chunk holding ``video_seconds`` after ``work_seconds`` of work is complete."""
        return video_seconds >= length - 1e-6 or work_seconds >= self.max_work_seconds


def clean_stale(folder: Path, next_index: int) -> None:
    """Remove chunks of frames from ``next_index`` on (a resumed job makes them again) and leftovers."""
    if not folder.is_dir():
        return
    for chunk in list_chunks(folder):
        if chunk.end_index > next_index:
            chunk.path.unlink(missing_ok=True)
    for path in folder.glob(".*.partial"):
        path.unlink(missing_ok=True)
    (folder / ERROR_FILE).unlink(missing_ok=True)


class ResultStream:
    """The stream's encoder thread for one piece of a job (``job``: its ``JobPlan``; ``base``: the
    checkpoint it continues). ``put`` frames at the job's output size; ``cut`` ends a chunk;
    ``close`` ends the last one; ``abort`` drops the one being written."""

    def __init__(self, folder: Path, job: Any, base: Any, plan: ChunkPlan = ChunkPlan()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        clean_stale(folder, base.next_index)
        self.folder = folder
        self.plan = plan
        self.size = stream_size(job.size.width, job.size.height)
        self._failed = False
        self._writer: TsChunkWriter | None = None
        try:
            origin = job.info.video.start_time + (job.trim_start or 0)
            self._writer = TsChunkWriter(folder, job.info, *self.size, start=origin, resume_at=base.next_pts,
                                         first_index=base.next_index)
        except Exception as exc:  # noqa: BLE001 - the stream is a preview: it stops, the job goes on
            self._fail(exc)
        done = list_chunks(folder)
        self._number = len(done)
        self._previous = done[-1].duration if done else 0.0
        self._length = plan.length(self._number, self._previous, None)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._chunk_video = Fraction(0)
        self._chunk_began: float | None = None
        self._made = Fraction(0)  # video seconds this piece has made
        self._first_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="vsr-result-stream", daemon=True)
        self._thread.start()

    def put(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None) -> None:
        """Queue one finished frame (waits while the stream's encoder is behind)."""
        self._send((rgb, pts, duration))

    def cut(self) -> None:
        """End the current chunk after the frames queued so far, and wait until it is written."""
        done = threading.Event()
        self._send(done)
        while not done.is_set() and self._thread.is_alive():
            done.wait(0.05)

    def close(self) -> None:
        """End the last chunk and the thread."""
        self._send(_END)
        self._thread.join()

    def abort(self) -> None:
        """Stop without finishing the chunk being written."""
        self._failed = True
        self._send(_END)
        self._thread.join()

    @property
    def speed(self) -> float | None:
        """Seconds of video made per second of work since this piece's first frame."""
        if self._first_at is None:
            return None
        elapsed = time.monotonic() - self._first_at
        return float(self._made) / elapsed if elapsed > 0 and self._made > 0 else None

    def _send(self, item: object) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    break
                if self._failed:
                    if isinstance(item, threading.Event):
                        item.set()
                    continue
                self._handle(item)
        except Exception as exc:  # noqa: BLE001 - the stream is a preview: it stops, the job goes on
            self._fail(exc)
        finally:
            self._finish()

    def _handle(self, item: object) -> None:
        assert self._writer is not None
        if isinstance(item, threading.Event):
            try:
                self._ended(self._writer.cut())
            finally:
                item.set()
            return
        rgb, pts, duration = item  # type: ignore[misc]
        now = time.monotonic()
        if self._first_at is None:
            self._first_at = now
        if self._chunk_began is None:
            self._chunk_began = now
        self._writer.write(rgb, pts, duration)
        step = duration if duration else Fraction(1, 25)
        self._chunk_video += step
        self._made += step
        if self.plan.ends_here(float(self._chunk_video), now - self._chunk_began, self._length):
            self._ended(self._writer.cut())

    def _ended(self, chunk: Chunk | None) -> None:
        self._chunk_video, self._chunk_began = Fraction(0), None
        if chunk is None:
            return
        self._number += 1
        self._previous = chunk.duration
        self._length = self.plan.length(self._number, self._previous, self.speed)
        logger.debug("stream chunk %s (%d frames, %.2f s); next %.1f s", chunk.path.name, chunk.frames,
                     chunk.duration, self._length)

    def _finish(self) -> None:
        if self._writer is None:
            return
        try:
            if self._failed:
                self._writer.abort()
            else:
                self._ended(self._writer.close())
        except Exception as exc:  # noqa: BLE001 - as in _run
            self._fail(exc)
            self._writer.abort()

    def _fail(self, exc: BaseException) -> None:
        if self._failed:
            return
        self._failed = True
        logger.warning("the streamed preview stopped (the job goes on): %s: %s", type(exc).__name__, exc,
                       exc_info=exc)
        (self.folder / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")


class StreamedVideo:
    """``SegmentedVideo`` whose frames also go to a ``ResultStream`` (the same calls, in order)."""

    def __init__(self, video: Any, stream: ResultStream) -> None:
        self.video = video
        self.stream = stream

    def __getattr__(self, name: str) -> Any:  # everything else is the video's (persist, latest, ...)
        return getattr(self.video, name)

    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        self.video.write(rgb, pts, duration)
        self.stream.put(rgb, pts, duration)

    def commit(self, **changes: Any) -> None:
        self.stream.cut()  # the stream's chunks end where the checkpoint resumes
        self.video.commit(**changes)

    def wait(self) -> Any:
        latest = self.video.wait()
        self.stream.close()
        return latest

    def abort(self) -> None:
        self.stream.abort()
        self.video.abort()


def streamed(video: Any, folder: Path | None, job: Any, base: Any) -> Any:
    """``video`` with its frames also streamed into ``folder``; ``video`` itself when ``folder`` is None."""
    if folder is None:
        return video
    return StreamedVideo(video, ResultStream(folder, job, base))
