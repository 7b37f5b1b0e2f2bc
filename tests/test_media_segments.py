"""Video-only segments joined by stream copy: the same file as one pass (lossless: the same pixels and
timestamps), audio and subtitles muxed over the whole range, damaged segments refused, nothing partial left."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media import (
    EncodeSettings,
    ExpectedOutput,
    FrameReader,
    MediaError,
    Segment,
    VideoWriter,
    ZeroFrames,
    join_segments,
    probe,
    verify,
)
from media.segments import decoding_times
from media_factory import make_video


def _frames(path: Path, start=None, end=None) -> list:
    with FrameReader(path, start, end) as reader:
        return list(reader)


def one_pass(src: Path, dest: Path, encode: EncodeSettings, start=None, end=None) -> object:
    info = probe(src)
    with VideoWriter(dest, info, info.video.width, info.video.height, encode, start, end) as writer:
        for frame in _frames(src, start, end):
            writer.write(frame.rgb, frame.pts, frame.duration)
        return writer.finish()


def in_segments(src: Path, dest: Path, encode: EncodeSettings, cuts: tuple[int, ...], start=None, end=None) -> object:
    """Write ``src`` as video-only segments closed after the frame counts in ``cuts``, then join them."""
    info = probe(src)
    segments: list[Segment] = []
    writer, offset = None, None
    for done, frame in enumerate(_frames(src, start, end), start=1):
        if writer is None:
            path = dest.parent / f"segment-{len(segments)}.mkv"
            writer = VideoWriter(path, info, info.video.width, info.video.height, encode, start, end,
                                 video_only=True, timeline=offset)
        writer.write(frame.rgb, frame.pts, frame.duration)
        offset = writer.offset if offset is None else offset
        if done in cuts:
            writer.finish()
            segments.append(Segment(path, writer.time_base, tuple(writer.packets)))
            writer = None
    if writer is not None:
        writer.finish()
        segments.append(Segment(path, writer.time_base, tuple(writer.packets)))
    for segment in segments:  # each a video-only file that starts on a key frame
        with av.open(str(segment.path)) as container:
            assert [s.type for s in container.streams] == ["video"]
            assert next(container.demux(video=0)).is_keyframe
    return join_segments(dest, info, segments, encode, offset, start, end)


def _facts(path: Path) -> dict:
    """What a player sees of the file, without its name and size."""
    facts = probe(path).to_dict()
    for key in ("path", "size_bytes", "duration"):
        facts.pop(key, None)
    for key in ("bit_rate", "duration"):
        facts["video"].pop(key, None)
    return facts


def test_lossless_segments_give_the_one_pass_file(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mkv", 48, 32, Fraction(30000, 1001), 16, audio="aac", subtitles="srt")
    ffv1 = EncodeSettings("ffv1")
    whole = one_pass(src, tmp_path / "whole.mkv", ffv1)
    (tmp_path / "parts").mkdir()
    joined = in_segments(src, tmp_path / "parts" / "joined.mkv", ffv1, cuts=(1, 2, 7))
    assert (joined.frames, joined.width, joined.height, joined.pix_fmt) == (16, 48, 32, "bgr0")
    assert [(s.kind, s.action) for s in joined.streams] == [(s.kind, s.action) for s in whole.streams]
    a, b = _frames(whole.path), _frames(joined.path)
    assert [f.pts for f in a] == [f.pts for f in b]
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, b, strict=True))
    assert _facts(whole.path) == _facts(joined.path)
    assert verify(probe(src), joined.path, ExpectedOutput(16, 48, 32)).ok
    assert sorted(p.name for p in (tmp_path / "parts").iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(("name", "kw", "dest", "codec", "trim"), [
    ("rotated.mp4", {"rotation": 90, "sample_aspect_ratio": Fraction(4, 3)}, "o.mp4", "h264", {}),
    ("trimmed.mp4", {"frames": 40}, "o.mp4", "h264", {"start": Fraction(1, 5), "end": Fraction(1)}),
    ("vfr.mp4", {"timestamps": [Fraction(i * i, 300) for i in range(12)]}, "o.mp4", "h264", {}),
    ("hevc.mp4", {}, "o.mp4", "hevc", {}),
    ("prores.mp4", {"audio": "pcm"}, "o.mov", "prores", {}),
    ("aspect.mp4", {"sample_aspect_ratio": Fraction(128, 117)}, "o.mkv", "ffv1", {}),  # FFV1 carries no aspect
])
def test_segments_of_any_codec_join_into_a_verified_file(tmp_path: Path, name, kw, dest, codec, trim) -> None:
    src = make_video(tmp_path / name, 64, 48, **{"frames": 12, "audio": "aac", **kw})
    encode = EncodeSettings(codec, preset="ultrafast" if codec in ("h264", "hevc") else None)
    whole = one_pass(src, tmp_path / f"whole{Path(dest).suffix}", encode, **trim)
    (tmp_path / "parts").mkdir()
    joined = in_segments(src, tmp_path / "parts" / dest, encode, cuts=(1, 2, 5), **trim)  # one- and two-frame ones
    assert joined.frames == whole.frames
    assert [f.pts for f in _frames(joined.path)] == [f.pts for f in _frames(whole.path)]
    assert _facts(joined.path)["video"] | {"profile": None} == _facts(whole.path)["video"] | {"profile": None}
    expected = ExpectedOutput(whole.frames, 64, 48, trim.get("start"), trim.get("end"))
    report = verify(probe(src), joined.path, expected)
    assert report.ok, report.to_text()


def test_a_damaged_segment_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 8, audio=None)
    info = probe(src)
    path = tmp_path / "segment-0.mkv"
    with VideoWriter(path, info, 64, 48, EncodeSettings("ffv1"), video_only=True) as writer:
        for frame in _frames(src):
            writer.write(frame.rgb, frame.pts, frame.duration)
        writer.finish()
    logged = Segment(path, writer.time_base, tuple(writer.packets))
    too_many = Segment(path, logged.time_base, logged.packets + ((8, 8, 1),))
    with pytest.raises(MediaError, match="does not hold the 9 video packets written to it; it is damaged"):
        join_segments(tmp_path / "o.mkv", info, [too_many], EncodeSettings("ffv1"), writer.offset)
    with pytest.raises(ZeroFrames):
        join_segments(tmp_path / "o.mkv", info, [], EncodeSettings("ffv1"), Fraction(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "segment-0.mkv"]


def test_a_join_that_fails_verification_never_appears_under_its_name(tmp_path: Path) -> None:
    """Verified before the rename, as VideoWriter.finish(expected) is: a crash or a failed check can never
    leave an unverified file under the output's name (an older result there stays as it was)."""
    from media import VerificationFailed

    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 8, audio="aac")
    info = probe(src)
    path = tmp_path / "segment-0.mkv"
    with VideoWriter(path, info, 64, 48, EncodeSettings("ffv1"), video_only=True) as writer:
        for frame in _frames(src):
            writer.write(frame.rgb, frame.pts, frame.duration)
        writer.finish()
    segment = Segment(path, writer.time_base, tuple(writer.packets))
    dest = tmp_path / "o.mkv"
    dest.write_bytes(b"an older result")
    with pytest.raises(VerificationFailed) as caught:
        join_segments(dest, info, [segment], EncodeSettings("ffv1"), writer.offset, expected=ExpectedOutput(9, 64, 48))
    assert dest.read_bytes() == b"an older result"
    assert caught.value.report.path == dest and not caught.value.report.ok
    assert "frames: 8 frames, expected 9" in caught.value.report.to_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "o.mkv", "segment-0.mkv"]

    joined = join_segments(dest, info, [segment], EncodeSettings("ffv1"), writer.offset,
                           expected=ExpectedOutput(8, 64, 48))
    assert joined.verification.ok and joined.verification.path == dest
    assert joined.verification.to_text().startswith("o.mkv: all ") and probe(dest).video.frame_count == 8
    assert [a.codec for a in probe(dest).audio] == ["aac"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 3000))
def test_decoding_times_increase_and_never_follow_the_picture(shuffles, tick):
    # Presentation times on a grid of ``tick``, reordered locally as B-frames are.
    pts = [i * tick for i in range(len(shuffles))]
    for i, shift in enumerate(shuffles):
        j = min(len(pts) - 1, i + shift)
        pts[i], pts[j] = pts[j], pts[i]
    dts = decoding_times(pts)
    assert all(a < b for a, b in zip(dts, dts[1:]))
    assert all(d <= p for d, p in zip(dts, pts))
    assert sorted(pts) == pts or dts[0] < min(pts)
