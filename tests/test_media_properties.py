"""Property tests over size, rate and length: frames in == frames out, timestamps equal, audio
packets byte-identical after stream copy."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import av
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import FrameReader, probe
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
