"""verify(): passes a faithful output, and each check catches the fault it is there for."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from media import ExpectedOutput, probe, verify
from media_factory import copy_through, make_video


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_video(tmp_path / "src.mp4", 64, 48, frames=30, audio="aac", subtitles="mov_text")


def test_faithful_output_passes(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "o.mp4"
    copy_through(source, out, scale=2)
    report = verify(probe(source), out, ExpectedOutput(30, 128, 96))
    assert report.ok, report.to_text()
    names = [c.name for c in report.checks]
    for name in ("decodes", "frames", "size", "display", "frame rate", "video duration", "audio tracks",
                 "audio track 1 duration", "audio track 1 sync", "subtitles"):
        assert name in names
    assert report.to_text().startswith("o.mp4: all")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is True and len(d["checks"]) == len(report.checks)


@pytest.mark.parametrize(("dest", "container"), [("o.mp4", "MP4"), ("o.mkv", "Matroska")])
def test_report_names_the_container_for_people(tmp_path: Path, source: Path, dest: str, container: str) -> None:
    out = tmp_path / dest
    copy_through(source, out)
    report = verify(probe(source), out, ExpectedOutput(30, 64, 48))
    assert f"[ok] readable: opens as {container} with 3 streams" in report.to_text()
    assert "mov,mp4" not in report.to_text() and "matroska,webm" not in report.to_text()


def failed(source: Path, output: Path, expected: ExpectedOutput) -> set[str]:
    report = verify(probe(source), output, expected)
    assert not report.ok
    assert "FAILED" in report.to_text()
    return {c.name for c in report.failed}


def test_wrong_count_and_size(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "o.mp4"
    copy_through(source, out)
    assert failed(source, out, ExpectedOutput(31, 64, 48)) == {"frames"}
    assert failed(source, out, ExpectedOutput(30, 128, 96)) == {"size"}


def test_missing_audio_and_subtitles(tmp_path: Path, source: Path) -> None:
    out = make_video(tmp_path / "o.mp4", 64, 48, frames=30, audio=None)
    assert failed(source, out, ExpectedOutput(30, 64, 48)) == {"audio tracks", "subtitles"}


def test_rate_changed(tmp_path: Path, source: Path) -> None:
    out = make_video(tmp_path / "o.mp4", 64, 48, rate=30, frames=30, subtitles="mov_text")
    assert "frame rate" in failed(source, out, ExpectedOutput(30, 64, 48))


def test_audio_out_of_sync(tmp_path: Path, source: Path) -> None:
    out = make_video(tmp_path / "o.mp4", 64, 48, frames=30, subtitles="mov_text", audio_offset=Fraction(1, 5),
                     audio_duration=Fraction(1001, 1000))
    assert failed(source, out, ExpectedOutput(30, 64, 48)) == {"audio track 1 sync"}


def test_audio_cut_short(tmp_path: Path, source: Path) -> None:
    out = make_video(tmp_path / "o.mp4", 64, 48, frames=30, subtitles="mov_text", audio_duration=Fraction(1, 2))
    assert failed(source, out, ExpectedOutput(30, 64, 48)) == {"audio track 1 duration"}


def test_rotation_lost(tmp_path: Path) -> None:
    src = make_video(tmp_path / "rot.mp4", 64, 48, frames=10, rotation=90, audio=None)
    out = make_video(tmp_path / "o.mp4", 64, 48, frames=10, audio=None)
    assert failed(src, out, ExpectedOutput(10, 64, 48)) == {"display"}


def test_unreadable_output(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"\x00" * 1000)
    report = verify(probe(source), out, ExpectedOutput(30, 64, 48))
    assert not report.ok and report.checks[0].name == "readable"
    assert "cannot be read" in report.to_text()
