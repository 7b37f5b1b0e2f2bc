"""The Matroska/WebM display size written after the muxer: the file stays whole (CRC, cues, every
stream), no placeholder is left behind, and a file it cannot handle is refused untouched."""

from __future__ import annotations

import zlib
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media import EncodeSettings, ExpectedOutput, FrameReader, MediaError, probe, verify
from media.matroska import PLACEHOLDER_NAME, display_size, write_display_size
from media_factory import copy_through, make_video

TRACKS_ID = bytes.fromhex("1654AE6B")


def tracks_crc_ok(path: Path) -> bool:
    """Whether the Tracks element's CRC-32 (its first child, Matroska only) matches its content."""
    data = path.read_bytes()
    at = data.index(TRACKS_ID)
    while data[at - 3:at] == b"\x53\xab\x84":  # a SeekHead entry naming Tracks (SeekID), not Tracks itself
        at = data.index(TRACKS_ID, at + 1)
    at += len(TRACKS_ID)
    length = 8 - data[at].bit_length() + 1
    size = int.from_bytes(data[at:at + length], "big") & ((1 << (7 * length)) - 1)
    body = data[at + length:at + length + size]
    assert body[:2] == b"\xbf\x84", "no CRC-32 element first in Tracks"
    return zlib.crc32(body[6:]).to_bytes(4, "little") == body[2:6]


@pytest.mark.parametrize(("dest", "codec"), [("o.mkv", "ffv1"), ("o.mkv", "prores"), ("o.webm", "av1")])
def test_file_stays_whole_with_every_stream(tmp_path: Path, dest: str, codec: str) -> None:
    src = make_video(tmp_path / "s.mkv", 48, 32, 25, 30, audio="opus", subtitles="srt", gop=5,
                     sample_aspect_ratio=Fraction(8, 9))
    out = tmp_path / dest
    copy_through(src, out, encode=EncodeSettings(codec))
    assert verify(probe(src), out, ExpectedOutput(30, 48, 32)).ok
    with av.open(str(out)) as container:
        assert "title" not in container.streams.video[0].metadata
    assert PLACEHOLDER_NAME.encode() not in out.read_bytes()
    if dest.endswith(".mkv"):
        assert tracks_crc_ok(out)
    with FrameReader(out, start=Fraction(4, 5)) as frames:  # a seek: the cues still point at the clusters
        assert [f.index for f in frames] == list(range(10))


def test_square_pixels_leave_the_header_alone(tmp_path: Path) -> None:
    src = make_video(tmp_path / "s.mp4", 32, 32, 25, 2, audio=None)
    out = tmp_path / "o.mkv"
    copy_through(src, out, encode=EncodeSettings("ffv1"))
    assert probe(out).video.sample_aspect_ratio == 1 and tracks_crc_ok(out)


def test_display_size_matroska_is_exact_webm_in_pixels() -> None:
    assert display_size(704, 576, Fraction(128, 117), webm=False) == (1408, 1053, 3)
    assert display_size(704, 576, Fraction(128, 117), webm=True) == (770, 576, None)
    assert display_size(720, 480, Fraction(8, 9), webm=True) == (720, 540, None)  # the longer side grows


def test_a_file_without_the_placeholder_is_refused_untouched(tmp_path: Path) -> None:
    path = make_video(tmp_path / "other.mkv", 32, 32, 25, 2, codec="ffv1", pix_fmt="yuv444p", audio=None)
    before = path.read_bytes()
    with pytest.raises(MediaError, match=r"other\.mkv: the display aspect ratio could not be written"):
        write_display_size(path, 4, 3, 3)
    assert path.read_bytes() == before
