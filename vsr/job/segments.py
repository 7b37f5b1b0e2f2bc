"""``SegmentedVideo``: the job's encoded video as closed segments plus the one being written.

The encode thread writes frames here as it would into one ``media.VideoWriter``; ``commit`` closes
the current segment (a complete video-only file that the next one follows on a key frame, all on
the first segment's time line), and records it, with the rest of the job's state, in a new
``JobCheckpoint``, which it saves atomically when the job keeps checkpoints (``persist``). At the
end ``media_segments`` hands every closed segment to ``media.join_segments``. Frames are never
lost between segments: ``commit`` runs in the encode thread, in order with the frames.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

import media
from vsr.job import checkpoint
from vsr.job.checkpoint import JobCheckpoint, SegmentRecord

logger = logging.getLogger(__name__)


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

    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        """Encode one frame (HWC uint8 RGB at the job's output size) into the current segment."""
        if self._writer is None:
            number = len(self.latest.segments)
            self._path = self.folder / segment_name(number)
            size = self.job.size
            self._writer = media.VideoWriter(self._path, self.job.info, size.width, size.height, self._settings,
                                             start=self.job.trim_start, end=self.job.trim_end, video_only=True,
                                             timeline=self._offset)
        self._writer.write(rgb, pts, duration)
        if self._offset is None:
            self._offset = self._writer.offset

    def commit(self, **changes: Any) -> JobCheckpoint:
        """Close the current segment and make the new checkpoint (``changes``: the job's counters and
        states at this frame); saved atomically when ``persist``, except before the first frame."""
        segments = self.latest.segments
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.finish()
            assert self._path is not None
            segments += (SegmentRecord(self._path.name, writer.time_base, tuple(writer.packets)),)
        self.latest = checkpoint.changed(self.latest, segments=segments, offset=self._offset, **changes)
        if self.persist and self.latest.next_index > 0:
            checkpoint.save(self.folder, self.latest)
        return self.latest

    def abort(self) -> None:
        """Throw away the segment being written (the committed ones stay)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def media_segments(folder: Path, latest: JobCheckpoint) -> list[media.Segment]:
    """``latest``'s segments in ``folder``, for ``media.join_segments``."""
    return [media.Segment(folder / s.name, s.time_base, s.packets) for s in latest.segments]
