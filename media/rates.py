"""The exact frame rate of a constant-rate stream, from its timestamps and what the file declares.

Containers with coarse ticks (Matroska and WebM: milliseconds) cannot tell neighbouring rates
apart from a short piece: 15 frames at 30 fps round to the same milliseconds as 15 frames at
30000/1001 would, within rounding. So a rate is accepted only when it *explains* every timestamp:
all of them lie within one tick's rounding of a single grid of ``1 / rate`` steps. Of the rates
that do, the one the file declares wins (the bitstream's timing info, then the container's own:
Matroska's DefaultDuration, MP4's sample table), else the simplest one (smallest denominator, then
the closest to the mean step). A long piece leaves only one candidate; a short one is decided by
what the file says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

__all__ = ["STANDARD_RATES", "constant_rate", "explains", "snap"]

# Frame rates cameras, films and TV use.
STANDARD_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "12",
                          "25/2", "15", "90", "100", "120000/1001", "120", "144", "240")
)

# A declared rate this close (relative) to a standard one names it: Matroska stores the frame
# duration in whole nanoseconds and FFmpeg reads it back as a fraction with terms up to 30000
# (60000/1001 reads as 19001/317); neighbouring standard rates are 1e-3 apart.
_SNAP = Fraction(1, 100_000)


def snap(rate: Fraction) -> Fraction:
    """``rate``, or the standard rate it approximates within Matroska's nanosecond rounding."""
    for standard in STANDARD_RATES:
        if abs(rate / standard - 1) <= _SNAP:
            return standard
    return rate


def explains(rate: Fraction, pts: Sequence[int], time_base: Fraction) -> bool:
    """Whether ``pts`` (sorted ticks of ``time_base``, one per frame, no gap) all lie within one
    tick's rounding of one grid of ``1 / rate`` steps: the spread of their distances from the grid
    is at most one tick. Integer arithmetic: the frame step is ``p / q`` ticks."""
    step = 1 / (rate * time_base)
    p, q = step.numerator, step.denominator
    first = pts[0]
    if abs((pts[-1] - first) * q - (len(pts) - 1) * p) > q:  # the whole span alone rules most rates out
        return False
    lowest = highest = 0
    for index, tick in enumerate(pts):
        offset = (tick - first) * q - index * p
        lowest, highest = min(lowest, offset), max(highest, offset)
        if highest - lowest > q:
            return False
    return True


def _near_mean(mean_step: Fraction) -> list[Fraction]:
    """The whole rate nearest the mean step and its NTSC (x 1000/1001) neighbour, for rates that are
    in no list (10 fps, 7.5 fps...)."""
    mean_rate = 1 / mean_step
    whole = round(mean_rate)
    ntsc = Fraction(round(mean_rate * Fraction(1001, 1000)) * 1000, 1001)
    return [r for r in (Fraction(whole), ntsc) if r > 0]


def constant_rate(pts: Sequence[int], time_base: Fraction, declared: Iterable[Fraction | None]) -> Fraction | None:
    """The exact rate of a constant-rate stream whose frames are at ``pts`` (sorted ticks of
    ``time_base``, at least two), given the rates the file ``declared`` (most trusted first; None
    entries are ignored). None when no rate explains the timestamps (see the module doc)."""
    said = _unique(snap(Fraction(r)) for r in declared if r)
    mean_step = Fraction(pts[-1] - pts[0], len(pts) - 1) * time_base
    candidates = _unique([*said, *STANDARD_RATES, *_near_mean(mean_step)])
    fits = [r for r in candidates if r.numerator < 2**31 and explains(r, pts, time_base)]
    for rate in said:
        if rate in fits:
            return rate
    if not fits:
        return None
    return min(fits, key=lambda r: (r.denominator, abs(1 / r - mean_step)))


def _unique(rates: Iterable[Fraction]) -> list[Fraction]:
    seen: list[Fraction] = []
    for rate in rates:
        if rate > 0 and rate not in seen:
            seen.append(rate)
    return seen
