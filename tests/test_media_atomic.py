"""Atomic output: nothing at ``dest`` until a complete file exists, nothing left behind on error,
cancel or a full disk, no open file descriptors, names that never collide."""

from __future__ import annotations

import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import psutil
import pytest

from media import (
    ExpectedOutput,
    OutputNotWritable,
    VerificationFailed,
    VideoWriter,
    probe,
    unique_output_path,
)
from media_factory import ROOT_DIR, make_video, pattern


def open_paths(directory: Path) -> list[str]:
    return [f.path for f in psutil.Process().open_files() if f.path.startswith(str(directory))]


def test_nothing_at_dest_until_finish(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", frames=10)
    dest = tmp_path / "out" / "o.mp4"
    dest.parent.mkdir()
    with VideoWriter(dest, probe(src), 64, 48) as writer:
        for i in range(10):
            writer.write(pattern(64, 48, i), i * Fraction(1001, 30000))
            assert not dest.exists()
        partial = list(dest.parent.iterdir())
        assert len(partial) == 1 and partial[0].name.startswith(".o.") and ".partial" in partial[0].name
        report = writer.finish()
    assert [p.name for p in dest.parent.iterdir()] == ["o.mp4"]
    assert report.path == dest and probe(dest).video.frame_count == 10
    assert open_paths(tmp_path) == []


def test_exception_inside_with_leaves_nothing(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mkv", frames=30, audio="aac", subtitles="srt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    info = probe(src)
    fds_before = psutil.Process().num_fds()
    with pytest.raises(RuntimeError, match="cancelled"), VideoWriter(out_dir / "o.mkv", info, 64, 48) as writer:
        for i in range(5):
            writer.write(pattern(64, 48, i), i * Fraction(1001, 30000))
        assert open_paths(tmp_path)  # the partial output and the source (for its audio) are open
        raise RuntimeError("cancelled by the user")
    assert list(out_dir.iterdir()) == []
    assert open_paths(tmp_path) == []
    assert psutil.Process().num_fds() == fds_before


def test_abort_and_leaving_without_finish(tmp_path: Path) -> None:
    src = probe(make_video(tmp_path / "s.mp4", frames=5))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    writer = VideoWriter(out_dir / "a.mp4", src, 64, 48)
    writer.write(pattern(64, 48, 0), Fraction(0))
    writer.abort()
    writer.abort()  # twice is harmless
    with VideoWriter(out_dir / "b.mp4", src, 64, 48) as forgotten:
        forgotten.write(pattern(64, 48, 0), Fraction(0))
    assert list(out_dir.iterdir()) == []
    assert open_paths(tmp_path) == []


def test_failed_verification_saves_nothing(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", frames=6)
    dest = tmp_path / "o.mp4"
    writer = VideoWriter(dest, probe(src), 64, 48)
    for i in range(6):
        writer.write(pattern(64, 48, i), i * Fraction(1001, 30000))
    with pytest.raises(VerificationFailed, match="frames: 6 frames, expected 7"):
        writer.finish(ExpectedOutput(frames=7, width=64, height=48))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]


def test_output_directory_not_writable(tmp_path: Path) -> None:
    src = probe(make_video(tmp_path / "s.mp4", frames=2))
    with pytest.raises(OutputNotWritable, match="does not exist or is not writable") as err:
        VideoWriter(tmp_path / "missing" / "o.mp4", src, 64, 48)
    assert isinstance(err.value, OSError)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputNotWritable):
        VideoWriter(tmp_path / "file" / "o.mp4", src, 64, 48)
    with pytest.raises(OutputNotWritable, match="overwrite the source"):
        VideoWriter(tmp_path / "s.mp4", src, 64, 48)


_DISK_FULL_SCRIPT = """
import resource, signal, sys
from fractions import Fraction
from pathlib import Path
import numpy as np
from media import DiskFull, EncodeSettings, VideoWriter, probe
info = probe(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # the "disk" holds 300 kB
noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
try:
    with VideoWriter(Path(sys.argv[2]), info, 256, 256, EncodeSettings(crf=0, preset="ultrafast")) as w:
        for i in range(30):
            w.write(np.roll(noise, i, axis=1), i * Fraction(1001, 30000))
        w.finish()
except DiskFull as exc:
    print("DISKFULL", exc)
"""


def test_disk_full_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", frames=30)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_SCRIPT, str(src), str(out_dir / "o.mp4")],
        capture_output=True, text=True, cwd=ROOT_DIR, timeout=120, check=False,
    )
    assert "DISKFULL" in done.stdout, done.stderr
    assert "ran out of space" in done.stdout and "o.mp4" in done.stdout
    assert "Errno" not in done.stdout and "(File too large)" in done.stdout
    assert list(out_dir.iterdir()) == []


def test_unique_output_paths_never_collide(tmp_path: Path) -> None:
    names: list[Path] = []
    lock = threading.Lock()

    def reserve() -> None:
        path = unique_output_path(tmp_path, "my clip: \"final\"/v2", ".mp4")
        with lock:
            names.append(path)

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 20 and all(p.exists() and p.parent == tmp_path for p in names)
    assert all(p.name.startswith("my clip_ _final_v2.") and p.suffix == ".mp4" for p in names)
    with pytest.raises(OutputNotWritable) as err:
        unique_output_path(tmp_path / "missing", "x", "mp4")
    message = str(err.value)  # the system's reason in words; the folder is named once, by us
    assert "(No such file or directory)" in message and "Errno" not in message
    assert message.count(str(tmp_path / "missing")) == 1


def test_finish_replaces_a_reserved_name(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", frames=3)
    dest = unique_output_path(tmp_path, "s-upscaled", ".mp4")
    with VideoWriter(dest, probe(src), 64, 48) as writer:
        for i in range(3):
            writer.write(np.ascontiguousarray(pattern(64, 48, i)), i * Fraction(1001, 30000))
        writer.finish()
    assert probe(dest).video.frame_count == 3


def test_write_durably_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    from media import write_durably

    dest = tmp_path / "record.json"
    write_durably(dest, lambda fh: fh.write(b'{"frames": 412}'))
    assert dest.read_bytes() == b'{"frames": 412}' and [p.name for p in tmp_path.iterdir()] == ["record.json"]

    def half_then_fail(fh) -> None:
        fh.write(b'{"fra')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_durably(dest, half_then_fail)
    assert dest.read_bytes() == b'{"frames": 412}'  # the old file, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left
