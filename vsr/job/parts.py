"""One video cut into parts for several workers: where the parts start, and what each one needs.

A part of the job is a range of frames ``[first, end)`` that one worker upscales and encodes as
video-only pieces on the whole job's time line (``media.VideoWriter(video_only=True, timeline=)``);
the driver joins every part's pieces by stream copy (``media.join_segments``), as a resumed job does.

- A part that starts at a scene cut the whole video's detector finds (``survey``) is exactly what a
  single run makes there: the temporal state is reset at a cut anyway, and the noise of frame k is a
  function of (seed, k) (``FrameProcessor.start_stream(seed, frame=k)``), so same seed, same pixels.
- Elsewhere the part starts ``warmup`` frames early (``Part.warm``): those frames are upscaled to
  warm the temporal state and thrown away. What remains is a small deviation from a single run that
  fades with the distance from the part's start (measured by ``bench/segments.py``).

Scene cuts are decided once, by the driver's pass over the whole range (``survey``: decode, and
PySceneDetect frame by frame exactly as a single run does), and handed to the parts
(``KnownCuts``), because a detector that starts mid-video cannot know the history a single run's
detector has (its minimum scene length, its last frame).
"""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import media
from vsr.job.scenes import SceneCutDetector

DEFAULT_WARMUP = 8
"""Frames upscaled and thrown away before a part that does not start at a scene cut (bench/segments.py)."""
SNAP = 0.25
"""A part's start moves to a scene cut within this share of a part's length of where it would start."""
PARTS_PER_WORKER = 2
"""Without ``--segment-seconds``: about this many parts per worker (a late part evens out the end)."""
MIN_PART_FRAMES = 8


@dataclass(frozen=True)
class Part:
    """Frames ``[first, end)`` of the job (indices in its range), upscaled from ``warm`` on (``warm <
    first``: warm-up frames thrown away; ``warm == first``: the part starts at frame 0 or at a cut).
    ``warm_pts``: the source time of frame ``warm`` (where its reader seeks); ``cuts``: the scene
    cuts inside ``[warm, end)``; ``offset``: the whole job's time line (``VideoWriter(timeline=)``).
    ``whole``: the whole video as one part (the web app on a cluster): ``warm_pts``, ``cuts`` and
    ``offset`` None, the worker's own detector finds the cuts, exactly as a single run."""

    number: int
    warm: int
    first: int
    end: int
    warm_pts: Fraction | None
    cuts: tuple[int, ...] | None
    offset: Fraction | None

    @classmethod
    def whole(cls, frames: int) -> "Part":
        return cls(0, 0, 0, frames, None, None, None)

    @property
    def is_whole(self) -> bool:
        return self.cuts is None

    @property
    def frames(self) -> int:
        """Frames this part keeps."""
        return self.end - self.first

    @property
    def warmup(self) -> int:
        """Frames upscaled and thrown away."""
        return self.first - self.warm

    @property
    def exact(self) -> bool:
        """The part makes exactly a single run's frames (it starts at frame 0 or at a scene cut)."""
        return self.warm == self.first


@dataclass(frozen=True)
class Survey:
    """The driver's pass over the job's range: every frame's source time and the scene cuts."""

    pts: tuple[Fraction, ...]
    cuts: tuple[int, ...]


class KnownCuts:
    """``SceneCutDetector``'s interface for a part: the cuts the whole video's detector found."""

    def __init__(self, cuts: tuple[int, ...], index: int) -> None:
        self._cuts = frozenset(cuts)
        self._index = index

    def is_cut(self, rgb: Any) -> bool:
        cut = self._index in self._cuts
        self._index += 1
        return cut

    def save_state(self) -> bytes:
        return pickle.dumps(("known-cuts", self._index), protocol=5)

    def load_state(self, state: bytes) -> None:
        kind, index = pickle.loads(state)
        if kind != "known-cuts":
            raise ValueError("This scene state is a detector's, not a part's list of cuts.")
        self._index = index


def survey(job: Any, *, cancel: threading.Event | None = None,
           on_frame: Callable[[int], None] | None = None) -> Survey:
    """Decode the job's range once: every frame's pts, and (scene cuts on) where a single run resets."""
    detector = SceneCutDetector(job.options.scene_threshold, job.rate) if job.options.scene_cuts else None
    pts: list[Fraction] = []
    cuts: list[int] = []
    with media.FrameReader(job.input, job.trim_start, job.trim_end, 8, info=job.info) as reader:
        for frame in reader:
            if cancel is not None and cancel.is_set():
                from vsr.job.errors import JobCancelled

                raise JobCancelled("The job was cancelled while its scene cuts were being found; nothing was kept.")
            if detector is not None and detector.is_cut(frame.rgb):
                cuts.append(len(pts))
            pts.append(frame.pts)
            if on_frame is not None:
                on_frame(len(pts))
    return Survey(tuple(pts), tuple(cuts))


def default_part_frames(frames: int, workers: int) -> int:
    """Frames per part when none is asked for: about ``PARTS_PER_WORKER`` parts per worker."""
    return max(MIN_PART_FRAMES, math.ceil(frames / max(1, workers * PARTS_PER_WORKER)))


def plan_parts(job: Any, found: Survey, part_frames: int, warmup: int = DEFAULT_WARMUP) -> tuple[Part, ...]:
    """Cut ``found``'s frames into parts of about ``part_frames``: each start moved to a scene cut
    within ``SNAP`` of a part's length when there is one (then exact), else warmed up ``warmup``
    frames (never before the previous cut, which resets the state anyway)."""
    total = len(found.pts)
    if total == 0:
        raise ValueError("a job of no frames cannot be cut into parts")
    part_frames = max(1, part_frames)
    starts = [0]
    target = part_frames
    while target < total:
        near = [c for c in found.cuts if abs(c - target) <= part_frames * SNAP and c > starts[-1]]
        start = min(near, key=lambda c: (abs(c - target), c)) if near else target
        if total - start < max(1, part_frames // 4) and not near:
            break  # a tiny last part: leave those frames to the one before
        starts.append(start)
        target = start + part_frames
    offset = timeline_offset(job, found.pts[0])
    parts = []
    for number, (first, end) in enumerate(zip(starts, starts[1:] + [total])):
        warm = first
        if first not in found.cuts and first > 0:
            earlier = [c for c in found.cuts if c < first]
            warm = max(first - warmup, earlier[-1] if earlier else 0)
        cuts = tuple(c for c in found.cuts if warm <= c < end)
        parts.append(Part(number, warm, first, end, found.pts[warm], cuts, offset))
    return tuple(parts)


def timeline_offset(job: Any, first_pts: Fraction) -> Fraction:
    """The whole job's time line, as its first video-only segment's writer sets it (``VideoWriter.offset``)."""
    return media.timeline_offset(job.info, job.trim_start, first_pts)


def plan_text(parts: tuple[Part, ...], warmup: int, workers: int, shared: str | None) -> str:
    """The plan's lines about the parts: how many, where, K, the cuts and the expected speed-up."""
    total = sum(p.frames for p in parts)
    upscaled = sum(p.end - p.warm for p in parts)
    exact = sum(1 for p in parts if p.exact and p.first > 0)
    busy = [0] * max(1, workers)  # parts are taken in order by whichever worker is free first
    for part in parts:
        busy[busy.index(min(busy))] += part.end - part.warm
    speedup = total / max(busy)
    starts = ", ".join(f"{p.first}{'' if p.exact else f' (from {p.warm})'}" for p in parts)
    lines = [
        f"Parts:    {len(parts)} on {workers} worker(s), starting at frames {starts}",
        f"          warm-up {warmup} frame(s) where a part does not start at a scene cut ({exact} start at one); "
        f"{upscaled - total} frame(s) upscaled and thrown away ({(upscaled - total) / max(1, total):.1%})",
        f"          expected speed-up about {speedup:.1f}x over one worker (before joining)",
        f"          pieces travel {'through the shared folder ' + shared if shared else 'through the Ray object store'}",
    ]
    return "\n".join(lines)
