"""Interlaced pictures made whole before they are upscaled: FFmpeg's ``bwdif`` filter through PyAV.

An interlaced picture (old TV, DVD, camcorder and broadcast video: 480i, 576i, 1080i) holds two fields
taken 1/50 or 1/60 s apart on alternate lines; anything that moved shows as combing, and a 4x upscale
makes the combs four times as large. Every player deinterlaces such pictures; so do the reader of a job
(``media.reader``) and a live source (``media.live_source``).

- Only frames the decoder flags as interlaced are deinterlaced (``bwdif=mode=send_frame:deint=interlaced``:
  one picture out per picture in, at the same time, so frame counts, rates and timestamps, and with
  them audio sync and resume, stay what they are). A progressive video never meets the filter.
- The filter starts at the first interlaced frame and then takes every frame, in order; it needs the
  next picture to make one, so its pictures come one frame late, and ``flush()`` gives the last.
- Each picture comes with the decoded frame it was made from (``source``): its timestamp, duration and
  flags are the ones to use.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import av
import av.filter

log = logging.getLogger(__name__)

__all__ = ["Deinterlacer", "deinterlaced"]

FILTER = "bwdif"  # motion-adaptive (w3fdif + yadif); FFmpeg's best built-in deinterlacer for its speed
FILTER_ARGS = "mode=send_frame:parity=auto:deint=interlaced"


class Deinterlacer:
    """``push(frame)`` decoded frames in order; each call returns the ``(picture, source)`` pairs ready."""

    def __init__(self, label: str) -> None:
        self.label = label  # the file or URL, for the log
        self._graph: Any = None
        self._key: tuple[int, int, str] | None = None  # the size and format the filter was made for
        self._sources: deque[av.VideoFrame] = deque()

    def push(self, frame: av.VideoFrame) -> list[tuple[av.VideoFrame, av.VideoFrame]]:
        if self._graph is not None and _key(frame) != self._key:  # another size or format: a new filter
            return self.flush() + self.push(frame)
        if self._graph is None:
            if not frame.interlaced_frame:
                return [(frame, frame)]
            self._graph, self._key = _graph(frame), _key(frame)
            log.info("%s: the video is interlaced; its interlaced frames are deinterlaced (%s)", self.label, FILTER)
        self._sources.append(frame)
        self._graph.push(frame)
        return self._pull()

    def flush(self) -> list[tuple[av.VideoFrame, av.VideoFrame]]:
        """The pictures still in the filter (the last one), at the end of the frames."""
        if self._graph is None:
            return []
        self._graph.push(None)
        pairs = self._pull()
        self._graph = None
        return pairs

    def _pull(self) -> list[tuple[av.VideoFrame, av.VideoFrame]]:
        pairs = []
        while self._sources:
            try:
                picture = self._graph.pull()
            except (av.BlockingIOError, av.EOFError):
                break
            source = self._sources.popleft()
            picture.pts, picture.time_base = source.pts, source.time_base
            pairs.append((picture, source))
        return pairs


def deinterlaced(frames: Iterable[av.VideoFrame], label: str) -> Iterator[tuple[av.VideoFrame, av.VideoFrame]]:
    """``(picture, source)`` for each decoded frame of ``frames``, in order (see ``Deinterlacer``)."""
    deinterlacer = Deinterlacer(label)
    for frame in frames:
        yield from deinterlacer.push(frame)
    yield from deinterlacer.flush()


def _key(frame: av.VideoFrame) -> tuple[int, int, str]:
    return frame.width, frame.height, frame.format.name


def _graph(frame: av.VideoFrame) -> Any:
    """buffer (this frame's size, format and time base) -> bwdif -> buffersink."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                              time_base=frame.time_base)
    deint = graph.add(FILTER, FILTER_ARGS)
    sink = graph.add("buffersink")
    source.link_to(deint)
    deint.link_to(sink)
    graph.configure()
    return graph
