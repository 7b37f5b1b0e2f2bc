"""``verify(source, output, expected) -> VerifyReport``: decode the finished output and check it.

Checks, each reported in plain words: the file opens and every frame decodes; frame count; size;
display (rotation and aspect ratio as the source, the aspect within 1%, or half a pixel of a tiny
picture, as WebM stores whole display pixels); frame rate (a constant rate exactly equal to the
source's, as a ``Fraction``; a variable rate stays variable); video duration (within one frame);
every source audio track present with the same duration (within one audio packet); the audio/video
start offset equal to the source's (within one frame); every subtitle track present.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.errors import MediaError, reason
from media.probe import MediaInfo, _jsonable, probe
from media.reader import resolve_trim

log = logging.getLogger(__name__)

__all__ = ["ExpectedOutput", "Check", "VerifyReport", "verify"]


@dataclass(frozen=True)
class ExpectedOutput:
    """What the output should be: ``frames`` written at ``width`` x ``height`` (coded), from the
    source range ``start``..``end`` (seconds from the source's first frame; None = whole video)."""

    frames: int
    width: int
    height: int
    start: Fraction | None = None
    end: Fraction | None = None


@dataclass(frozen=True)
class Check:
    """One check: ``name``, whether it passed, and a sentence saying what was found."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """The result of ``verify``. ``ok`` is True only when every check passed."""

    path: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def to_text(self) -> str:
        head = (f"{self.path.name}: all {len(self.checks)} checks passed." if self.ok else
                f"{self.path.name}: {len(self.failed)} of {len(self.checks)} checks FAILED.")
        return "\n".join([head] + [f"  [{'ok' if c.ok else 'FAILED'}] {c.name}: {c.message}" for c in self.checks])

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "checks": [_jsonable(c) for c in self.checks]}


def _s(t: Fraction | None) -> str:
    return "unknown" if t is None else f"{float(t):.3f} s"


def verify(source: MediaInfo, output: str | Path, expected: ExpectedOutput) -> VerifyReport:
    """Decode ``output`` completely and compare it with ``source`` and ``expected`` (see module doc).
    Never raises for a bad output: a file that cannot be read is a failed check."""
    output = Path(output)
    checks: list[Check] = []
    try:
        out = probe(output)
    except MediaError as exc:
        return VerifyReport(output, (Check("readable", False, f"the output cannot be read: {exc}"),))
    streams = 1 + len(out.audio) + len(out.subtitles)
    checks.append(Check("readable", True, f"opens as {out.container_name} with {streams} streams"))
    v, ov = source.video, out.video
    abs_start, abs_end = resolve_trim(source, expected.start, expected.end)
    trimmed = expected.start is not None or expected.end is not None

    decoded, error = _decode_all(output)
    decode_msg = f"all {decoded} frames decode" if error is None else f"decoding failed after {decoded} frames: {error}"
    checks.append(Check("decodes", error is None, decode_msg))
    checks.append(Check("frames", decoded == expected.frames,
                        f"{decoded} frames" + ("" if decoded == expected.frames else f", expected {expected.frames}")))
    size_ok = (ov.width, ov.height) == (expected.width, expected.height)
    size_msg = f"{ov.width}x{ov.height}" + ("" if size_ok else f", expected {expected.width}x{expected.height}")
    checks.append(Check("size", size_ok, size_msg))
    # Within 1%, or half a pixel of a tiny picture (WebM stores the display size in whole pixels).
    dar_tolerance = max(Fraction(1, 100), Fraction(1, 2 * min(ov.width, ov.height)))
    dar_ok = abs(ov.display_aspect_ratio - v.display_aspect_ratio) <= v.display_aspect_ratio * dar_tolerance
    rot_ok = ov.rotation == v.rotation
    checks.append(Check(
        "display", dar_ok and rot_ok,
        f"shows as {ov.display_width}x{ov.display_height} (aspect {float(ov.display_aspect_ratio):.4f}, rotation "
        f"{ov.rotation}); the source shows aspect {float(v.display_aspect_ratio):.4f}, rotation {v.rotation}",
    ))
    if v.variable_rate:
        rate_ok = ov.variable_rate or expected.frames <= 2
        rate_msg = "variable frame rate kept" if rate_ok else f"became constant {ov.avg_rate}; the source's rate varies"
    else:
        rate_ok = ov.avg_rate == v.avg_rate and not ov.variable_rate
        rate_msg = f"{ov.avg_rate} fps" + ("" if rate_ok else f" ({'variable' if ov.variable_rate else 'constant'}), "
                                                              f"expected constant {v.avg_rate} fps")
    checks.append(Check("frame rate", rate_ok, rate_msg))

    v_end = v.start_time + (v.duration or Fraction(0))
    want_v = min(abs_end, v_end) - abs_start
    tol_v = v.frame_duration + ov.time_base
    got_v = ov.duration or Fraction(0)
    checks.append(Check("video duration", abs(got_v - want_v) <= tol_v,
                        f"{_s(got_v)}, expected {_s(want_v)} (within one frame, {_s(v.frame_duration)})"))

    checks += _audio_checks(source, out, abs_start, abs_end, trimmed)
    subs_ok = len(out.subtitles) == len(source.subtitles)
    subs_msg = f"{len(out.subtitles)} subtitle tracks, the source has {len(source.subtitles)}"
    checks.append(Check("subtitles", subs_ok, subs_msg))
    report = VerifyReport(output, tuple(checks))
    log.info("%s", report.to_text())
    return report


def _audio_checks(
    source: MediaInfo, out: MediaInfo, abs_start: Fraction, abs_end: Fraction, trimmed: bool
) -> list[Check]:
    checks = [Check("audio tracks", len(out.audio) == len(source.audio),
                    f"{len(out.audio)} audio tracks, the source has {len(source.audio)}")]
    v, ov = source.video, out.video
    for n, (a, oa) in enumerate(zip(source.audio, out.audio), start=1):
        if a.start_time is None or a.duration is None or oa.start_time is None or oa.duration is None:
            checks.append(Check(f"audio track {n}", oa.packets > 0 or a.packets == 0,
                                f"{oa.packets} packets (the source has {a.packets})"))
            continue
        a_end = a.start_time + a.duration
        # A track encoded anew starts where its decoder gives the first sound (WMA's needs two packets first).
        a_start = a.first_sound if a.codec != oa.codec and a.first_sound is not None else a.start_time
        if trimmed:
            want = max(Fraction(0), min(a_end, abs_end) - max(a_start, abs_start))
            want_offset = max(a_start, abs_start) - max(v.start_time, abs_start)
        else:
            want, want_offset = a_end - a_start, a_start - v.start_time
        packet = max(a.packet_duration or Fraction(0), oa.packet_duration or Fraction(0))
        # Stream copy cuts whole packets (one per end when trimmed); a transcode adds the encoder's priming:
        # one packet of silence before the first sound, which an MP4 hides only when the sound starts at 0.
        transcoded = a.codec != oa.codec
        priming = (oa.packet_duration or Fraction(0)) if transcoded else Fraction(0)
        tol = packet * (2 if trimmed or transcoded else 1) + oa.time_base
        checks.append(Check(f"audio track {n} duration", -tol <= oa.duration - want <= tol + priming,
                            f"{_s(oa.duration)} of {oa.codec}, expected {_s(want)} (within {_s(tol)}"
                            + (f", plus {_s(priming)} of the encoder's priming)" if transcoded else ")")))
        offset = oa.start_time - ov.start_time
        tol_o = v.frame_duration
        checks.append(Check(f"audio track {n} sync", -tol_o - priming <= offset - want_offset <= tol_o,
                            f"audio starts {float(offset) * 1000:+.1f} ms from the video, the source "
                            f"{float(want_offset) * 1000:+.1f} ms (within one frame, {float(tol_o) * 1000:.1f} ms"
                            + (f", or earlier by the encoder's priming, {float(priming) * 1000:.1f} ms)"
                               if transcoded else ")")))
    return checks


def _decode_all(path: Path) -> tuple[int, str | None]:
    count = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if frame.is_corrupt:
                    return count, f"frame {count} is corrupt"
                count += 1
    except av.FFmpegError as exc:
        return count, reason(exc)
    return count, None
