"""FrameReader: exact timestamps, the source's own colour conversion, trims with seeking, and errors
raised in the caller with the frame where they happened."""

from __future__ import annotations

import logging
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil
import pytest

from media import DecodeError, FrameReader, InvalidTrim, TruncatedVideo, ZeroFrames, probe
from media.colour import to_8bit
from media_factory import make_video, pattern


@pytest.mark.parametrize("rate", [Fraction(30000, 1001), Fraction(24000, 1001), Fraction(25)])
def test_every_frame_with_exact_pts(tmp_path: Path, rate: Fraction) -> None:
    path = make_video(tmp_path / "c.mp4", 64, 48, rate, 15, audio=None)
    with FrameReader(path) as frames:
        got = list(frames)
    assert [f.index for f in got] == list(range(15))
    assert [f.pts for f in got] == [i / rate for i in range(15)]
    assert all(isinstance(f.pts, Fraction) for f in got)
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8 for f in got)
    assert all(f.duration == 1 / rate for f in got)


def test_variable_rate_timestamps(tmp_path: Path) -> None:
    times = [Fraction(0), Fraction(1, 30), Fraction(1, 10), Fraction(1, 5), Fraction(1, 4)]
    with FrameReader(make_video(tmp_path / "vfr.mp4", frames=5, timestamps=times, audio=None)) as frames:
        assert [f.pts for f in frames] == times


def _frame_error(path: Path) -> np.ndarray:
    """Per-pixel error against the 8-bit pattern (a deep source's uint16 frames rounded to 8 bits first)."""
    with FrameReader(path) as frames:
        return np.stack([np.abs(to_8bit(f.rgb).astype(int) - pattern(64, 48, f.index)) for f in frames])


@pytest.mark.parametrize(("colour_range", "sws_range"), [("tv", 1), ("pc", 2)])
def test_bt709_round_trip_colour_error_is_measured(tmp_path: Path, colour_range: str, sws_range: int) -> None:
    """Lossless FFV1 4:4:4, so the only error is RGB -> BT.709 YUV -> RGB in 8 bits."""
    path = make_video(tmp_path / "c.mkv", 64, 48, frames=3, codec="ffv1", pix_fmt="yuv444p",
                      color_range=colour_range, audio=None)
    err = _frame_error(path)
    assert err.max() <= 2 and err.mean() < 1.0  # measured: max 2, mean 0.38 (tv) / 0.67 (pc)
    # The same pixels read the way a BT.601-assuming tool would are visibly off: the tags matter.
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    wrong = frame.reformat(format="rgb24", src_colorspace="ITU601", src_color_range=sws_range).to_ndarray()
    assert np.abs(wrong.astype(int) - pattern(64, 48, 0)).mean() > 3 * err.mean() + 2  # measured: 4.8 (tv), 4.7 (pc)


def test_ten_bit_input(tmp_path: Path) -> None:
    path = make_video(tmp_path / "ten.mkv", 64, 48, frames=3, codec="ffv1", pix_fmt="yuv444p10le", audio=None)
    assert probe(path).video.bit_depth == 10
    with FrameReader(path) as frames:
        assert next(iter(frames)).rgb.dtype == np.uint16  # more than 8 bits reach the caller (docs/hdr.md)
    assert _frame_error(path).max() <= 1  # 10-bit keeps the 8-bit picture to within rounding


def test_ten_bit_h264(tmp_path: Path) -> None:
    path = make_video(tmp_path / "ten.mp4", 64, 48, frames=4, pix_fmt="yuv420p10le", color_range="pc", audio=None)
    err = _frame_error(path)
    assert err.mean() < 3  # lossy 4:2:0, but no range or matrix shift (that would be > 5)


def test_alpha_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_video(tmp_path / "alpha.mkv", 64, 48, frames=3, pix_fmt="yuva420p", audio=None)
    with caplog.at_level(logging.WARNING, logger="media.reader"), FrameReader(path) as frames:
        got = list(frames)
    assert len(got) == 3 and got[0].rgb.shape == (48, 64, 3)
    assert [r.message for r in caplog.records if "alpha" in r.message] and len(caplog.records) == 1


def test_trim_seeks_instead_of_decoding_everything(tmp_path: Path) -> None:
    rate = Fraction(30000, 1001)
    path = make_video(tmp_path / "long.mp4", 64, 48, rate, 150, gop=15, audio=None)
    start, end = Fraction(4), Fraction(9, 2)
    with FrameReader(path, start=start, end=end) as reader:
        got = list(reader)
        decoded = reader.frames_decoded
    first = 120  # ceil(4 s * 29.97)
    assert [f.pts for f in got] == [i / rate for i in range(first, 135)]
    assert [f.index for f in got] == list(range(15))
    assert np.abs(got[0].rgb.astype(int) - pattern(64, 48, first)).mean() < 4
    assert decoded < 15 + 15 + 2  # from the keyframe before `start`, not from frame 0


def test_a_trim_of_an_mpeg_ts_with_one_key_frame_reads_from_the_start(tmp_path: Path) -> None:
    """An MPEG-TS has no index: a seek to a time after its only key frame lands past it, where nothing
    decodes, and a trim of a camcorder's or a recorder's .ts / .m2ts said "no frame between 0.200 s and
    0.600 s". The reader then decodes from the start instead."""
    path = make_video(tmp_path / "rec.ts", 64, 48, Fraction(25), 50, gop=250, audio=None)
    start = probe(path).video.start_time
    with FrameReader(path, start=Fraction(1, 5), end=Fraction(3, 5)) as reader:
        got = list(reader)
    assert [f.pts - start for f in got] == [Fraction(i, 25) for i in range(5, 15)]
    assert np.abs(got[0].rgb.astype(int) - pattern(64, 48, 5)).mean() < 4


@pytest.mark.parametrize(("start", "end"), [(Fraction(-1), None), (Fraction(1), Fraction(1)), (Fraction(5), None)])
def test_bad_trim(tmp_path: Path, start: Fraction, end: Fraction | None) -> None:
    path = make_video(tmp_path / "c.mp4", frames=30, audio=None)
    with pytest.raises(InvalidTrim, match="does not select"):
        FrameReader(path, start=start, end=end)


def test_truncated_file_names_the_frame_where_decoding_stopped(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mkv", 128, 96, frames=60, audio=None)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    seen: list[int] = []
    # Pass the intact file's probe, as a job does when the file changes under it.
    with pytest.raises(TruncatedVideo) as err, FrameReader(cut, info=probe(good)) as frames:
        for frame in frames:
            seen.append(frame.index)
    assert err.value.frame_index == len(seen) and 0 < len(seen) < 60
    assert f"after frame {len(seen) - 1}" in str(err.value)


def test_decoder_error_is_raised_in_the_caller_with_the_index(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", 128, 96, frames=30, gop=10, audio=None)
    info = probe(good)
    data = bytearray(good.read_bytes())
    # Overwrite the middle of the file (inside mdat) with garbage.
    mid = len(data) // 2
    data[mid : mid + 4000] = bytes(range(256)) * 15 + bytes(160)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises((DecodeError, TruncatedVideo)) as err, FrameReader(bad, info=info) as frames:
        for _ in frames:
            pass
    assert err.value.frame_index is not None and str(err.value.frame_index) in str(err.value)


def test_leaving_early_stops_the_thread(tmp_path: Path) -> None:
    path = make_video(tmp_path / "c.mp4", 64, 48, frames=60, audio=None)
    before = threading.active_count()
    with FrameReader(path, queue_size=2) as frames:
        for frame in frames:
            if frame.index == 3:
                break
    assert threading.active_count() == before
    assert not [f for f in psutil.Process().open_files() if f.path == str(path)]  # the file is closed too


def test_gradio_sample_frames(gradio_videos: Path) -> None:
    with FrameReader(gradio_videos / "b.mp4", end=Fraction(1)) as frames:
        got = list(frames)
    assert len(got) == 30 and got[-1].pts == Fraction(29, 30)
    assert got[0].rgb.shape == (270, 480, 3)
    assert got[0].rgb.std() > 10  # a real picture, not a flat frame


def test_range_without_frames(tmp_path: Path) -> None:
    times = [Fraction(0), Fraction(1, 2), Fraction(1)]
    path = make_video(tmp_path / "gap.mp4", frames=3, timestamps=times, audio=None)
    with pytest.raises(ZeroFrames, match="no frame between 0.100 s and 0.200 s"), FrameReader(
        path, start=Fraction(1, 10), end=Fraction(1, 5)
    ) as frames:
        list(frames)
