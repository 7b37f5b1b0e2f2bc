"""probe(): exact rates and durations, rotation, aspect, colour, streams, and every refusal."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media import (
    MediaError,
    MediaFileNotFound,
    NotAVideo,
    NoVideoStream,
    SizeLimitExceeded,
    StillImage,
    TruncatedVideo,
    UnsupportedPixelFormat,
    UnsupportedSize,
    ZeroFrames,
    probe,
)
from media_factory import SUBTITLE_CUES, cut_with_an_edit_list, make_audio_only, make_picture, make_video


@pytest.mark.parametrize(
    ("rate", "frames"),
    [(Fraction(30000, 1001), 12), (Fraction(24000, 1001), 10), (Fraction(25), 10)],
)
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_rate_duration_and_count_are_exact(tmp_path: Path, rate: Fraction, frames: int, suffix: str) -> None:
    info = probe(make_video(tmp_path / f"clip{suffix}", 64, 48, rate, frames, audio=None))
    v = info.video
    assert v.avg_rate == rate and isinstance(v.avg_rate, Fraction)
    assert v.frame_count == frames
    assert not v.variable_rate
    assert v.start_time == 0
    # MP4 stores exact ticks; Matroska rounds to milliseconds.
    tolerance = Fraction(0) if suffix == ".mp4" else Fraction(1, 1000)
    assert abs(v.duration - frames / rate) <= tolerance


EXACT_RATES = [Fraction(24), Fraction(25), Fraction(30), Fraction(50), Fraction(60), Fraction(24000, 1001),
               Fraction(30000, 1001), Fraction(60000, 1001)]


@pytest.mark.parametrize("frames", [3, 8, 15, 90])  # 0.05 to 0.6 s, and a long piece
@pytest.mark.parametrize("rate", EXACT_RATES, ids=str)
@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "ffv1"), (".webm", None), (".mp4", None)])
def test_short_and_long_pieces_keep_their_exact_rate(tmp_path: Path, rate: Fraction, frames: int, suffix: str,
                                                     codec: str | None) -> None:
    # Matroska/WebM store milliseconds: 15 frames at 30 fps fit 30000/1001 as well, within rounding.
    # FFV1 and VP9 carry no rate in the bitstream, so only the container's own says which it is.
    pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
    v = probe(make_video(tmp_path / f"piece{suffix}", 16, 16, rate, frames, codec=codec, pix_fmt=pix_fmt,
                         audio=None)).video
    assert (v.avg_rate, v.frame_count, v.variable_rate) == (rate, frames, False)
    tolerance = Fraction(0) if suffix == ".mp4" else Fraction(1, 1000)
    assert abs(v.duration - frames / rate) <= tolerance


def test_variable_rate_is_detected(tmp_path: Path) -> None:
    times = [Fraction(0), Fraction(1, 30), Fraction(1, 10), Fraction(1, 5), Fraction(1, 4)]
    v = probe(make_video(tmp_path / "vfr.mp4", frames=5, timestamps=times, audio=None)).video
    assert v.variable_rate
    assert v.frame_count == 5
    assert v.avg_rate == 1 / (Fraction(1, 4) / 4)  # frames over the span of their timestamps


def test_rotation_sar_and_display_size(tmp_path: Path) -> None:
    v = probe(make_video(tmp_path / "rot.mp4", 64, 48, rotation=90, audio=None)).video
    assert (v.width, v.height, v.rotation) == (64, 48, 90)
    assert (v.display_width, v.display_height) == (48, 64)
    v = probe(make_video(tmp_path / "sar.mp4", 64, 48, sample_aspect_ratio=Fraction(4, 3), audio=None)).video
    assert v.sample_aspect_ratio == Fraction(4, 3)
    assert v.display_aspect_ratio == Fraction(64 * 4, 48 * 3)
    assert (v.display_width, v.display_height) == (85, 48)


@pytest.mark.parametrize(("colour_range", "pix_fmt", "depth"), [("tv", "yuv420p", 8), ("pc", "yuv420p10le", 10)])
def test_colour_tags_and_bit_depth(tmp_path: Path, colour_range: str, pix_fmt: str, depth: int) -> None:
    v = probe(make_video(tmp_path / "c.mp4", pix_fmt=pix_fmt, color_range=colour_range, audio=None)).video
    tags = (v.color_matrix, v.color_primaries, v.color_transfer, v.color_range)
    assert tags == ("bt709", "bt709", "bt709", colour_range)
    assert not v.colour.matrix_guessed
    assert (v.pix_fmt, v.bit_depth, v.has_alpha) == (pix_fmt, depth, False)


def test_alpha_is_reported(tmp_path: Path) -> None:
    v = probe(make_video(tmp_path / "alpha.mkv", pix_fmt="yuva420p", audio=None)).video
    assert v.has_alpha and v.pix_fmt == "yuva420p"


def test_vp9_alpha_in_webm_is_reported(tmp_path: Path) -> None:
    # VP9 keeps alpha beside the picture (Matroska BlockAdditional, track tagged alpha_mode=1); FFmpeg's
    # own VP9 decoder ignores it and decodes yuv420p, so the pixel format alone does not tell.
    v = probe(make_video(tmp_path / "alpha.webm", 32, 32, 25, 4, codec="libvpx-vp9", pix_fmt="yuva420p",
                         audio=None)).video
    assert v.codec == "vp9" and v.has_alpha


def test_vp9_without_alpha_has_none(tmp_path: Path) -> None:
    v = probe(make_video(tmp_path / "opaque.webm", 32, 32, 25, 4, codec="libvpx-vp9", audio=None)).video
    assert v.codec == "vp9" and not v.has_alpha


def test_audio_and_subtitle_streams(tmp_path: Path) -> None:
    path = make_video(tmp_path / "all.mkv", frames=45, audio="opus", audio_tracks=2, subtitles="srt",
                      languages=["eng", "fra"])
    info = probe(path)
    assert [(a.codec, a.channels, a.sample_rate, a.language) for a in info.audio] == [
        ("opus", 2, 48000, "eng"), ("opus", 2, 48000, "fra")]
    for a in info.audio:
        assert abs(a.duration - info.video.duration) <= a.packet_duration * 2  # the tone lasts as long as the video
    assert [(s.codec, s.packets) for s in info.subtitles] == [("subrip", len(SUBTITLE_CUES))]


def test_pcm_and_mov_text(tmp_path: Path) -> None:
    info = probe(make_video(tmp_path / "pcm.mov", audio="pcm", subtitles="mov_text"))
    assert info.audio[0].codec == "pcm_s16le"
    assert info.subtitles[0].codec == "mov_text"


def test_to_dict_is_json_with_exact_fractions(tmp_path: Path) -> None:
    d = json.loads(json.dumps(probe(make_video(tmp_path / "j.mp4", subtitles="mov_text")).to_dict()))
    assert d["video"]["avg_rate"] == "30000/1001"
    assert d["video"]["colour"]["matrix"] == "bt709"
    assert d["audio"][0]["codec"] == "aac"
    assert d["subtitles"][0]["codec"] == "mov_text"


@pytest.mark.parametrize(("name", "kw", "container_name"), [
    ("c.mp4", {}, "MP4"), ("c.mov", {}, "QuickTime (MOV)"), ("c.m4v", {}, "MP4 (M4V)"),
    ("c.mkv", {}, "Matroska"), ("c.webm", {}, "WebM"), ("c.avi", {"codec": "mpeg4"}, "AVI"),
])
def test_container_is_named_for_people(tmp_path: Path, name: str, kw: dict, container_name: str) -> None:
    info = probe(make_video(tmp_path / name, 32, 32, 25, 2, audio=None, **kw))
    assert info.container_name == container_name
    assert info.to_dict()["container_name"] == container_name
    assert info.container in ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")  # FFmpeg's demuxer, for programs


def test_awkward_file_name(tmp_path: Path) -> None:
    path = make_video(tmp_path / "my \"holiday\" 'clip' été 東京 #1.mp4", audio="aac")
    info = probe(path)
    assert info.path == path and info.video.frame_count == 12


@pytest.mark.parametrize(
    ("name", "clip"),
    [("a.mp4", (1920, 1080, Fraction(30), 209, 1)), ("b.mp4", (480, 270, Fraction(30), 150, 1)),
     ("muted_b.mp4", (480, 270, Fraction(30), 150, 0)), ("world.mp4", (480, 270, Fraction(30), 901, 1))],
)
def test_gradio_sample_videos(gradio_videos: Path, name: str, clip: tuple[int, int, Fraction, int, int]) -> None:
    info = probe(gradio_videos / name)
    v = info.video
    assert (v.width, v.height, v.avg_rate, v.frame_count, len(info.audio)) == clip
    assert v.duration == v.frame_count / v.avg_rate
    # Untagged: the matrix is guessed as players guess it (BT.709 for HD, BT.601 below).
    assert v.colour.matrix_guessed
    assert v.color_matrix == ("bt709" if v.height >= 720 else "smpte170m")


# -- refusals ------------------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(MediaFileNotFound) as err:
        probe(path)
    # Words for any caller (command line, web app, library): the path, the problem, the fix.
    assert str(err.value) == f"{path}: no such file. Check the path and the spelling of the file name."
    assert isinstance(err.value, FileNotFoundError) and err.value.path == path


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(NotAVideo, match="notes.mp4") as err:
        probe(path)
    assert isinstance(err.value, ValueError) and isinstance(err.value, MediaError)


@pytest.mark.parametrize(("kind", "name"), [("png", "holiday.mp4"), ("jpeg", "holiday.mp4"), ("png", "clip.mkv"),
                                            ("jpeg", "clip.mov")])
def test_picture_with_a_video_name_is_refused(tmp_path: Path, kind: str, name: str) -> None:
    path = make_picture(tmp_path / name, kind)
    with pytest.raises(StillImage) as err:
        probe(path)
    message = str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, MediaError)
    assert message.startswith(f"{path}: ")
    assert f"still picture ({kind.upper()})" in message and "not a video" in message
    assert f"its name ends in {path.suffix}" in message
    assert "Choose a video file" in message


@pytest.mark.parametrize(("kind", "name"), [("png", "photo.png"), ("jpeg", "photo.jpg"), ("webp", "photo.webp"),
                                            ("gif", "photo.gif")])
def test_picture_file_is_refused(tmp_path: Path, kind: str, name: str) -> None:
    path = make_picture(tmp_path / name, kind)
    with pytest.raises(StillImage, match=r"photo\.\w+: this is a still picture .*not a video.*Choose a video file"):
        probe(path)


@pytest.mark.parametrize(("name", "codec"), [("one.mp4", None), ("one.mkv", "ffv1"), ("one.mov", "png")])
def test_one_frame_video_is_still_a_video(tmp_path: Path, name: str, codec: str | None) -> None:
    # A single picture inside a video container is a (very short) video: accepted, as before.
    kw = {"codec": codec, "pix_fmt": "rgb24"} if codec == "png" else {"codec": codec}
    v = probe(make_video(tmp_path / name, 64, 48, 25, 1, audio=None, **kw)).video
    assert (v.frame_count, v.width, v.height, v.avg_rate) == (1, 64, 48, 25)


def test_ffmpeg_reason_is_plain_and_the_path_said_once(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(NotAVideo) as err:
        probe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a video FFmpeg can read (Invalid data found when processing input)")
    assert message.count(str(path)) == 1 and "Errno" not in message and "1094995529" not in message


def test_audio_only(tmp_path: Path) -> None:
    with pytest.raises(NoVideoStream, match="audio-only"):
        probe(make_audio_only(tmp_path / "song.m4a"))


def test_zero_frames(tmp_path: Path) -> None:
    path = make_video(tmp_path / "empty.mkv", frames=0, audio="aac", audio_duration=Fraction(1))
    with pytest.raises(ZeroFrames, match="no frames"):
        probe(path)


def test_one_pixel_video_is_refused(tmp_path: Path) -> None:
    path = make_video(tmp_path / "dot.mkv", 1, 1, codec="ffv1", pix_fmt="yuv444p", audio=None)
    with pytest.raises(UnsupportedSize, match="1x1.*at least 8x8"):
        probe(path)


def test_odd_small_size_is_accepted(tmp_path: Path) -> None:
    v = probe(make_video(tmp_path / "odd.mp4", 33, 17, pix_fmt="yuv444p", audio=None)).video
    assert (v.width, v.height) == (33, 17)


def test_size_limit(tmp_path: Path) -> None:
    path = make_video(tmp_path / "big.mp4", 64, 48, audio=None)
    with pytest.raises(SizeLimitExceeded, match="64x48 = 3072 pixels.*limit of 3000"):
        probe(path, max_pixels=3000)


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut-" + path.name)
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def test_truncated_mkv_names_the_frame(tmp_path: Path) -> None:
    cut = _truncate(make_video(tmp_path / "long.mkv", 128, 96, frames=60, audio="aac"))
    with pytest.raises(TruncatedVideo, match=r"truncated") as err:
        probe(cut)
    assert err.value.frame_index is not None and 0 < err.value.frame_index < 60
    assert str(err.value).count(str(cut)) == 1 and "Errno" not in str(err.value)


def test_truncated_mp4_without_index(tmp_path: Path) -> None:
    # moov at the end (the default): a cut file has no index at all.
    cut = _truncate(make_video(tmp_path / "long.mp4", 128, 96, frames=60, audio="aac"))
    with pytest.raises(NotAVideo, match="index is missing"):
        probe(cut)


def test_colour_matrix_we_cannot_convert_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ycgco.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv444p"
        stream.codec_context.colorspace = 8  # YCgCo: swscale has no matrix for it
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24").reformat(format="yuv444p")
        frame.colorspace, frame.pts = 8, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(UnsupportedPixelFormat, match="ycgco.*Convert the video"):
        probe(path)


def test_packets_an_edit_list_discards_are_not_counted(tmp_path: Path) -> None:
    """They are not shown, and the decoder drops them: counted, the frame count (and the audio's start)
    were a second too early, and every job on such a file failed its verification."""
    src = make_video(tmp_path / "src.mp4", 64, 48, Fraction(25), 100, audio="aac", gop=50)
    cut = cut_with_an_edit_list(src, tmp_path / "cut.mp4")
    with av.open(str(cut)) as container:
        assert sum(p.is_discard for p in container.demux(video=0)) == 25  # the file is what the test wants
    with av.open(str(cut)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    info = probe(cut)
    assert info.video.frame_count == decoded == 75
    assert info.video.start_time == 0 and info.video.duration == 3
    assert info.audio[0].start_time is not None and abs(info.audio[0].start_time) <= Fraction(1, 25)
    assert abs(info.audio[0].duration - 3) <= Fraction(1, 20)
