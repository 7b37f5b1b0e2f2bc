"""The output's clock of a live stream (``vsr.job.live``): source time -> output time, one clock from start
to end whatever the source's clock does.

- The first item is 0; each later one keeps its distance on the source's clock, so dropped frames leave
  gaps and the audio stays with its pictures.
- After a reconnect (``reconnected()``) the new source's first item goes on from the newest output time
  plus the wall time the gap took.
- A live source's clock can jump while it streams on: a sender restarted within the time-out (its clock
  from 0 again), an HLS discontinuity, a timestamp wrap. Each kind of item (video, audio) is followed on its
  own, since the two come interleaved with a lag between them. When one jumps (back at all: within a
  kind time never goes back; or ahead of the wall time by more than ``JUMP_AHEAD_S``), it goes on from the
  newest output time as after a reconnect, or takes the other kind's offset when that kind jumped first
  and its offset puts it within ``INTERLEAVE_S`` of the newest output. Items of the old clock still on their way keep their
  kind's old offset. ``jumps`` returns each jump once, to say.
- A recording (``follow_jumps=False``) keeps its own timestamps: a gap in a file is the file's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from fractions import Fraction

JUMP_AHEAD_S = 10.0  # ahead of the wall time since that kind's last item by more than this is a jump (less is
# a pause of the sender, or an HLS segment's burst: kept as it is)
INTERLEAVE_S = 1.0  # how far behind the newest output the other kind's items may come on the same clock
_MIN_GAP = Fraction(1, 1000)  # the least step after a jump or a reconnect: the next item is never at the same time


@dataclass(frozen=True)
class Jump:
    """The source's clock jumped by ``seconds`` (negative: back) at an item of ``kind``."""

    kind: str
    seconds: float


@dataclass
class _Track:
    offset: Fraction  # output time = source time + offset
    last: Fraction  # the newest source time of this kind
    wall: float  # when it came (monotonic seconds)


class SourceClock:
    """``shift(time, kind)`` -> the offset that puts an item of ``kind`` on the output's clock."""

    def __init__(self, *, follow_jumps: bool = True) -> None:
        self.follow_jumps = follow_jumps
        self._tracks: dict[str, _Track] = {}
        self._newest: tuple[Fraction, float] | None = None  # (output time, monotonic) of the newest item
        self._resync = False
        self._wall0: float | None = None
        self._pace_offset: Fraction | None = None
        self._jumps: list[Jump] = []  # since the last jumps(); shift() and jumps() run in the reader thread

    def shift(self, time_: Fraction, kind: str = "video", now: float | None = None) -> Fraction:
        now = time.monotonic() if now is None else now
        track = self._tracks.get(kind)
        if self._newest is None:
            offset = -time_
        elif self._resync:
            self._tracks.clear()
            offset = self._continued(time_, now)
            self._resync = False
        elif track is None:  # this kind's first item: the clock the others are on
            offset = next(iter(self._tracks.values())).offset if self._tracks else self._continued(time_, now)
        elif self.follow_jumps and self._jumped(track, time_, now):
            offset = self._after_jump(kind, time_, now)
            if offset is None:  # the first kind to jump: the clock goes on from the newest output time
                offset = self._continued(time_, now)
                self._jumps.append(Jump(kind, float(time_ - track.last)))
        else:
            offset = track.offset
        self._tracks[kind] = _Track(offset, time_, now)
        out = time_ + offset
        if self._newest is None or out > self._newest[0]:
            self._newest = (out, now)
        self._pace_offset = offset if self._pace_offset is None else self._pace_offset
        return offset

    def reconnected(self) -> None:
        """The next item comes from a new source: it goes on from the newest output time plus the gap."""
        self._resync = True

    def jumps(self) -> list[Jump]:
        """The jumps since the last call, one per jump of the source's clock (the kind that showed it first)."""
        jumps, self._jumps = self._jumps, []
        return jumps

    def pace(self, time_: Fraction, stop: threading.Event) -> None:
        """Sleep a recording's item until its time comes at real time (the first item at once)."""
        assert self._pace_offset is not None, "shift() first"
        at = float(time_ + self._pace_offset)
        if self._wall0 is None:
            self._wall0 = time.monotonic() - at
        delay = self._wall0 + at - time.monotonic()
        if delay > 0:
            stop.wait(delay)

    # -- jumps ----------------------------------------------------------------------------------

    @staticmethod
    def _jumped(track: _Track, time_: Fraction, now: float) -> bool:
        step = float(time_ - track.last)
        return step < 0 or step > (now - track.wall) + JUMP_AHEAD_S

    def _after_jump(self, kind: str, time_: Fraction, now: float) -> Fraction | None:
        """The offset of another kind that jumped first (it is on a newer clock than this kind) when it puts
        ``time_`` near the newest output; None when this kind is the first to jump."""
        own = self._tracks[kind].offset
        for other, track in self._tracks.items():
            if other != kind and track.offset != own and self._fits(time_ + track.offset, now):
                return track.offset
        return None

    def _fits(self, out: Fraction, now: float) -> bool:
        assert self._newest is not None
        newest, wall = self._newest
        return -INTERLEAVE_S <= float(out - newest) <= (now - wall) + JUMP_AHEAD_S

    def _continued(self, time_: Fraction, now: float) -> Fraction:
        assert self._newest is not None
        newest, wall = self._newest
        gap = max(Fraction(max(now - wall, 0.0)).limit_denominator(1000), _MIN_GAP)
        return newest + gap - time_
