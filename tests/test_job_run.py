"""The streaming job with the bicubic engine: exact output, audio, trim, scene cuts, cancel and crash cleanup.

Outputs are FFV1 (lossless RGB) where pixel values are compared, so every decoded output pixel must
equal the engine's output on the decoded input frame exactly.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from job_support import (
    CancellingEngine,
    FailingEngine,
    RecordingEngine,
    decode,
    files_under,
    job_threads,
    open_files_under,
)
from media_factory import make_video
from vsr.model.bicubic import BicubicUpscaler
from job_support import plan
from vsr.job import JobCancelled, JobFailed, JobResult, ProgressEvent, run
from vsr.options import build_options
from vsr.job.resize import resize_rgb

RATE = Fraction(30000, 1001)


@pytest.fixture
def options(tmp_path: Path):
    def make(**overrides):
        values = {"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache", "seed": 5}
        values.update(overrides)
        return build_options(values, env={})

    return make


def _assert_clean(tmp_path: Path, out_dir: Path, threads_before: set[str]) -> None:
    assert files_under(tmp_path / "tmp") == [], "the job's temporary directory was not removed"
    assert [p for p in out_dir.iterdir() if p.name.startswith(".")] == [], "a partial output was left"
    assert open_files_under(tmp_path) == []
    assert job_threads() <= threads_before, f"threads left: {job_threads() - threads_before}"


def test_exact_4x_pixels_frames_rate_and_audio(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mkv", 48, 32, RATE, 14, audio="aac")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    threads = job_threads()
    events: list[ProgressEvent] = []
    job = plan(src, options(codec="ffv1"), output=out_dir / "up.mkv")
    result = run(job, out_dir / "up.mkv", on_progress=events.append)

    assert isinstance(result, JobResult) and result.report.ok and result.frames == 14 and result.seed == 5
    assert result.scene_cuts == ()
    info = media.probe(result.output)
    assert (info.video.width, info.video.height) == (192, 128)
    assert info.video.avg_rate == RATE and info.video.frame_count == 14
    assert [a.codec for a in info.audio] == ["aac"]
    assert [(s.kind, s.action) for s in result.write.streams] == [("video", "encoded"), ("audio", "copied")]
    engine = BicubicUpscaler()
    for lo, hi in zip(decode(src), decode(result.output), strict=True):
        assert hi.pts == lo.pts
        assert np.array_equal(hi.rgb, engine.process(lo.rgb))
    # Progress: stages in order, one upscaling event per frame with the newest frames for previews.
    stages = [e.stage for e in events]
    assert stages[0] == "loading" and stages[-1] == "done"
    assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]] == [
        "loading", "upscaling", "finishing", "verifying", "done"]
    ups = [e for e in events if e.stage == "upscaling"]
    assert [e.done for e in ups] == list(range(1, 15)) and all(e.total == 14 for e in ups)
    assert ups[-1].input_frame.shape == (32, 48, 3) and ups[-1].output_frame.shape == (128, 192, 3)
    assert ups[-1].fps is not None and ups[-1].eta_seconds == 0
    _assert_clean(tmp_path, out_dir, threads)


def test_preset_height_resizes_with_lanczos(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mkv", 336, 192, 25, 3, audio=None)
    job = plan(src, options(codec="ffv1", height=720), output=tmp_path / "up.mkv")
    assert (job.size.width, job.size.height) == (1260, 720) and job.size.resized
    result = run(job, tmp_path / "up.mkv")
    info = media.probe(result.output)
    assert (info.video.width, info.video.height) == (1260, 720) and info.video.frame_count == 3
    engine = BicubicUpscaler()
    for lo, hi in zip(decode(src), decode(result.output), strict=True):
        assert np.array_equal(hi.rgb, resize_rgb(engine.process(lo.rgb), 1260, 720))


def test_trim_cuts_video_and_audio_to_the_same_range(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 60, audio="aac")
    job = plan(src, options(start="0.5", end="1.2", preset="ultrafast"))
    # Frames whose time t = i * 1001/30000 satisfies 0.5 <= t < 1.2: i = 15 .. 35.
    assert job.frames == 21 and job.trimmed
    result = run(job, tmp_path / "trim.mp4")
    info = media.probe(result.output)
    assert result.frames == 21 and info.video.frame_count == 21
    assert info.video.avg_rate == RATE and info.video.start_time == 0
    assert float(info.video.duration) == pytest.approx(21 * 1001 / 30000)
    (audio,) = info.audio
    assert abs(audio.duration - info.video.duration) <= Fraction(1024, 48000) + Fraction(1001, 30000)
    assert result.report.ok


def test_scene_cut_resets_the_temporal_context_exactly_there(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "cut.mp4", 64, 48, RATE, 30, audio=None, scene_cut_at=20)
    engine = RecordingEngine()
    events: list[ProgressEvent] = []
    job = plan(src, options(scene_threshold=45, preset="ultrafast"), processor=engine)
    engine.calls.clear()  # the plan's calibration ran the engine too
    result = run(job, tmp_path / "out.mp4", processor=engine, on_progress=events.append)
    assert result.scene_cuts == (20,)
    assert engine.resets() == [20]
    assert engine.calls[:2] == [("start", 5), ("process", 0)]
    assert engine.calls.index(("reset", 20)) == engine.calls.index(("process", 20)) - 1
    assert [e.scene_cut for e in events if e.scene_cut is not None] == [20]

    off = RecordingEngine()
    job = plan(src, options(scene_cuts="off", preset="ultrafast"), processor=off)
    off.calls.clear()
    result = run(job, tmp_path / "off.mp4", processor=off)
    assert result.scene_cuts == () and off.resets() == []


def test_cancel_stops_within_one_frame_and_leaves_nothing(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 40, audio="aac")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    threads = job_threads()
    cancel = threading.Event()
    engine = CancellingEngine(cancel, cancel_at=6)
    job = plan(src, options(preset="ultrafast"), processor=engine)
    assert not cancel.is_set()
    with pytest.raises(JobCancelled):
        run(job, out_dir / "up.mp4", cancel=cancel, processor=engine)
    assert engine.processed == 7  # the frame during which Stop was pressed, and not one more
    assert list(out_dir.iterdir()) == []
    _assert_clean(tmp_path, out_dir, threads)


def test_cancel_before_start_writes_nothing(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 5, audio=None)
    cancel = threading.Event()
    cancel.set()
    engine = RecordingEngine()
    job = plan(src, options(), processor=engine)
    engine.calls.clear()
    with pytest.raises(JobCancelled):
        run(job, tmp_path / "up.mp4", cancel=cancel, processor=engine)
    assert engine.calls == [] and not (tmp_path / "up.mp4").exists()


def test_a_model_crash_mid_job_cleans_up_and_names_the_frame(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 30, audio="aac")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "up.mp4").write_bytes(b"an older result")  # must survive a failed job untouched
    threads = job_threads()
    engine = FailingEngine(fail_at=9)
    job = plan(src, options(preset="ultrafast"), output=out_dir / "up.mp4", processor=engine)
    with pytest.raises(JobFailed, match=r"in\.mp4: the bicubic engine failed on frame 9 \(0\.300 s\): RuntimeError: "
                                        r"CUDA error: device-side assert") as caught:
        run(job, out_dir / "up.mp4", processor=engine)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert (out_dir / "up.mp4").read_bytes() == b"an older result"
    _assert_clean(tmp_path, out_dir, threads)


def test_a_frame_with_nan_values_fails_the_job_with_the_fix_not_as_a_crash(tmp_path: Path, options) -> None:
    from vsr.model.errors import NonFiniteOutput

    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 12, audio=None)
    threads = job_threads()
    reason = NonFiniteOutput("The upscaled frame came out with NaN or infinite values on cpu in bf16 (optimisations "
                             "compile): ... Fix: use precision fp32, or leave compile ... out of the optimisations.")
    engine = FailingEngine(fail_at=4, error=reason)
    job = plan(src, options(preset="ultrafast"), processor=engine)
    with pytest.raises(JobFailed) as caught:
        run(job, tmp_path / "up.mp4", processor=engine)
    text = str(caught.value)
    assert text.startswith(f"{src}: frame 4 (0.133 s): The upscaled frame came out with NaN or infinite values")
    assert "Fix: use precision fp32" in text and text.endswith("Nothing was written.")
    assert "traceback" not in text and "NonFiniteOutput" not in text  # not a bug report
    assert not (tmp_path / "up.mp4").exists()
    _assert_clean(tmp_path, tmp_path, threads)


def test_an_encoder_failure_mid_job_cleans_up(tmp_path: Path, options, monkeypatch) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 20, audio=None)
    threads = job_threads()
    calls = {"n": 0}
    original = media.VideoWriter.write

    def failing_write(self, rgb, pts, duration=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise media.DiskFull(f"{self.dest}: the disk ran out of space (simulated).", self.dest)
        return original(self, rgb, pts, duration)

    monkeypatch.setattr(media.VideoWriter, "write", failing_write)
    job = plan(src, options(preset="ultrafast"))
    with pytest.raises(media.DiskFull, match="ran out of space"):
        run(job, tmp_path / "up.mp4")
    assert not (tmp_path / "up.mp4").exists()
    _assert_clean(tmp_path, tmp_path, threads)


def test_engines_are_loaded_once_per_process(options) -> None:
    from vsr.model.engines import clear_processors, get_processor, processor_key

    clear_processors()
    first = get_processor(options(seed=1))
    assert get_processor(options(seed=2, codec="hevc")) is first  # seed and encoding do not reload the model
    assert processor_key(options(steps=2)) == ("bicubic",)
    assert processor_key(options(engine="stream-diffvsr", steps=2)) != processor_key(
        options(engine="stream-diffvsr", steps=4))
    clear_processors()
    assert get_processor(options()) is not first
    clear_processors()
