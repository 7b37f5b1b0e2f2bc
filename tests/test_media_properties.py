"""Property tests over size, rate and length: frames in == frames out, timestamps equal, audio
packets byte-identical after stream copy; the exact rate behind millisecond timestamps."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import FrameReader, probe
from media.rates import STANDARD_RATES, constant_rate, explains
from media_factory import copy_through, make_video

RATES = [Fraction(30000, 1001), Fraction(24000, 1001), Fraction(25), Fraction(30), Fraction(60000, 1001), Fraction(15)]


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(8, 40),
    height=st.integers(8, 40),
    rate=st.sampled_from(RATES),
    frames=st.integers(1, 14),
    suffix=st.sampled_from([".mp4", ".mkv"]),
    scale=st.sampled_from([1, 2]),
)
def test_stream_round_trip(width: int, height: int, rate: Fraction, frames: int, suffix: str, scale: int) -> None:
    odd = width % 2 or height % 2
    with tempfile.TemporaryDirectory() as tmp:
        src = make_video(Path(tmp) / f"s{suffix}", width, height, rate, frames, audio="aac",
                         pix_fmt="yuv444p" if odd else "yuv420p")
        out = Path(tmp) / f"o{suffix}"
        _, report = copy_through(src, out, scale=scale)
        with FrameReader(src) as a, FrameReader(out) as b:
            src_pts, out_pts = [f.pts for f in a], [f.pts for f in b]
        src_info, out_info = probe(src), probe(out)
        assert len(out_pts) == len(src_pts) == frames == report.frames
        # Same container: identical timestamps. Shifted only if Matroska moved everything for AAC priming.
        shift = out_info.video.start_time - src_info.video.start_time
        assert [p - shift for p in out_pts] == src_pts
        assert (out_info.video.width, out_info.video.height) == (width * scale, height * scale)
        if frames > 1:
            assert out_info.video.avg_rate == rate
        assert audio_payloads(out) == audio_payloads(src)


@st.composite
def ms_timestamps(draw: st.DrawFn, frames: st.SearchStrategy[int]) -> tuple[Fraction, list[int]]:
    """A standard rate and its frames' times rounded to Matroska's milliseconds, from any start."""
    rate = draw(st.sampled_from(STANDARD_RATES))
    count = draw(frames)
    start = Fraction(draw(st.integers(0, 10_000)), 1000) + Fraction(draw(st.integers(0, 999)), 1_000_000)
    return rate, [round((start + i / rate) * 1000) for i in range(count)]


MS = Fraction(1, 1000)


@settings(max_examples=60, deadline=None)
@given(case=ms_timestamps(st.integers(2, 40)))
def test_the_declared_rate_wins_when_the_timestamps_allow_it(case: tuple[Fraction, list[int]]) -> None:
    rate, pts = case
    assert constant_rate(pts, MS, [rate]) == rate
    # Matroska's DefaultDuration in whole nanoseconds, read back by FFmpeg with terms up to 30000.
    approx = Fraction(10**9, round(Fraction(10**9) / rate)).limit_denominator(30000)
    assert constant_rate(pts, MS, [None, approx]) == rate


@settings(max_examples=30, deadline=None)
@given(case=ms_timestamps(st.integers(300, 600)), wrong=st.sampled_from(STANDARD_RATES))
def test_a_long_piece_has_one_rate_whatever_is_declared(case: tuple[Fraction, list[int]], wrong: Fraction) -> None:
    rate, pts = case
    assert constant_rate(pts, MS, []) == rate
    assert constant_rate(pts, MS, [wrong]) == rate


def test_a_short_undeclared_piece_gets_the_simplest_rate() -> None:
    # Half a second: 30 and 30000/1001 fit the same milliseconds; nothing says which, 30 is simpler.
    pts = [round(i * 1000 / Fraction(30)) for i in range(15)]
    assert explains(Fraction(30000, 1001), pts[:13], MS) and explains(Fraction(30), pts, MS)
    assert constant_rate(pts[:13], MS, []) == 30
    assert constant_rate(pts[:13], MS, [Fraction(30000, 1001)]) == Fraction(30000, 1001)
