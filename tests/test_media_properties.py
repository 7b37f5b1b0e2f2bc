"""Property tests over size, rate and length: frames in == frames out, timestamps equal, audio
packets byte-identical after stream copy; the exact rate behind millisecond timestamps."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from media import CODEC_SPECS, EncodeSettings, ExpectedOutput, FrameReader, probe, verify
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


CODEC_CONTAINERS = [(codec, suffix) for codec, spec in CODEC_SPECS.items() for suffix in spec.containers]


# Sample aspect ratios between 1/4 and 4: anamorphic DVD (32/27, 8/9), PAL/NTSC CIF (128/117), anything.
PIXEL_ASPECTS = st.tuples(st.integers(1, 100), st.integers(1, 100)).map(lambda t: Fraction(*t)).filter(
    lambda sar: Fraction(1, 4) <= sar <= 4)


@pytest.mark.parametrize(("codec", "suffix"), CODEC_CONTAINERS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# 40 wide: where libx265's CU-tree corrupted its heap before the writer turned it off (media.encode).
@given(sar=PIXEL_ASPECTS, width=st.sampled_from([32, 40, 64, 96]), height=st.sampled_from([32, 48, 64]))
@example(sar=Fraction(65, 64), width=32, height=32)  # 32.5 pixels wide: WebM's whole pixels are 1.5% off
@example(sar=Fraction(8, 9), width=64, height=48)  # DVD NTSC 4:3
def test_pixel_aspect_is_kept_for_every_codec_and_container(codec: str, suffix: str, sar: Fraction, width: int,
                                                            height: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # Five frames: libx265 sometimes gives a two-frame clip a garbage DTS, which MP4 refuses.
        src = make_video(Path(tmp) / "s.mp4", width, height, 25, 5, audio=None, sample_aspect_ratio=sar)
        out = Path(tmp) / f"o{suffix}"
        copy_through(src, out, encode=EncodeSettings(codec))
        v, ov = probe(src).video, probe(out).video
        assert v.sample_aspect_ratio == sar
        if suffix == ".webm":  # WebM stores the display size in whole pixels: within half a pixel
            assert abs(ov.display_aspect_ratio / v.display_aspect_ratio - 1) <= Fraction(1, 2 * min(width, height))
        else:
            assert ov.display_aspect_ratio == v.display_aspect_ratio
        report = verify(probe(src), out, ExpectedOutput(5, width, height))
        assert report.ok, report.to_text()
