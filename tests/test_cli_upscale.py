"""`vsr upscale` end to end with the bicubic engine: plan first, report last, exact output, nothing left behind."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from job_support import decode, files_under, isolate_environment
from media_factory import make_video
from vsr.model.bicubic import BicubicUpscaler
from vsr.cli import EXIT_CANCELLED, main

ROOT = Path(__file__).resolve().parent.parent
RATE = Fraction(30000, 1001)


def _no_png(folder: Path) -> None:
    assert [p for p in files_under(folder) if p.suffix.lower() == ".png"] == [], "a PNG was written"


def test_upscale_a_generated_clip(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mkv", 40, 24, RATE, 20, audio="aac", subtitles="srt")
    out = tmp_path / "out.mkv"
    code = main(["upscale", str(src), "-o", str(out), "--seed", "11", "--codec", "ffv1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stdout = captured.out.splitlines()
    assert stdout[0].startswith("Input:    in.mkv: 40x24") and any(l.startswith("Estimate:") for l in stdout)
    assert "Track:    audio #1: aac, copied unchanged" in captured.out
    # Bicubic draws no noise and has no temporal context: no seed to repeat, no scene-cut lines.
    (done,) = [line for line in stdout if line.startswith("Done:")]
    assert done.startswith("Done:     20 frames in ") and "frames/s" in done
    assert "seed" not in captured.out and "Scenes:" not in captured.out and "scene cut" not in captured.out
    assert stdout[-1].startswith("  [ok] subtitles") and "out.mkv: all 11 checks passed." in captured.out
    assert "upscaling" in captured.err and "100%" in captured.err  # the tqdm bar
    info = media.probe(out)
    assert (info.video.width, info.video.height) == (160, 96) and info.video.frame_count == 20
    assert info.video.avg_rate == RATE
    assert [a.codec for a in info.audio] == ["aac"] and [s.codec for s in info.subtitles] == ["subrip"]
    engine = BicubicUpscaler()
    assert all(np.array_equal(hi.rgb, engine.process(lo.rgb)) for lo, hi in zip(decode(src), decode(out), strict=True))
    assert files_under(tmp_path / "tmp") == []
    _no_png(tmp_path)


def test_an_existing_output_needs_overwrite(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 4, audio=None)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    assert main(["upscale", str(src), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"vsr: error: {out} already exists. Pass --overwrite to replace it, or choose another name.")
    assert out.read_bytes() == b"keep me"
    assert main(["upscale", str(src), "-o", str(out), "--overwrite", "--preset", "ultrafast"]) == 0
    assert media.probe(out).video.width == 128


@pytest.mark.slow
def test_gradio_sample_video_trimmed_with_audio_in_sync(tmp_path: Path, monkeypatch, gradio_videos: Path,
                                                        capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    src = gradio_videos / "b.mp4"  # 480x270, 30 fps, AAC
    out = tmp_path / "b_720.mp4"
    code = main(["upscale", str(src), "-o", str(out), "--engine", "bicubic", "--height", "720", "--start", "1",
                 "--end", "1.5", "--preset", "ultrafast", "--crf", "30"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    info = media.probe(out)
    assert (info.video.width, info.video.height) == (1280, 720)
    assert info.video.frame_count == 15 and info.video.avg_rate == 30
    (audio,) = info.audio
    assert audio.codec == "aac"
    assert abs(audio.start_time - info.video.start_time) <= Fraction(1, 30)
    assert abs(audio.duration - Fraction(1, 2)) <= Fraction(1, 30) + Fraction(1024, audio.sample_rate)
    assert "[ok] audio track 1 sync" in captured.out
    assert files_under(tmp_path / "tmp") == []
    _no_png(tmp_path)


def test_gradio_sample_without_audio(tmp_path: Path, monkeypatch, gradio_videos: Path, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    out = tmp_path / "muted.mp4"
    code = main(["upscale", str(gradio_videos / "muted_b.mp4"), "-o", str(out), "--engine", "bicubic",
                 "--end", "0.2", "--preset", "ultrafast"])
    assert code == 0, capsys.readouterr().err
    info = media.probe(out)
    assert (info.video.width, info.video.height, info.video.frame_count) == (1920, 1080, 6) and info.audio == ()


@pytest.mark.slow
def test_ctrl_c_cancels_cleans_up_and_exits_130(tmp_path: Path) -> None:
    src = make_video(tmp_path / "long.mp4", 64, 48, 30, 900, audio="aac")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(tmp_path / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(tmp_path / "cache"),
               STREAM_DIFFVSR_ENGINE="bicubic")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vsr", "upscale", str(src), "-o", str(out_dir / "up.mp4"), "--preset", "ultrafast"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out_dir.glob(".up.*.partial.mp4")):  # the writer has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job never started writing"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_CANCELLED, stderr
    assert stderr.strip().splitlines()[-1] == "vsr: error: cancelled; partial output and temporary files were removed."
    assert stdout.startswith("Input:    long.mp4")
    assert list(out_dir.iterdir()) == []
    assert files_under(tmp_path / "tmp") == []


def test_the_done_line_names_seed_and_cuts_only_for_the_diffusion_engine() -> None:
    from types import SimpleNamespace

    from vsr.cli import done_line

    result = SimpleNamespace(frames=600, seconds=600.0, seed=42, scene_cuts=(120, 300))
    assert done_line(result, SimpleNamespace(temporal=True)) == (
        "Done:     600 frames in 10 min (1.00 frames/s); seed 42; scene cuts at frames: 120, 300")
    assert done_line(result, SimpleNamespace(temporal=False)) == "Done:     600 frames in 10 min (1.00 frames/s)"


def test_log_lines_during_the_job_go_above_the_bar_not_into_it(capsys) -> None:
    """A warning while the bar is drawn is printed on its own line (tqdm.write), then the bar again;
    the bar ends with the same words and numbers as the web page's status line."""
    from vsr.cli import _ProgressBar, _configure_logging
    from vsr.job.progress import ProgressEvent, counter_text

    _configure_logging("WARNING")
    with _ProgressBar(10, scene_cuts=False) as bar:
        bar.update(ProgressEvent("loading", 0, 10))
        for done in range(1, 5):
            bar.update(ProgressEvent("upscaling", done, 10, 2.0, (10 - done) / 2))
        logging.getLogger("media.reader").warning("in.webm: the alpha channel is dropped")
        bar.update(ProgressEvent("upscaling", 5, 10, 2.0, 2.5, scene_cut=5))
    err = capsys.readouterr().err
    pieces = [piece for line in err.split("\n") for piece in line.split("\r")]
    (warning,) = [piece for piece in pieces if "alpha channel" in piece]
    assert warning.endswith("WARNING media.reader: in.webm: the alpha channel is dropped") and "%|" not in warning
    assert any(piece.startswith("upscaling:  50%|") and piece.endswith(counter_text(5, 10, 2.0, 2.5))
               for piece in pieces), pieces
    assert "scene cut" not in err  # bicubic has no temporal context to reset
    root = logging.getLogger()
    assert any(type(h) is logging.StreamHandler for h in root.handlers)  # the terminal handler is back
