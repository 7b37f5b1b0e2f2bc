"""`vsr upscale --resume` through the real command line: kill -9 mid-job, run it again, same frames.

The job runs in a subprocess with a checkpoint every few hundredths of a second of work; the test
waits for a checkpoint, kills the process (SIGKILL: no clean-up code runs, as after a power cut),
then runs the same command with --resume and compares every decoded frame with an uninterrupted
run's (FFV1 and a fixed seed: identical).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from job_support import files_under, isolate_environment
from media_factory import make_video
from vsr.cli import EXIT_CANCELLED, EXIT_USAGE, main
from vsr.job import checkpoint

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 900.0  # the tiny model on a shared 2-core machine: minutes


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(tmp_path / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(tmp_path / "cache"),
               STREAM_DIFFVSR_CHECKPOINT_SECONDS="0.05", PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), **extra)  # 1 per pytest-xdist worker
    return env


@contextlib.contextmanager
def _started(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """``vsr ARGV`` running in a subprocess; killed if the test fails before it ends."""
    proc = subprocess.Popen([sys.executable, "-m", "vsr", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def _wait_for_checkpoint(proc: subprocess.Popen, folder: Path, frames: int) -> int:
    """Poll until ``folder`` holds a checkpoint of at least ``frames`` frames; returns its frame count."""
    deadline = time.monotonic() + WAIT_S
    while True:
        assert proc.poll() is None, "the job ended before it was killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        if checkpoint.exists(folder):
            try:
                done = checkpoint.load(folder).next_index
            except Exception:  # noqa: BLE001 - a checkpoint is replaced by rename: read it again
                done = 0
            if done >= frames:
                return done
        time.sleep(0.02)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=WAIT_S)


def _same_frames(a: Path, b: Path) -> int:
    count = 0
    with media.FrameReader(a) as first, media.FrameReader(b) as second:
        for x, y in zip(first, second, strict=True):
            assert x.pts == y.pts and np.array_equal(x.rgb, y.rgb), f"frame {x.index} differs"
            count += 1
    return count


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_frames(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 160, 90, 25, 150, audio="aac")
    env = _env(tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    argv = [str(src), "--codec", "ffv1", "--seed", "3"]
    whole = _run(["upscale", *argv, "-o", str(tmp_path / "whole.mkv")], env)
    assert whole.returncode == 0, whole.stderr

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "up.mkv"
    folder = out_dir / ".up.mkv.vsr-checkpoint"
    with _started(["upscale", *argv, "-o", str(out)], env) as proc:
        _wait_for_checkpoint(proc, folder, frames=10)
        _kill(proc)
    saved = checkpoint.load(folder)
    assert 10 <= saved.next_index < 150 and not out.exists()

    again = _run(["upscale", *argv, "-o", str(out)], env)  # without --resume: named, nothing touched
    assert again.returncode == EXIT_USAGE
    assert again.stderr.strip().splitlines()[-1] == (
        f"vsr: error: {folder}: a previous run stopped at frame {saved.next_index} of 150; add --resume to continue, "
        "or --overwrite to start over.")
    other = _run(["upscale", *argv, "--scene-cuts", "off", "-o", str(out), "--resume"], env)
    assert other.returncode == EXIT_USAGE and "other options: scene_cuts True then, False now" in other.stderr

    resumed = _run(["upscale", *argv, "-o", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resume:   going on from frame {saved.next_index} of 150" in resumed.stdout
    assert re.search(r"^up\.mkv: all \d+ checks passed\.$", resumed.stdout, re.M), resumed.stdout
    assert _same_frames(tmp_path / "whole.mkv", out) == 150
    assert [a.codec for a in media.probe(out).audio] == ["aac"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["up.mkv"], "no checkpoint or partial file is left"
    assert files_under(tmp_path / "tmp") == []


@pytest.mark.slow
def test_ctrl_c_keeps_a_checkpoint_and_resume_finishes_a_verified_h264_file(tmp_path: Path) -> None:
    src = make_video(tmp_path / "long.mp4", 64, 48, 30, 900, audio="aac")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = _env(tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    argv = ["upscale", str(src), "-o", str(out_dir / "up.mp4"), "--preset", "ultrafast"]
    folder = out_dir / ".up.mp4.vsr-checkpoint"
    with _started(argv, env) as proc:
        _wait_for_checkpoint(proc, folder, frames=1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CANCELLED, stderr
    saved = checkpoint.load(folder)
    assert stderr.strip().splitlines()[-1] == (
        f"vsr: error: stopped at frame {saved.next_index} of 900; the work so far is kept in {folder}. Run the same "
        "command with --resume to go on (or --overwrite to start over).")
    assert stdout.startswith("Input:    long.mp4")
    assert sorted(p.name for p in out_dir.iterdir()) == [folder.name]
    assert files_under(tmp_path / "tmp") == []

    resumed = _run([*argv, "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    info = media.probe(out_dir / "up.mp4")
    assert info.video.frame_count == 900 and info.video.avg_rate == 30 and [a.codec for a in info.audio] == ["aac"]
    assert re.search(r"^up\.mp4: all \d+ checks passed\.$", resumed.stdout, re.M) and not folder.exists()


def test_overwrite_starts_over_and_resume_without_a_checkpoint_starts_fresh(tmp_path: Path, monkeypatch,
                                                                              capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 6, audio=None)
    out = tmp_path / "o.mkv"
    folder = checkpoint.checkpoint_dir_for(out)
    assert folder == tmp_path / ".o.mkv.vsr-checkpoint"
    folder.mkdir()
    (folder / "segment-00000.mkv").write_bytes(b"a stale segment")  # a run killed before its first checkpoint
    assert main(["upscale", str(src), "-o", str(out), "--codec", "ffv1"]) == EXIT_USAGE
    assert "a previous run stopped; add --resume to continue, or --overwrite to start over" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(out), "--codec", "ffv1", "--overwrite"]) == 0
    assert "Removed:  the checkpoint in" in capsys.readouterr().out and not folder.exists()
    out.unlink()
    assert main(["upscale", str(src), "-o", str(out), "--codec", "ffv1", "--resume"]) == 0
    assert "no checkpoint of a previous run; starting from the beginning" in capsys.readouterr().out
    assert media.probe(out).video.frame_count == 6 and not folder.exists()


def _cache_a_speed(cache_dir: Path, fixture_dir: Path) -> None:
    """Record a speed for the fixture model on this machine, so the command line's plan does not
    spend a dozen frames measuring it (the subprocesses run with as many threads as this one does here)."""
    from vsr.job import estimate
    from vsr.model import load_engine

    engine = load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"), device="cpu", precision="fp32",
                         flow_weights=fixture_dir / "raft_large.safetensors")
    for width, height in (*estimate.BASE_SIZES, (48, 32)):
        estimate.record(cache_dir, [estimate.cache_key(engine)], width, height, 1.0)


@pytest.mark.slow
def test_the_diffusion_model_resumes_after_kill_9(tmp_path: Path, fixture_dir: Path, model_threads) -> None:
    _cache_a_speed(tmp_path / "cache", fixture_dir)
    src = make_video(tmp_path / "in.mp4", 48, 32, Fraction(25), 5, audio="aac")
    env = _env(tmp_path, STREAM_DIFFVSR_ENGINE="stream-diffvsr", STREAM_DIFFVSR_DEVICE="cpu",
               STREAM_DIFFVSR_PRECISION="fp32", HF_HUB_OFFLINE="1",
               STREAM_DIFFVSR_MODEL_ID=str(fixture_dir / "model"),
               STREAM_DIFFVSR_FLOW_WEIGHTS=str(fixture_dir / "raft_large.safetensors"))
    argv = [str(src), "--codec", "ffv1", "--seed", "1234", "--scene-cuts", "off"]
    whole = _run(["upscale", *argv, "-o", str(tmp_path / "whole.mkv")], env)  # also caches the speed estimate
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "up.mkv"
    with _started(["upscale", *argv, "-o", str(out)], env) as proc:
        done = _wait_for_checkpoint(proc, checkpoint.checkpoint_dir_for(out), frames=2)
        _kill(proc)
    assert done < 5
    resumed = _run(["upscale", *argv, "-o", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resume:   going on from frame {done} of 5" in resumed.stdout
    assert _same_frames(tmp_path / "whole.mkv", out) == 5


def test_a_damaged_checkpoint_never_hides_the_jobs_own_error(tmp_path: Path) -> None:
    """A job that fails next to an unreadable checkpoint reports its own failure (no note, no other error)."""
    from vsr import cli
    from vsr.job import checkpoint
    from vsr.job.errors import JobFailed

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / checkpoint.FILE).write_bytes(b"not a pickle")
    error = JobFailed("clip.mp4: the encoder failed on frame 7")
    cli._note_checkpoint(error, folder)
    assert cli.describe_error(error) == (cli.EXIT_JOB, "clip.mp4: the encoder failed on frame 7")
    interrupted = cli._interrupted(folder)
    assert isinstance(interrupted, KeyboardInterrupt)  # nothing readable kept: a plain cancel
