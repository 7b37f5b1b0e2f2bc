"""More than 8 bits and HDR through the media layer: the reader keeps the source's depth, the writer
keeps depth, colour tags and HDR10 static metadata for HEVC, AV1, ProRes and FFV1 (issue 20)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from hdr_factory import MAX_CLL, distinct_levels, make_hdr_video
from media.colour import bit_depth
from media.hdr import ContentLight, HdrInfo, MasteringDisplay

W, H = 64, 48


@pytest.fixture(scope="module")
def hdr10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hdr_video(tmp_path_factory.mktemp("hdr") / "hdr10.mkv", W, H, frames=3)


@pytest.fixture(scope="module")
def hlg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hdr_video(tmp_path_factory.mktemp("hlg") / "hlg.mp4", W, H, frames=3, transfer="hlg")


def test_probe_reads_the_hdr10_static_metadata(hdr10: Path) -> None:
    v = media.probe(hdr10).video
    assert (v.bit_depth, v.color_primaries, v.color_transfer, v.color_matrix, v.color_range) == (
        10, "bt2020", "smpte2084", "bt2020nc", "tv")
    m = v.hdr.mastering
    assert m is not None and v.hdr.content_light == ContentLight(*MAX_CLL)
    # libx265's units: 0.00002 for chromaticity, 0.0001 cd/m2 for luminance (hdr_factory.MASTER_DISPLAY)
    assert m.red == (Fraction(34000, 50000), Fraction(16000, 50000))
    assert m.green == (Fraction(13250, 50000), Fraction(34500, 50000))
    assert m.white == (Fraction(15635, 50000), Fraction(16450, 50000))
    assert (m.max_luminance, m.min_luminance) == (1000, Fraction(1, 10000))
    assert not v.hdr.dolby_vision
    assert media.hdr_label(v) == "HDR10 (PQ, BT.2020, 10-bit)"


def test_reader_keeps_more_than_8_bits(hdr10: Path) -> None:
    with media.FrameReader(hdr10) as frames:
        rgb = [f.rgb for f in frames]
    assert len(rgb) == 3 and rgb[0].dtype == np.uint16 and rgb[0].shape == (H, W, 3)
    assert distinct_levels(rgb[0]) > 256


def test_an_8_bit_source_still_reads_as_uint8(tmp_path: Path) -> None:
    from media_factory import make_video

    src = make_video(tmp_path / "sdr.mp4", W, H, Fraction(24), 2, audio=None)
    with media.FrameReader(src) as frames:
        assert all(f.rgb.dtype == np.uint8 for f in frames)
    assert media.probe(src).video.hdr == HdrInfo() and media.hdr_label(media.probe(src).video) is None


def _close(a: MasteringDisplay, b: MasteringDisplay) -> bool:
    """Equal within what the codec can store (AV1: chromaticity in 1/65536, luminance in 1/256 and 1/16384)."""
    pairs = [*zip(a.red, b.red), *zip(a.green, b.green), *zip(a.blue, b.blue), *zip(a.white, b.white)]
    return (all(abs(x - y) <= Fraction(1, 50000) for x, y in pairs)
            and abs(a.max_luminance - b.max_luminance) <= Fraction(1, 256)
            and abs(a.min_luminance - b.min_luminance) <= Fraction(1, 10000))


@pytest.mark.parametrize(("codec", "suffix", "depth"), [
    ("hevc", ".mkv", 10), ("hevc", ".mp4", 10), ("av1", ".mkv", 10), ("av1", ".mp4", 10),
    ("prores", ".mkv", 10), ("prores", ".mov", 10), ("ffv1", ".mkv", 10),
])
def test_writer_keeps_depth_tags_and_hdr10_metadata(hdr10: Path, tmp_path: Path, codec: str, suffix: str,
                                                    depth: int) -> None:
    info = media.probe(hdr10)
    out = tmp_path / f"out{suffix}"
    with media.FrameReader(hdr10, info=info) as frames, \
            media.VideoWriter(out, info, W, H, media.EncodeSettings(codec)) as writer:
        for frame in frames:
            writer.write(frame.rgb, frame.pts, frame.duration)
        report = writer.finish()
    assert bit_depth(report.pix_fmt) == depth
    got, want = media.probe(out).video, info.video
    assert got.bit_depth == depth
    assert (got.color_primaries, got.color_transfer, got.color_matrix, got.color_range) == (
        want.color_primaries, want.color_transfer, want.color_matrix, want.color_range) or (
        codec == "ffv1" and (got.color_primaries, got.color_transfer) == (want.color_primaries, want.color_transfer))
    assert got.hdr.content_light == want.hdr.content_light
    assert got.hdr.mastering is not None and _close(got.hdr.mastering, want.hdr.mastering)
    with media.FrameReader(out) as frames:
        first = next(iter(frames)).rgb
    assert first.dtype == np.uint16 and distinct_levels(first) > 256


def test_hlg_keeps_its_transfer_and_depth(hlg: Path, tmp_path: Path) -> None:
    info = media.probe(hlg)
    assert media.hdr_label(info.video) == "HLG (BT.2020, 10-bit)"
    out = tmp_path / "out.mkv"
    with media.FrameReader(hlg, info=info) as frames, \
            media.VideoWriter(out, info, W, H, media.EncodeSettings("hevc")) as writer:
        for frame in frames:
            writer.write(frame.rgb, frame.pts, frame.duration)
        writer.finish()
    got = media.probe(out).video
    assert (got.bit_depth, got.color_transfer, got.color_primaries) == (10, "arib-std-b67", "bt2020")


def test_h264_makes_8_bits_of_a_deep_source(hdr10: Path, tmp_path: Path) -> None:
    info = media.probe(hdr10)
    out = tmp_path / "out.mp4"
    with media.FrameReader(hdr10, info=info) as frames, \
            media.VideoWriter(out, info, W, H, media.EncodeSettings("h264")) as writer:
        for frame in frames:
            writer.write(frame.rgb, frame.pts, frame.duration)
        report = writer.finish()
    assert report.pix_fmt == "yuv420p" and media.probe(out).video.bit_depth == 8


def test_dolby_vision_is_said_to_become_its_base_layer() -> None:
    dv = HdrInfo(dolby_vision=True)
    assert "Dolby Vision" in media.hdr_notes(_video(16, dv), "hevc", "yuv420p10le")[0]
    assert "HDR10 base layer" in media.hdr_notes(_video(16, dv), "hevc", "yuv420p10le")[0]
    assert "HLG base layer" in media.hdr_notes(_video(18, dv), "hevc", "yuv420p10le")[0]


def test_hdr_notes_say_what_is_kept_and_what_is_lost(hdr10: Path) -> None:
    v = media.probe(hdr10).video
    assert media.hdr_notes(v, "hevc", "yuv420p10le") == ("HDR10 (PQ, BT.2020, 10-bit): kept",)
    (lost,) = media.hdr_notes(v, "h264", "yuv420p")
    assert "8-bit" in lost and "hevc" in lost


def _video(transfer: int, hdr: HdrInfo):
    import dataclasses

    from media.colour import ColourTags

    from media.probe import VideoStreamInfo as base
    fields = {f.name: None for f in dataclasses.fields(base)}
    fields.update(pix_fmt="yuv420p10le", bit_depth=10, colour=ColourTags(9, transfer, 9, 1), hdr=hdr,
                  color_transfer={16: "smpte2084", 18: "arib-std-b67"}[transfer], color_primaries="bt2020")
    return base(**fields)


def test_the_browser_preview_says_it_cannot_show_hdr_as_hdr(hdr10: Path, tmp_path: Path) -> None:
    info = media.probe(hdr10)
    out = tmp_path / "out.mkv"
    with media.FrameReader(hdr10, info=info) as frames, \
            media.VideoWriter(out, info, W, H, media.EncodeSettings("hevc")) as writer:
        for frame in frames:
            writer.write(frame.rgb, frame.pts, frame.duration)
        writer.finish()
    preview = media.make_browser_preview(out, tmp_path)
    assert preview is not None and media.probe(preview).video.pix_fmt == "yuv420p"
    note = media.preview_note(media.probe(out))
    assert note is not None and "cannot show this HDR10 (PQ, BT.2020, 10-bit) video as HDR" in note
    assert media.preview_note(media.probe(preview)) is not None  # 8-bit PQ is still PQ
