"""How numbers read for people, in one place: durations, speeds, byte counts, clock times, frame rates.

The CLI, the plan's text and the web page all print through these, so "1 min 15 s" reads the same
everywhere.
"""

from __future__ import annotations

import math
from fractions import Fraction


def duration_text(seconds: float | None) -> str:
    """``4.25`` -> ``"4.2 s"``, ``75`` -> ``"1 min 15 s"``, ``600`` -> ``"10 min"``,
    ``3900`` -> ``"1 h 05 min"``; ``None`` (or not finite) -> ``"unknown"``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    return f"{secs} s"


def speed_text(frames_per_second: float | None) -> str:
    """An upscaling speed: ``3.1`` -> ``"3.10 frames/s"``; ``None`` -> ``"measuring speed"``."""
    if frames_per_second is None or not math.isfinite(frames_per_second) or frames_per_second <= 0:
        return "measuring speed"
    return f"{frames_per_second:.2f} frames/s"


def bytes_text(count: float | None) -> str:
    """Bytes in human units: ``1536000`` -> ``"1.5 MB"`` (powers of 1000, like file managers)."""
    if count is None:
        return "unknown"
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def gb_text(count: float) -> str:
    """Bytes in gigabytes, always (memory figures side by side): ``6.1e9`` -> ``"6.1 GB"``."""
    return f"{count / 1e9:.1f} GB"


def fraction_text(value: Fraction) -> str:
    """``Fraction(30000, 1001)`` -> ``"30000/1001"`` (JSON-safe, exact)."""
    return f"{value.numerator}/{value.denominator}"


def rate_text(rate: Fraction) -> str:
    """A frame rate: ``30`` -> ``"30"``, ``30000/1001`` -> ``"29.97 (30000/1001)"``."""
    shown = f"{float(rate):.3f}".rstrip("0").rstrip(".")
    return shown + (f" ({fraction_text(rate)})" if rate.denominator != 1 else "")


def clock_text(seconds: Fraction | float) -> str:
    """A position in a video: ``75.5`` -> ``"0:01:15.500"``."""
    total = float(seconds)
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:06.3f}"
