"""The media bugs of issue 12 seen as a user sees them: `vsr upscale ... --engine bicubic` and `vsr probe`
on generated clips (exit code, what is printed, and the file that comes out)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

import media
from job_support import isolate_environment
from media_factory import make_picture, make_video
from vsr.cli import EXIT_INPUT, EXIT_OK, main


@pytest.fixture
def vsr(tmp_path: Path, monkeypatch, capsys):
    """``vsr(*argv) -> (exit code, stdout, stderr)``: the command line in this process, clean environment."""
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")

    def run(*argv: str | Path) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# -- point 4: a still picture is not a one-frame video ---------------------------------------------

@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_upscale_refuses_a_picture_named_mp4(tmp_path: Path, vsr, kind: str) -> None:
    src = make_picture(tmp_path / "holiday.mp4", kind)
    out = tmp_path / "out.mp4"
    code, stdout, stderr = vsr("upscale", src, "-o", out, "--engine", "bicubic")
    assert code == EXIT_INPUT, stderr
    assert stderr.startswith(f"vsr: error: {src}: this is a still picture")
    assert "not a video" in stderr and "Choose a video file" in stderr
    assert not out.exists() and stdout == ""


# -- point 3: a source with alpha is planned with a note that the alpha is dropped -----------------

ALPHA_NOTE = "the source's transparency (alpha channel) is dropped"


@pytest.mark.parametrize(("name", "codec"), [("alpha.webm", "libvpx-vp9"), ("alpha.mkv", "ffv1")])
def test_upscale_plan_says_alpha_is_dropped(tmp_path: Path, vsr, name: str, codec: str) -> None:
    src = make_video(tmp_path / name, 32, 24, 25, 3, codec=codec, pix_fmt="yuva420p", audio=None)
    out = tmp_path / "out.mkv"
    code, stdout, stderr = vsr("upscale", src, "-o", out, "--engine", "bicubic", "--codec", "ffv1")
    assert code == EXIT_OK, stderr
    assert any(line.startswith("Note:") and ALPHA_NOTE in line for line in stdout.splitlines()), stdout
    assert media.probe(out).video.frame_count == 3 and not media.probe(out).video.has_alpha


def test_plan_on_the_web_page_says_alpha_is_dropped(tmp_path: Path) -> None:
    from job_support import plan
    from vsr.options import build_options
    from vsr.web import texts

    src = make_video(tmp_path / "alpha.webm", 32, 24, 25, 3, codec="libvpx-vp9", pix_fmt="yuva420p", audio=None)
    options = build_options({"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache"},
                            env={})
    job = plan(src, options, output=tmp_path / "out.mp4")
    assert any(ALPHA_NOTE in note for note in job.notes)
    assert ALPHA_NOTE in job.to_text() and ALPHA_NOTE in texts.plan_markdown(job)


def test_probe_reports_vp9_alpha(tmp_path: Path, vsr) -> None:
    src = make_video(tmp_path / "alpha.webm", 32, 24, 25, 3, codec="libvpx-vp9", pix_fmt="yuva420p", audio=None)
    code, stdout, stderr = vsr("probe", src)
    assert code == EXIT_OK, stderr
    assert json.loads(stdout)["video"]["has_alpha"] is True


def test_opaque_source_has_no_alpha_note(tmp_path: Path, vsr) -> None:
    src = make_video(tmp_path / "opaque.webm", 32, 24, 25, 3, codec="libvpx-vp9", audio=None)
    code, stdout, stderr = vsr("upscale", src, "-o", tmp_path / "out.mkv", "--engine", "bicubic", "--codec", "ffv1")
    assert code == EXIT_OK, stderr
    assert "alpha" not in stdout


# -- point 2: a short piece of 30 fps video in Matroska/WebM stays exactly 30 fps -----------------

@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "ffv1"), (".mkv", "prores"), (".webm", "av1")])
@pytest.mark.parametrize("rate", [Fraction(30), Fraction(30000, 1001)], ids=str)
def test_upscale_a_half_second_piece_keeps_the_exact_rate(tmp_path: Path, vsr, suffix: str, codec: str,
                                                           rate: Fraction) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, rate, 45, audio=None)
    out = tmp_path / f"out{suffix}"
    code, stdout, stderr = vsr("upscale", src, "-o", out, "--engine", "bicubic", "--codec", codec, "--end", "0.5")
    assert code == EXIT_OK, stderr
    assert "checks passed" in stdout
    v = media.probe(out).video
    assert (v.avg_rate, v.frame_count, v.width, v.height) == (rate, 15, 128, 96)


# -- point 1: non-square pixels keep their display aspect in every container ----------------------

@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "ffv1"), (".mkv", "prores"), (".webm", "av1"),
                                               (".mkv", "h264"), (".mp4", "av1")])
def test_upscale_keeps_the_display_aspect_of_non_square_pixels(tmp_path: Path, vsr, suffix: str, codec: str) -> None:
    sar = Fraction(128, 117)  # 176x144 CIF from PAL: shows as 1.3371, not 176/144 = 1.2222
    src = make_video(tmp_path / "cif.mp4", 176, 144, 25, 3, audio=None, sample_aspect_ratio=sar)
    out = tmp_path / f"out{suffix}"
    code, stdout, stderr = vsr("upscale", src, "-o", out, "--engine", "bicubic", "--codec", codec)
    assert code == EXIT_OK, stderr
    assert "Input:    cif.mp4: 176x144 (shown as 193x144)" in stdout and "checks passed" in stdout
    v = media.probe(out).video
    assert (v.width, v.height) == (704, 576)
    if suffix == ".webm":  # WebM stores whole display pixels: shown as 770x576, 1.3368
        assert (v.display_width, v.display_height) == (770, 576)
    else:
        assert v.display_aspect_ratio == Fraction(176 * 128, 144 * 117)  # 1.3371


# -- point 7: the media layer's words ----------------------------------------------------------------

def test_probe_of_a_non_video_says_ffmpegs_reason_once(tmp_path: Path, vsr) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    code, stdout, stderr = vsr("probe", path)
    assert code == EXIT_INPUT and stdout == ""
    assert stderr.startswith(f"vsr: error: {path}: not a video FFmpeg can read (Invalid data found when "
                             "processing input).")
    assert stderr.count(str(path)) == 1 and "Errno" not in stderr


def test_upscale_report_names_the_container_for_people(tmp_path: Path, vsr) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 3, audio=None)
    code, stdout, stderr = vsr("upscale", src, "-o", tmp_path / "out.mp4", "--engine", "bicubic")
    assert code == EXIT_OK, stderr
    assert "[ok] readable: opens as MP4 with 1 streams" in stdout and "mov,mp4" not in stdout


def test_probe_of_a_missing_file_says_check_the_path(tmp_path: Path, vsr) -> None:
    path = tmp_path / "holliday.mp4"
    code, stdout, stderr = vsr("probe", path)
    assert (code, stdout) == (EXIT_INPUT, "")
    assert stderr == f"vsr: error: {path}: no such file. Check the path and the spelling of the file name.\n"
