"""The plan: everything decided and checked before any work, with clear refusals."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

import media
from job_support import RecordingEngine
from media_factory import make_video
from job_support import plan
from vsr.job import LimitExceeded, TargetTooLarge, TrimOutOfRange, preview_plan
from vsr.job.errors import InputNotFound, JobRefused
from vsr.options import build_options

RATE = Fraction(30000, 1001)


@pytest.fixture
def options(tmp_path: Path):
    def make(**overrides):
        values = {"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache"}
        values.update(overrides)
        return build_options(values, env={})

    return make


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mkv", 64, 48, RATE, 90, audio="pcm", subtitles="srt")


def test_plan_says_everything_before_any_work(clip: Path, options, tmp_path: Path) -> None:
    job = plan(clip, options(), output=tmp_path / "out.mp4")
    assert (job.size.width, job.size.height) == (256, 192) and not job.size.resized
    assert job.frames == 90 and job.rate == RATE and job.duration == Fraction(90 * 1001, 30000)
    assert not job.trimmed and job.trim_start is None and job.trim_end is None
    assert job.container_suffix == ".mp4"
    # PCM audio cannot be copied into MP4 players; SubRip becomes mov_text. The plan says so and why.
    assert [(t.kind, t.action, t.codec_out) for t in job.tracks] == [
        ("audio", "transcoded", "aac"), ("subtitle", "transcoded", "mov_text")]
    assert job.engine["engine"] == "bicubic"
    # The estimate is the whole job: the engine, decoding, encoding (measured on this machine) and verifying.
    stages = job.stages
    assert job.seconds_per_frame > 0 and stages.engine == job.seconds_per_frame and job.media.measured
    assert stages.decode > 0 and stages.encode > 0 and stages.verify > 0 and not stages.overlap  # all on the CPU
    assert stages.per_frame == pytest.approx(stages.engine + stages.decode + stages.encode + stages.verify)
    assert job.estimate_seconds == pytest.approx(stages.fixed + 90 * stages.per_frame)
    assert job.estimate_bytes > 0
    text = job.to_text()
    for needle in ("64x48", "256x192", "29.97 (30000/1001) fps", "about 90 frames", "bicubic",
                   "audio #1: pcm_s16le -> aac, transcoded (MP4 players do not play PCM audio)",
                   "measured on this device", "Estimate:"):
        assert needle in text, f"{needle!r} missing from the plan text:\n{text}"
    (estimate,) = [line for line in text.splitlines() if line.startswith("Estimate:")]
    assert "px:" not in estimate and " ms" not in estimate and "cached" not in estimate  # words, not the table
    data = json.loads(json.dumps(job.to_dict()))
    assert "px:" in data["calibration"]  # the measured points stay in the machine-readable form
    assert data["frame_rate"] == "30000/1001" and data["output_size"] == [256, 192] and data["frames"] == 90


def test_mkv_output_copies_every_track(clip: Path, options, tmp_path: Path) -> None:
    job = plan(clip, options(), output=tmp_path / "out.mkv")
    assert [(t.kind, t.action) for t in job.tracks] == [("audio", "copied"), ("subtitle", "copied")]


def test_default_container_follows_the_codec(clip: Path, options) -> None:
    assert plan(clip, options(codec="prores")).container_suffix == ".mov"
    assert plan(clip, options(codec="ffv1")).container_suffix == ".mkv"


def test_a_codec_the_container_cannot_hold_is_refused(clip: Path, options, tmp_path: Path) -> None:
    with pytest.raises(media.UnsupportedContainer, match=r"\.mp4 file cannot hold ffv1"):
        plan(clip, options(codec="ffv1"), output=tmp_path / "out.mp4")


def test_the_estimate_uses_the_cached_calibration(clip: Path, options) -> None:
    engine = RecordingEngine()
    first = plan(clip, options(), processor=engine)
    assert not first.calibration.cached and engine.processed
    engine.calls.clear()
    second = plan(clip, options(), processor=engine)
    assert second.calibration.cached and engine.calls == []
    assert second.seconds_per_frame == first.seconds_per_frame


def test_trim(clip: Path, options) -> None:
    job = plan(clip, options(start="1", end="00:00:02.5"))
    assert job.start == 1 and job.end == Fraction(5, 2) and job.trimmed
    assert job.frames == 45  # frames at 1.001 .. 2.469 s: round(1.5 * 29.97)
    late = plan(clip, options(start="2"))
    assert late.trim_end is None and late.end == job.info.video.duration
    over = plan(clip, options(start="1", end="99"))
    assert over.end == over.info.video.duration and any("past the end" in n for n in over.notes)
    with pytest.raises(TrimOutOfRange, match=r"start 3\.5 s is at or past the end of the video \(3\.003 s\)"):
        plan(clip, options(start="3.5"))


def test_limits_are_refused_with_the_setting_to_change(clip: Path, options) -> None:
    with pytest.raises(LimitExceeded, match=r"64x48 = 3072 pixels, over the limit of 3000 .*MAX_INPUT_PIXELS"):
        plan(clip, options(max_input_pixels=3000))
    with pytest.raises(LimitExceeded, match=r"256x192 = 49152 pixels, over the limit of 40000 .*MAX_OUTPUT_PIXELS"):
        plan(clip, options(max_output_pixels=40000))
    with pytest.raises(LimitExceeded, match=r"3\.0 s of video is over the limit of 2\.0 s\. Trim it"):
        plan(clip, options(max_duration=2))
    assert plan(clip, options(max_duration=2, end="1.5")).frames == 45  # trimming brings it under the limit


def test_a_target_above_4x_is_refused(clip: Path, options) -> None:
    with pytest.raises(TargetTooLarge, match=r"720p output needs 15\.00x"):
        plan(clip, options(height=720))
    assert isinstance(TargetTooLarge("x"), JobRefused) and isinstance(TargetTooLarge("x"), ValueError)


def test_missing_input(options, tmp_path: Path) -> None:
    with pytest.raises(InputNotFound, match=r"nothing\.mp4: no such file"):
        plan(tmp_path / "nothing.mp4", options())


def test_preview_is_two_seconds_from_the_middle(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "long.mp4", 64, 48, 25, 250, audio=None)  # 10 s
    job = plan(src, options())
    preview = preview_plan(job)
    assert (preview.start, preview.end) == (4, 6) and preview.frames == 50
    assert preview.stages == job.stages  # the same costs per frame, measured once
    assert preview.estimate_seconds == pytest.approx(job.stages.fixed + 50 * job.stages.per_frame)
    trimmed = plan(src, options(start=2, end=4))
    assert (preview_plan(trimmed, 1).start, preview_plan(trimmed, 1).end) == (Fraction(5, 2), Fraction(7, 2))
    assert preview_plan(trimmed, 5) is trimmed  # shorter than the preview: all of it
