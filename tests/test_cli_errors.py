"""Every error path of the CLI: one line on stderr naming the problem and the fix, and its exit code."""

from __future__ import annotations

import json
import logging
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import media
import vsr.job
import vsr.model.engines
from job_support import FailingEngine, files_under, isolate_environment
from media_factory import make_audio_only, make_video
from vsr.cli import EXIT_CODES, build_parser, main


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch):
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4", 64, 48, 25, 10, audio="aac")


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def _one_line(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, f"expected one line on stderr, got: {err}"
    return code, err[0]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ([], 2, r"vsr: error: the following arguments are required: \{upscale,batch,stream,frames,probe\}\. Run `vsr --help`"),
        (["upscale", "in.mp4", "-o", "o.mp4", "--bogus"], 2, r"unrecognized arguments: --bogus"),
        (["upscale", "in.mp4"], 2, r"vsr upscale: error: the following arguments are required: -o/--output"),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--steps", "0"], 2,
         r"vsr: error: steps='0' is out of range: it must be between 1 and 50"),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--height", "900"], 2,
         r"height='900' is not an output size\. Use 4x or a height: 720, 1080, 1440, 2160\."),
        (["upscale", "{clip}", "-o", "{tmp}/o.mov", "--codec", "prores", "--crf", "20"], 2,
         r"crf=20 does not apply to prores .* Leave crf unset\."),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--preset", "warp"], 2,
         r"preset='warp' is not the default codec's \(h264, or hevc for a deep or HDR source\) preset\. Use one of: ultrafast"),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--start", "1:75"], 2, r"minutes and seconds must be below 60"),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--flow-scale", "0.3"], 2,
         r"flow_scale='0\.3' is not a flow scale\. Use one of: 1, 0\.5, 0\.25"),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--log-level", "LOUD"], 2, r"Log level 'LOUD' is not valid"),
        (["upscale", "{tmp}/missing.mp4", "-o", "{tmp}/o.mp4"], 3, r"missing\.mp4: no such file\. Check the path\."),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--height", "720"], 3,
         r"720p output needs 15\.00x .* Choose a smaller size or 4x\."),
        (["upscale", "{clip}", "-o", "{tmp}/o.mp4", "--start", "5"], 3,
         r"start 5 s is at or past the end of the video \(0\.400 s\)\. Give a start time inside the video\."),
        (["upscale", "{clip}", "-o", "{tmp}/o.avi"], 3, r"A \.avi file cannot hold h264 video here; use \.mp4"),
        (["upscale", "{clip}", "-o", "{tmp}/no/such/dir/o.mp4"], 3,
         r"dir: the output folder does not exist\. Create it or choose another output path\."),
        (["probe", "{tmp}/missing.mp4"], 3, r"missing\.mp4: no such file"),
    ],
)
def test_error_lines_and_exit_codes(argv, code, message, clip: Path, tmp_path: Path, capsys) -> None:
    argv = [a.format(clip=clip, tmp=tmp_path) for a in argv]
    got, line = _run(capsys, *argv)
    assert got == code and code in EXIT_CODES
    assert line.startswith("vsr") and ": error: " in line
    assert __import__("re").search(message, line), line
    assert files_under(tmp_path / "tmp") == []
    assert not (tmp_path / "o.mp4").exists()


def test_not_a_video(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    code, line = _one_line(capsys, "upscale", str(text), "-o", str(tmp_path / "o.mp4"))
    assert code == 3 and "notes.mp4: not a video FFmpeg can read" in line


def test_audio_only(tmp_path: Path, capsys) -> None:
    audio = make_audio_only(tmp_path / "song.m4a")
    code, line = _one_line(capsys, "upscale", str(audio), "-o", str(tmp_path / "o.mp4"))
    assert code == 3 and "an audio-only file, there is no video stream to upscale. Choose a video file." in line


def test_limits_from_the_environment(clip: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STREAM_DIFFVSR_MAX_INPUT_PIXELS", "1000")
    code, line = _one_line(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 3 and "over the limit of 1000 input pixels" in line and "STREAM_DIFFVSR_MAX_INPUT_PIXELS" in line
    monkeypatch.setenv("STREAM_DIFFVSR_MAX_INPUT_PIXELS", "lots")
    code, line = _one_line(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 2 and "STREAM_DIFFVSR_MAX_INPUT_PIXELS='lots' is not a whole number" in line


def test_model_that_cannot_be_loaded(clip: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, line = _one_line(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"), "--engine", "stream-diffvsr",
                           "--model-id", str(empty), "--device", "cpu")
    assert code == 4, line
    assert "empty-model" in line


def test_a_crash_mid_job_exits_5(clip: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(vsr.model.engines, "get_processor", lambda options: FailingEngine(fail_at=3))
    code, line = _run(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 5
    assert line == (f"vsr: error: {clip}: the bicubic engine failed on frame 3 (0.120 s): RuntimeError: CUDA error: "
                    "device-side assert triggered (simulated). Nothing was written; see the log for the traceback.")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tmp") == ["cache", "clip.mp4"]  # no checkpoint
    assert not (tmp_path / "tmp").exists() or files_under(tmp_path / "tmp") == []


def test_a_failed_verification_exits_5_and_saves_no_output(clip: Path, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    def bad_verify(source, output, expected):
        return media.VerifyReport(Path(output), (media.Check("frames", False, "9 frames, expected 10"),))

    monkeypatch.setattr(sys.modules["media.verify"], "verify", bad_verify)  # the module's, which the join calls
    code, line = _run(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 5
    assert "o.mp4: the finished video failed verification (frames: 9 frames, expected 10), so it was not saved." in line
    assert not (tmp_path / "o.mp4").exists()
    assert not any(p.name.endswith(".mp4") and p.name != "clip.mp4" for p in tmp_path.iterdir())  # no temporary file


def test_an_unexpected_error_is_a_bug_with_exit_1(clip: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(vsr.job, "run", broken)
    code, line = _run(capsys, "upscale", str(clip), "-o", str(tmp_path / "o.mp4"))
    assert code == 1
    assert line == ("vsr: error: unexpected ZeroDivisionError: division by zero. This is a bug; rerun with "
                    "--log-level DEBUG and report it.")


def test_probe_prints_json(clip: Path, capsys) -> None:
    assert main(["probe", str(clip)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["video"]["width"] == 64 and data["video"]["avg_rate"] == "25/1" and data["video"]["frame_count"] == 10
    assert data["audio"][0]["codec"] == "aac"


def test_help_lists_the_exit_codes(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "130 cancelled with Ctrl-C" in out
    assert build_parser().prog == "vsr"


@pytest.mark.parametrize("argv", [["--help"], ["upscale", "--help"], ["stream", "--help"], ["upscale", "--bogus"]])
def test_help_and_a_mistyped_flag_answer_without_loading_torch(argv: list[str]) -> None:
    """``vsr --help`` took 2 s: vsr.cli loaded torch through the vsr.job package (now loaded name by name)."""
    import subprocess

    code = ("import sys\nfrom vsr.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'av', 'gradio', 'diffusers') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
    assert "usage: vsr" in done.stdout or "Run `vsr upscale --help` for the flags" in done.stderr
