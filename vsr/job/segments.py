"""``SegmentedVideo``: the job's encoded video as closed segments plus the one being written.

The encode thread writes frames here as it would into one ``media.VideoWriter``; ``commit`` ends
the current segment there (a complete video-only file that the next one follows on a key frame,
all on the first segment's time line) and records it, with the rest of the job's state, in a new
``JobCheckpoint``, which is saved atomically when the job keeps checkpoints (``persist``). Frames
are never lost between segments: ``commit`` runs in the encode thread, in order with the frames.

Closing a segment means flushing its encoder (x264 holds some 40 frames in its look-ahead), which
takes as long as encoding those frames. So ``commit`` hands the finished segment to a closer
thread, which flushes and closes it and then saves the checkpoint, while the next segment's
encoder already takes the following frames: the encode thread never waits for a flush. The closer
handles segments strictly in order, so every saved checkpoint lists only closed segments; ``wait``
returns once all are closed, ``latest`` is then the last checkpoint. At the end ``media_segments``
hands the segments to ``media.join_segments``.
"""

from __future__ import annotations

import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

import media
from vsr.job import checkpoint
from vsr.job.checkpoint import JobCheckpoint, SegmentRecord

logger = logging.getLogger(__name__)

_END = object()
PENDING = 2
"""At most this many ended segments wait for the closer; ``commit`` waits beyond that."""


def segment_name(number: int) -> str:
    return f"segment-{number:05d}.mkv"


class SegmentedVideo:
    """Frames of ``job`` (at its output size) into segments in ``folder``, continuing ``base``."""

    def __init__(self, folder: Path, job: Any, base: JobCheckpoint, *, persist: bool) -> None:
        from vsr.job.planning import encode_settings

        self.folder = folder
        self.job = job
        self.persist = persist
        self.latest = base
        self._settings = encode_settings(job.options)
        self._writer: media.VideoWriter | None = None
        self._path: Path | None = None
        self._offset: Fraction | None = base.offset
        self._next = len(base.segments)  # the number of the next segment to open
        self._closing: queue.Queue[object] = queue.Queue(maxsize=PENDING)  # back-pressure: flushes keep up
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._closer = threading.Thread(target=self._close_in_order, name="vsr-segments", daemon=True)
        self._closer.start()

    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        """Encode one frame (HWC uint8 RGB at the job's output size) into the current segment."""
        self._raise_error()
        if self._writer is None:
            self._path = self.folder / segment_name(self._next)
            self._next += 1
            size = self.job.size
            self._writer = media.VideoWriter(self._path, self.job.info, size.width, size.height, self._settings,
                                             start=self.job.trim_start, end=self.job.trim_end, video_only=True,
                                             timeline=self._offset)
        self._writer.write(rgb, pts, duration)
        if self._offset is None:
            self._offset = self._writer.offset

    def commit(self, **changes: Any) -> None:
        """End the current segment here and queue the new checkpoint (``changes``: the job's counters
        and states at this frame); the closer saves it once the segment is closed."""
        self._raise_error()
        writer, path, self._writer = self._writer, self._path, None
        self._closing.put((writer, path, self._offset, changes))

    def wait(self) -> JobCheckpoint:
        """Wait until every ended segment is closed and its checkpoint saved; the last checkpoint."""
        self._closing.put(_END)
        self._closer.join()
        self._raise_error()
        return self.latest

    def abort(self) -> None:
        """Throw away the segment being written and those not closed yet (the saved ones stay)."""
        self._aborted.set()
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._closing.put(_END)
        self._closer.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _close_in_order(self) -> None:
        while True:
            item = self._closing.get()
            if item is _END:
                return
            writer, path, offset, changes = item  # type: ignore[misc]
            if self._aborted.is_set() or self._error is not None:
                if writer is not None:
                    writer.abort()
                continue
            try:
                self._close(writer, path, offset, changes)
            except BaseException as exc:  # noqa: BLE001 - raised in the encode thread on its next call
                logger.debug("closing a segment failed: %r", exc)
                self._error = exc
                if writer is not None:
                    writer.abort()

    def _close(self, writer: Any, path: Path | None, offset: Fraction | None, changes: dict[str, Any]) -> None:
        """Flush and close one segment, then make (and save, when ``persist``) its checkpoint."""
        segments = self.latest.segments
        if writer is not None:
            writer.finish()
            assert path is not None
            segments += (SegmentRecord(path.name, writer.time_base, tuple(writer.packets)),)
        self.latest = checkpoint.changed(self.latest, segments=segments, offset=offset, **changes)
        if self.persist and self.latest.next_index > 0:
            checkpoint.save(self.folder, self.latest)


def media_segments(folder: Path, latest: JobCheckpoint) -> list[media.Segment]:
    """``latest``'s segments in ``folder``, for ``media.join_segments``."""
    return [media.Segment(folder / s.name, s.time_base, s.packets) for s in latest.segments]
