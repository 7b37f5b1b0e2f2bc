"""``vsr batch``: many videos, one bad file among them, run twice (the second run skips what is done)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import media
from tests.media_factory import make_video

ROOT = Path(__file__).resolve().parent.parent


def _batch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp"),
           "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "vsr", "batch", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)


def test_a_broken_file_among_good_ones_is_reported_and_a_second_run_skips_the_done(tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    make_video(folder / "a.mp4", 32, 24, Fraction(25), 6, audio="aac")
    make_video(folder / "b.mkv", 32, 24, Fraction(25), 5, audio=None)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 10)
    (folder / "notes.txt").write_text("not taken: not a video name")
    single = make_video(tmp_path / "c.mov", 32, 24, Fraction(25), 4, audio=None)
    out = tmp_path / "out"
    first = _batch(tmp_path, str(folder), str(single), "-o", str(out), "--engine", "bicubic", "--codec", "ffv1")
    assert first.returncode == 3, first.stderr  # the worst failure: an input that is not a video
    report = json.loads((out / "batch-report.json").read_text())
    statuses = {Path(e["input"]).name: e["status"] for e in report["inputs"]}
    assert statuses == {"a.mp4": "done", "b.mkv": "done", "broken.mp4": "refused", "c.mov": "done"}
    broken = next(e for e in report["inputs"] if e["input"].endswith("broken.mp4"))
    assert broken["code"] == 3 and "broken.mp4" in broken["reason"] and broken["seconds"] >= 0
    assert report["counts"]["done"] == 3 and report["counts"]["refused"] == 1
    for name, frames in (("a_4x.mkv", 6), ("b_4x.mkv", 5), ("c_4x.mkv", 4)):
        info = media.probe(out / name)
        assert info.video.frame_count == frames and (info.video.width, info.video.height) == (128, 96)
    assert "broken.mp4  refused" in first.stdout and "a.mp4       done" in first.stdout
    made = (out / "a_4x.mkv").stat().st_mtime_ns

    (folder / "broken.mp4").unlink()
    second = _batch(tmp_path, str(folder), str(single), "-o", str(out), "--engine", "bicubic", "--codec", "ffv1")
    assert second.returncode == 0, second.stderr
    again = json.loads((out / "batch-report.json").read_text())
    assert [e["status"] for e in again["inputs"]] == ["skipped"] * 3
    assert (out / "a_4x.mkv").stat().st_mtime_ns == made, "a finished output is not made again"
    assert sorted(p.name for p in out.iterdir()) == ["a_4x.mkv", "b_4x.mkv", "batch-report.json", "c_4x.mkv"]


def test_a_batch_on_two_workers_makes_every_video(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("ray", reason="the cluster extra (requirements-cluster.txt) is not installed")
    make_video(tmp_path / "one.mp4", 32, 24, Fraction(25), 10, audio="aac")
    make_video(tmp_path / "two.mp4", 32, 24, Fraction(25), 6, audio=None)
    out = tmp_path / "out"
    done = _batch(tmp_path, str(tmp_path / "one.mp4"), str(tmp_path / "two.mp4"), "-o", str(out), "--engine",
                  "bicubic", "--codec", "ffv1", "--workers", "2", "--segment-seconds", "0.2")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "batch-report.json").read_text())
    assert [e["status"] for e in report["inputs"]] == ["done", "done"]
    assert media.probe(out / "one_4x.mkv").video.frame_count == 10
    assert media.probe(out / "two_4x.mkv").video.frame_count == 6
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "no job folder is left"
