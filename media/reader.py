"""``FrameReader``: decode a video in a background thread into RGB frames with exact timestamps.

One thread demuxes and decodes (FFmpeg's own frame threads inside), deinterlaces the frames flagged
interlaced (``media.deinterlace``: same count and timestamps), converts each picture to RGB
with the source's colour matrix and range, and hands ``Frame``s over a bounded queue, so decoding
overlaps whatever the caller does with the frames and memory stays flat however long the video is.
Any error in that thread is re-raised in the caller, naming the frame where it happened.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from media.colour import frame_to_rgb
from media.deinterlace import deinterlaced
from media.errors import (
    DecodeError,
    InvalidTrim,
    MediaError,
    TruncatedVideo,
    UnsupportedSize,
    ZeroFrames,
    reason,
)
from media.probe import MediaInfo, probe

log = logging.getLogger(__name__)

__all__ = ["Frame", "FrameReader", "resolve_trim"]

_END = object()


@dataclass(frozen=True)
class Frame:
    """One decoded picture.

    ``index``: 0-based position within the reader's range (the first frame at or after ``start`` is 0).
    ``pts``: presentation time in seconds (``Fraction``) on the source's own time line, i.e. the
    stream's pts times its time base; hand it unchanged to ``VideoWriter.write``.
    ``rgb``: HWC RGB, the coded size (height, width, 3), not rotated: ``uint8`` (0..255) for an 8-bit
    source; ``uint16`` (0..65535, every level of the source kept) for one deeper than 8 bits
    (``FrameReader.deep``). Hand it on as it is; ``media.colour.to_8bit`` is for display only.
    ``duration``: seconds until the next frame as the source says (None when unknown).
    """

    index: int
    pts: Fraction
    rgb: np.ndarray
    duration: Fraction | None = None


def resolve_trim(info: MediaInfo, start: Fraction | None, end: Fraction | None) -> tuple[Fraction, Fraction]:
    """``start``/``end`` (seconds from the video's first frame; None = the whole video) as absolute
    times on the source's time line ``[abs_start, abs_end)``. Raises ``InvalidTrim``."""
    v = info.video
    duration = v.duration or Fraction(0)
    s = Fraction(start) if start is not None else Fraction(0)
    e = Fraction(end) if end is not None else duration
    if s < 0 or e <= s or s >= duration:
        raise InvalidTrim(
            f"{info.path}: the trim start={float(s):.3f} s, end={float(e):.3f} s does not select any part of "
            f"this {float(duration):.3f} s video. Give 0 <= start < end and start below the duration.",
            info.path,
        )
    return v.start_time + s, v.start_time + min(e, duration)


class FrameReader:
    """Iterate the frames of ``path`` with ``start <= t < end`` (seconds from the first frame).

    Use as a context manager (``with FrameReader(p) as frames: for f in frames: ...``); leaving the
    ``with`` stops the decode thread and closes the file, also halfway. ``queue_size`` bounds how
    many decoded frames wait in memory. Raises ``MediaError`` subclasses: ``DecodeError`` /
    ``TruncatedVideo`` (with ``frame_index``), ``UnsupportedSize`` if the size changes mid-stream,
    ``ZeroFrames`` if the range holds no frame. ``info`` skips a second probe when given.
    """

    def __init__(
        self,
        path: str | Path,
        start: Fraction | None = None,
        end: Fraction | None = None,
        queue_size: int = 8,
        *,
        info: MediaInfo | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.path = Path(path)
        self.info = info if info is not None else probe(self.path)
        self.abs_start, self.abs_end = resolve_trim(self.info, start, end)
        self.deep = (self.info.video.bit_depth or 8) > 8  # frames as uint16 RGB, see Frame.rgb
        self._has_end = end is not None  # without an end, read to the last frame whatever the header says
        self._seek = start is not None and start > 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        self._thread_index = 0
        self.frames_read = 0  # frames handed to the caller
        self.frames_decoded = 0  # frames the decoder produced, including those skipped before ``start``

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "FrameReader":
        self._start_thread()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decode thread and release the file (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                self._drain()
                self._thread.join(timeout=0.05)
            self._thread = None
        self._drain()
        self._done = True

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _start_thread(self) -> None:
        if self._thread is None and not self._done:
            self._thread = threading.Thread(target=self._run, name=f"decode:{self.path.name}", daemon=True)
            self._thread.start()

    # -- consumer side ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        self._start_thread()
        while not self._done:
            item = self._queue.get()
            if item is _END:
                self._done = True
                break
            if isinstance(item, BaseException):
                self._done = True
                self.close()
                raise item
            assert isinstance(item, Frame)
            self.frames_read += 1
            yield item

    # -- decode thread ---------------------------------------------------------------------
    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            count = self._decode()
        except MediaError as exc:
            self._put(exc)
            return
        except Exception as exc:  # noqa: BLE001 - any failure must reach the caller, never vanish
            err = DecodeError(
                f"{self.path}: decoding failed at frame {self._thread_index} ({type(exc).__name__}: {reason(exc)}).",
                self.path,
                frame_index=self._thread_index,
            )
            err.__cause__ = exc
            self._put(err)
            return
        if count is not None:
            self._put(_END)

    def _decode(self) -> int | None:
        v = self.info.video
        tb = v.time_base
        container = av.open(str(self.path), metadata_errors="replace")
        try:
            stream = container.streams[v.index]  # the video the probe chose (not a cover picture)
            stream.thread_type = "AUTO"
            if self._seek:
                # an interlaced picture is made from its neighbours: decode the one before ``start`` too
                before = v.frame_duration if v.interlaced else 0
                container.seek(int((self.abs_start - before) / tb), stream=stream, backward=True, any_frame=False)
            index = 0
            last_pts: Fraction | None = None
            warned_alpha = False
            frames = deinterlaced(container.decode(stream), str(self.path))
            while True:
                try:
                    picture, frame = next(frames)
                except StopIteration:
                    if index == 0 and self._seek:  # landed past the last key frame (an MPEG-TS has no index)
                        log.warning("%s: seek to %.3f s found no frame; decoding from the beginning instead",
                                    self.path, float(self.abs_start))
                        frames = self._from_the_beginning(container, stream)
                        continue
                    break
                except av.FFmpegError as exc:
                    raise DecodeError(
                        f"{self.path}: decoding broke at frame {index} (after {float(last_pts or 0):.3f} s): "
                        f"{reason(exc)}. "
                        "The file is damaged or truncated; the frames before it are not the whole video. "
                        "Download or copy it again, or re-encode it.",
                        self.path,
                        frame_index=index,
                    ) from exc
                if self._stop.is_set():
                    return None
                self.frames_decoded += 1
                pts = self._frame_pts(frame, last_pts)
                if pts < self.abs_start:
                    continue
                if index == 0 and self._seek and pts > self.abs_start + v.frame_duration:
                    log.warning("%s: seek to %.3f s landed at %.3f s; decoding from the beginning instead",
                                self.path, float(self.abs_start), float(pts))
                    frames = self._from_the_beginning(container, stream)
                    continue
                if self._has_end and pts >= self.abs_end:
                    break
                if frame.is_corrupt:
                    raise DecodeError(
                        f"{self.path}: frame {index} (at {float(pts):.3f} s) is corrupt. The file is damaged; "
                        "re-encode or download it again.",
                        self.path,
                        frame_index=index,
                    )
                if (frame.width, frame.height) != (v.width, v.height):
                    raise UnsupportedSize(
                        f"{self.path}: the picture size changes from {v.width}x{v.height} to "
                        f"{frame.width}x{frame.height} at frame {index}. Re-encode the video to one size first.",
                        self.path,
                    )
                if v.has_alpha and not warned_alpha:
                    log.warning("%s: the video has an alpha channel (transparency); it is dropped, only the "
                                "colour picture is read", self.path)
                    warned_alpha = True
                rgb = frame_to_rgb(picture, v.colour, str(self.path), deep=self.deep)
                duration = Fraction(frame.duration) * tb if frame.duration else None
                if not self._put(Frame(index, pts, rgb, duration)):
                    return None
                index += 1
                self._thread_index = index
                last_pts = pts
        finally:
            container.close()
        self._check_complete(index, last_pts)
        return index

    def _from_the_beginning(self, container: av.container.InputContainer,
                            stream: av.VideoStream) -> Iterator[tuple[av.VideoFrame, av.VideoFrame]]:
        """After a seek that went wrong: the frames again from the first, through a new deinterlacer."""
        container.seek(0, stream=stream)
        self._seek = False
        return deinterlaced(container.decode(stream), str(self.path))

    def _frame_pts(self, frame: av.VideoFrame, last_pts: Fraction | None) -> Fraction:
        tb = self.info.video.time_base
        if frame.pts is not None:
            return Fraction(frame.pts) * tb
        # No timestamp (some AVI/raw streams): continue at the average rate.
        return (last_pts + self.info.video.frame_duration) if last_pts is not None else self.info.video.start_time

    def _check_complete(self, count: int, last_pts: Fraction | None) -> None:
        v = self.info.video
        if count == 0 or last_pts is None:
            raise ZeroFrames(
                f"{self.path}: no frame between {float(self.abs_start - v.start_time):.3f} s and "
                f"{float(self.abs_end - v.start_time):.3f} s. Choose a range that holds at least one frame.",
                self.path,
            )
        if last_pts + 2 * v.frame_duration < self.abs_end:
            raise TruncatedVideo(
                f"{self.path}: decoding stopped after frame {count - 1} at {float(last_pts - v.start_time):.3f} s, "
                f"but the video runs to {float(self.abs_end - v.start_time):.3f} s; the file is truncated or "
                "damaged. Download or copy it again.",
                self.path,
                frame_index=count,
            )
