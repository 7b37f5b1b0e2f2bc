"""The media bugs of issue 12 seen as a user sees them: `vsr upscale ... --engine bicubic` and `vsr probe`
on generated clips (exit code, what is printed, and the file that comes out)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

import media
from job_support import isolate_environment
from media_factory import make_picture
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
