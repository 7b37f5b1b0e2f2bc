"""make_browser_preview(): an H.264/AAC MP4 for outputs Chromium cannot play, nothing for those it can."""

from __future__ import annotations

from pathlib import Path

import pytest

from media import EncodeSettings, make_browser_preview, probe, verify
from media.verify import ExpectedOutput
from media_factory import copy_through, make_video


def test_playable_output_needs_no_preview(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", frames=5)
    out = tmp_path / "o.mp4"
    copy_through(src, out)
    assert make_browser_preview(out, tmp_path) is None


@pytest.mark.parametrize(
    ("codec", "dest", "audio", "src_name"),
    [("hevc", "o.mp4", "aac", "s.mp4"), ("ffv1", "o.mkv", "pcm", "s.mov"), ("prores", "o.mov", "aac", "s.mp4")],
)
def test_preview_plays_in_browsers(tmp_path: Path, codec: str, dest: str, audio: str, src_name: str) -> None:
    src = make_video(tmp_path / src_name, 64, 48, frames=10, audio=audio)
    out = tmp_path / dest
    copy_through(src, out, scale=2, encode=EncodeSettings(codec))
    preview = make_browser_preview(out, tmp_path)
    assert preview is not None and preview.name == "o.preview.mp4"
    info = probe(preview)
    assert (info.video.codec, info.video.pix_fmt) == ("h264", "yuv420p")
    assert [a.codec for a in info.audio] == ["aac"]
    assert make_browser_preview(preview, tmp_path) is None  # the preview itself plays
    report = verify(probe(out), preview, ExpectedOutput(10, 128, 96))
    assert report.ok, report.to_text()


def test_preview_is_small_and_keeps_rotation(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", 33, 17, frames=4, pix_fmt="yuv444p", rotation=90)
    out = tmp_path / "o.mp4"
    copy_through(src, out, scale=4)  # 132x68 yuv420p H.264: already playable
    assert make_browser_preview(out, tmp_path) is None
    odd = tmp_path / "odd.mp4"
    copy_through(src, odd)  # 33x17 stays exact with yuv444p, which browsers do not play
    preview = make_browser_preview(odd, tmp_path, max_height=8)
    assert preview is not None
    v = probe(preview).video
    assert (v.width, v.height, v.pix_fmt, v.rotation) == (16, 8, "yuv420p", 90)


def test_preview_audio_is_aac_for_every_browser(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mkv", 64, 48, frames=6, audio="opus", audio_tracks=2)
    out = tmp_path / "o.mkv"
    copy_through(src, out, encode=EncodeSettings("hevc"))
    preview = make_browser_preview(out, tmp_path)
    assert preview is not None
    assert [a.codec for a in probe(preview).audio] == ["aac", "aac"]  # both tracks kept, never dropped
