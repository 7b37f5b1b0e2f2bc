"""``media.LiveSource`` and FFmpeg's devices: a V4L2 camera is opened with the ``v4l2`` demuxer that PyAV's
FFmpeg has (under the name ``video4linux2,v4l2``). No camera is needed: a file that is not one is opened
the same way and fails where FFmpeg's device does."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.live_source import LiveSource, SourceUnavailable, demuxer_available


@pytest.mark.parametrize("name", ["v4l2", "video4linux2", "mp4", "mov", "matroska", "webm", "mpegts"])
def test_every_name_of_a_demuxer_is_known(name: str) -> None:
    assert demuxer_available(name)


def test_an_unknown_demuxer_is_not() -> None:
    assert not demuxer_available("no-such-device") and not demuxer_available("")


def test_a_camera_path_is_opened_with_ffmpegs_v4l2_device(tmp_path: Path) -> None:
    """It was refused before FFmpeg was asked ("cannot read v4l2 devices"): the name was looked up among
    av.formats_available, whose entries list every alias in one string."""
    not_a_camera = tmp_path / "video0"
    not_a_camera.write_bytes(b"\0" * 4096)
    source = LiveSource(str(not_a_camera), input_format="v4l2", timeout=2)
    with pytest.raises(SourceUnavailable) as refused:
        source.open()
    assert str(refused.value).startswith(f"{not_a_camera}: cannot open the source: ")
    assert "cannot read" not in str(refused.value)
