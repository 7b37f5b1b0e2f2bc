"""Jobs that stop and go on: checkpoints, resume after a cancel or a crash, pieces, refusals.

Outputs are FFV1 where frames are compared: a resumed job must give exactly the frames (and
timestamps) of an uninterrupted one with the same seed.
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from job_support import CancellingEngine, FailingEngine, RecordingEngine, decode, files_under, plan
from media_factory import make_video
from model_helpers import FIXTURE_SEED
from vsr.job import JobCancelled, JobFailed, checkpoint, run
from vsr.job.errors import CheckpointMismatch
from vsr.job.runner import FINISH_ALLOWANCE_S, CallLimit, JobPaused, finish_job, run_piece
from vsr.model.bicubic import BicubicUpscaler
from vsr.options import build_options

RATE = Fraction(25)  # (short 30000/1001 Matroska outputs need the media branch's exact-rate probe)


@pytest.fixture
def options(tmp_path: Path):
    def make(**overrides):
        values = {"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache", "seed": 5,
                  "codec": "ffv1", "checkpoint_seconds": 0}
        values.update(overrides)
        return build_options(values, env={})

    return make


def _same_video(a: Path, b: Path) -> None:
    first, second = decode(a), decode(b)
    assert [f.pts for f in first] == [f.pts for f in second]
    for x, y in zip(first, second, strict=True):
        assert np.array_equal(x.rgb, y.rgb), f"frame {x.index} differs"


def test_a_cancelled_job_resumes_to_the_uninterrupted_frames(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mkv", 48, 32, RATE, 24, audio="aac", subtitles="srt")
    job = plan(src, options(), output=tmp_path / "whole.mkv")
    whole = run(job, tmp_path / "whole.mkv")

    folder = tmp_path / "ckpt"
    cancel = threading.Event()
    with pytest.raises(JobCancelled) as stopped:
        run(job, tmp_path / "resumed.mkv", cancel=cancel, processor=CancellingEngine(cancel, cancel_at=9),
            checkpoint_dir=folder)
    assert (stopped.value.checkpoint, stopped.value.done, stopped.value.total) == (folder, 10, 24)
    assert "kept in" in str(stopped.value) and not (tmp_path / "resumed.mkv").exists()
    saved = checkpoint.load(folder)
    assert saved.where() == "frame 10 of 24" and saved.seed == 5 and not saved.complete
    assert saved.next_pts == decode(src)[10].pts
    assert [p.name for p in files_under(folder)] == ["checkpoint.pkl", "segment-00000.mkv"]

    events = []
    result = run(job, tmp_path / "resumed.mkv", checkpoint_dir=folder, resume=saved, processor=RecordingEngine(),
                 on_progress=events.append)
    assert result.frames == 24 and result.report.ok and result.seed == whole.seed
    assert events[0].message == "resuming at frame 10 of 24" and events[0].done == 10
    assert [e.done for e in events if e.stage == "upscaling"] == list(range(11, 25))
    _same_video(whole.output, result.output)
    assert [(s.kind, s.action) for s in result.write.streams] == [(s.kind, s.action) for s in whole.write.streams]
    assert not folder.exists(), "a finished job leaves no checkpoint behind"


def test_a_crash_leaves_the_last_checkpoint_and_resumes(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 30, audio="aac", scene_cut_at=16)
    job = plan(src, options(checkpoint_seconds="0.000001", scene_threshold=45), output=tmp_path / "whole.mkv")
    whole = run(job, tmp_path / "whole.mkv")
    assert whole.scene_cuts == (16,)

    folder = tmp_path / "ckpt"
    with pytest.raises(JobFailed):
        run(job, tmp_path / "out.mkv", processor=FailingEngine(fail_at=12), checkpoint_dir=folder)
    saved = checkpoint.load(folder)
    assert 1 <= saved.next_index <= 12  # committed before the crash; the crashed frame's work is not in it
    assert sum(s.frames for s in saved.segments) == saved.next_index
    stray = folder / "segment-99999.mkv"
    stray.write_bytes(b"left by a dead process")
    result = run(job, tmp_path / "out.mkv", checkpoint_dir=folder, resume=saved)
    assert result.scene_cuts == (16,) and not stray.exists()
    _same_video(whole.output, result.output)


def test_a_checkpoint_of_other_options_or_another_input_is_refused(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 12, audio=None)
    job = plan(src, options(), output=tmp_path / "out.mkv")
    folder = tmp_path / "ckpt"
    cancel = threading.Event()
    with pytest.raises(JobCancelled):
        run(job, tmp_path / "out.mkv", cancel=cancel, processor=CancellingEngine(cancel, cancel_at=3),
            checkpoint_dir=folder)
    saved = checkpoint.load(folder)
    other = plan(src, options(scene_threshold=40), output=tmp_path / "out.mkv")
    with pytest.raises(CheckpointMismatch, match=r"other options: scene_threshold 27\.0 then, 40\.0 now\. Run it as "
                                                 r"it was started, or start over"):
        run(other, tmp_path / "out.mkv", checkpoint_dir=folder, resume=saved)
    with pytest.raises(CheckpointMismatch, match="made with seed 5, not 6"):
        run(plan(src, options(seed=6), output=tmp_path / "out.mkv"), tmp_path / "out.mkv", checkpoint_dir=folder,
            resume=saved)
    changed = make_video(tmp_path / "in.mp4", 64, 48, RATE, 12, audio=None, crf=30)
    with pytest.raises(CheckpointMismatch, match=r"another input \(in\.mp4 has (size|sha256) "):
        run(plan(changed, options(), output=tmp_path / "out.mkv"), tmp_path / "out.mkv", checkpoint_dir=folder,
            resume=saved)
    assert checkpoint.exists(folder) and not (tmp_path / "out.mkv").exists()  # refused: nothing touched


def test_a_cancel_before_any_frame_keeps_nothing(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 6, audio=None)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled) as stopped:
        run(plan(src, options()), tmp_path / "out.mkv", cancel=cancel, checkpoint_dir=tmp_path / "ckpt")
    assert stopped.value.checkpoint is None and "removed" in str(stopped.value)
    assert not (tmp_path / "ckpt").exists() and files_under(tmp_path / "tmp") == []


def test_pieces_hand_over_a_checkpoint_and_join_at_the_end(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 23, audio="aac")
    job = plan(src, options(start="0.08"), output=tmp_path / "out.mkv")  # trimmed: frames 2..22
    whole = run(job, tmp_path / "whole.mkv")
    folder = tmp_path / "job"
    handover, pieces = None, 0
    while True:
        outcome = run_piece(job, tmp_path / "out.mkv", checkpoint_dir=folder, resume=handover,
                            limit=CallLimit(frames=8), finish=False, processor=BicubicUpscaler())
        assert isinstance(outcome, JobPaused)
        pieces += 1
        handover = pickle.loads(pickle.dumps(outcome.checkpoint))  # to another process and back
        if outcome.complete:
            break
    assert pieces == 3 and handover.next_index == 21 and len(handover.segments) == 3
    result = finish_job(job, tmp_path / "out.mkv", folder, handover)
    assert result.report.ok and result.frames == 21
    _same_video(whole.output, result.output)
    assert not folder.exists()


def test_h264_with_many_segments_is_a_verified_file(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 20, audio="aac")
    job = plan(src, options(codec="h264", preset="ultrafast"), output=tmp_path / "out.mp4")
    folder, handover = tmp_path / "job", None
    for _ in range(4):
        outcome = run_piece(job, tmp_path / "out.mp4", checkpoint_dir=folder, resume=handover,
                            limit=CallLimit(frames=5), finish=False)
        handover = outcome.checkpoint
    assert handover.complete and [s.frames for s in handover.segments] == [5, 5, 5, 5]
    result = run(job, tmp_path / "out.mp4", checkpoint_dir=folder, resume=handover)  # only the join is left
    info = media.probe(result.output)
    assert result.report.ok and info.video.frame_count == 20 and info.video.avg_rate == RATE
    assert [a.codec for a in info.audio] == ["aac"]


@pytest.mark.slow
def test_the_diffusion_model_resumes_to_the_same_frames(tmp_path: Path, options, fixture_dir: Path,
                                                        model_threads) -> None:
    from vsr.model import load_engine

    def engine():
        return load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"),
                           flow_weights=fixture_dir / "raft_large.safetensors", device="cpu", precision="fp32")

    src = make_video(tmp_path / "in.mp4", 48, 32, RATE, 5, audio="aac")
    opts = options(engine="stream-diffvsr", model_id=str(fixture_dir / "model"), seed=FIXTURE_SEED,
                   flow_weights=str(fixture_dir / "raft_large.safetensors"), device="cpu", precision="fp32",
                   scene_cuts="off")
    job = dataclasses.replace(plan(src, options(), output=tmp_path / "whole.mkv"), options=opts)  # no timing run
    first = engine()
    whole = run(job, tmp_path / "whole.mkv", processor=first)
    folder = tmp_path / "ckpt"
    outcome = run_piece(job, tmp_path / "out.mkv", processor=first, checkpoint_dir=folder,
                        limit=CallLimit(frames=2), finish=False)
    handover = pickle.loads(pickle.dumps(outcome.checkpoint))
    stream = handover.stream["state"]
    assert stream["frames"] == 2 and stream["previous_output"].device.type == "cpu"
    result = run(job, tmp_path / "out.mkv", processor=engine(), checkpoint_dir=folder, resume=handover)
    _same_video(whole.output, result.output)


class SleepyEngine(BicubicUpscaler):
    """Bicubic that takes at least 0.05 s a frame (a model slower than its estimate)."""

    def process(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super().process(rgb)


def test_a_piece_stops_before_its_deadline_with_a_checkpoint(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 200, audio=None)  # at least 10 s of work
    job = plan(src, options(), output=tmp_path / "out.mkv")
    limit = CallLimit(deadline=time.monotonic() + FINISH_ALLOWANCE_S + 1.0)
    outcome = run_piece(job, tmp_path / "out.mkv", processor=SleepyEngine(), checkpoint_dir=tmp_path / "job",
                        limit=limit, finish=False)
    assert isinstance(outcome, JobPaused) and 1 <= outcome.checkpoint.next_index < 200
    assert checkpoint.load(tmp_path / "job").next_index == outcome.checkpoint.next_index


def test_a_checkpoint_half_written_by_a_dead_process_is_a_stray_and_nothing_else_is(tmp_path: Path) -> None:
    """A kill -9 inside ``checkpoint.save`` leaves write_durably's temporary file: it is cleaned up, while a
    file the user put in the folder is not touched."""
    from media.writer import temp_path_for

    folder = tmp_path / "ckpt"
    folder.mkdir()
    half = temp_path_for(folder / checkpoint.FILE)
    half.write_bytes(b"\x80\x05half a pickle")
    (folder / "notes.txt").write_text("mine")
    assert checkpoint.clean_strays(folder, None) == [half.name]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
