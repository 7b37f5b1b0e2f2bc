"""Interlaced sources (``media.deinterlace``): the job's reader and a live source make each interlaced
picture whole (FFmpeg's bwdif) before it is upscaled, with the same frames at the same times; a
progressive source is untouched. The clips are real interlaced video: each picture woven from two fields
taken half a frame apart, of a bar that moves, encoded by x264 in interlaced mode."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from media.colour import frame_to_rgb
from media.deinterlace import Deinterlacer
from media.live_source import LiveFrame, LiveSource
from media.probe import probe
from media.reader import FrameReader
from tests.media_factory import make_video

RATE = 25
COMBED = 10.0  # the comb measure of a woven picture of the moving bar is about 24
WHOLE = 1.0  # and of a whole one about 0


def _bar(width: int, height: int, field: int) -> np.ndarray:
    """A bright bar on grey, 8 pixels further right at each field."""
    picture = np.full((height, width, 3), 40, np.uint8)
    x = (8 * field) % (width - 12)
    picture[:, x:x + 12] = 230
    return picture


def make_interlaced(path: Path, frames: int = 12, width: int = 128, height: int = 96, *, pix_fmt: str = "yuv420p",
                    top_first: bool = True, keyint: int = 250) -> Path:
    """``frames`` interlaced pictures: the first field's lines from one moment, the second field's from
    half a frame later (the top field first, or the bottom one); a key frame every ``keyint``."""
    with av.open(str(path), "w") as out:
        params = f"interlaced=1:{'tff' if top_first else 'bff'}=1:keyint={keyint}:min-keyint={keyint}:scenecut=0"
        stream = out.add_stream("libx264", rate=RATE, options={"x264-params": params, "crf": "8"})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(frames):
            first, second = _bar(width, height, 2 * index), _bar(width, height, 2 * index + 1)
            woven = first.copy()
            lines = slice(1, None, 2) if top_first else slice(0, None, 2)
            woven[lines] = second[lines]
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, RATE)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def comb(rgb: np.ndarray) -> float:
    """How combed a picture is: the mean distance of each line from the mean of its two neighbours."""
    grey = rgb.astype(np.float64).mean(axis=2) * (255 / 65535 if rgb.dtype == np.uint16 else 1)
    return float(np.abs(grey[1:-1] - (grey[:-2] + grey[2:]) / 2).mean())


def _decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


@pytest.mark.parametrize("top_first", [True, False], ids=["top field first", "bottom field first"])
def test_the_reader_deinterlaces_every_frame_at_its_own_time(tmp_path: Path, top_first: bool) -> None:
    clip = make_interlaced(tmp_path / "in.mp4", top_first=top_first)
    raw = _decoded(clip)
    assert all(f.interlaced_frame for f in raw) and min(comb(f.to_ndarray(format="rgb24")) for f in raw) > COMBED
    info = probe(clip)
    assert info.video.interlaced
    with FrameReader(clip) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == list(range(len(raw)))  # every frame, the last one too
    assert [f.pts for f in frames] == [Fraction(f.pts) * f.time_base for f in raw]
    assert max(comb(f.rgb) for f in frames) < WHOLE, [round(comb(f.rgb), 2) for f in frames]


def test_a_read_from_a_key_frame_gives_the_frames_of_the_whole_read(tmp_path: Path) -> None:
    """A resumed job (or a part of one on another worker) starts reading at a time; the filter makes each
    picture from its neighbours, so the first frame must come out as in a read from the start: the reader
    seeks a frame earlier for that, also when the time falls on a key frame."""
    clip = make_interlaced(tmp_path / "in.mp4", 12, 64, 48, keyint=4)
    with FrameReader(clip) as reader:
        whole = list(reader)
    start = whole[4].pts - probe(clip).video.start_time  # frame 4 is a key frame
    with FrameReader(clip, start=start) as reader:
        part = list(reader)
    assert [f.pts for f in part] == [f.pts for f in whole[4:]]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(part, whole[4:]))


def test_a_progressive_source_is_read_as_it_was(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", 64, 48, Fraction(RATE), 10, audio=None)
    info = probe(clip)
    assert not info.video.interlaced
    expected = [frame_to_rgb(f, info.video.colour, "test") for f in _decoded(clip)]
    with FrameReader(clip) as reader:
        frames = list(reader)
    assert len(frames) == len(expected) and all(np.array_equal(f.rgb, e) for f, e in zip(frames, expected))


def test_a_10_bit_interlaced_source_keeps_its_depth(tmp_path: Path) -> None:
    clip = make_interlaced(tmp_path / "in.mkv", 8, pix_fmt="yuv420p10le")
    with FrameReader(clip) as reader:
        frames = list(reader)
    assert reader.deep and len(frames) == 8 and all(f.rgb.dtype == np.uint16 for f in frames)
    assert max(comb(f.rgb) for f in frames) < WHOLE


def test_a_live_source_deinterlaces_too(tmp_path: Path) -> None:
    clip = make_interlaced(tmp_path / "in.ts", 10)
    source = LiveSource(str(clip)).open()
    try:
        frames = [item for item in source.read() if isinstance(item, LiveFrame)]
    finally:
        source.close()
    raw = _decoded(clip)
    assert [f.time for f in frames] == [Fraction(f.pts) * f.time_base for f in raw]
    assert [f.index for f in frames] == list(range(len(raw)))
    assert max(comb(f.rgb()) for f in frames) < WHOLE


def test_a_size_change_starts_a_new_filter_and_keeps_the_order(tmp_path: Path) -> None:
    small = _decoded(make_interlaced(tmp_path / "small.mp4", 4, 64, 48))
    large = _decoded(make_interlaced(tmp_path / "large.mp4", 4, 128, 96))
    for index, frame in enumerate(small + large):
        frame.pts = index
    deinterlacer = Deinterlacer("test")
    pairs = [pair for frame in small + large for pair in deinterlacer.push(frame)] + deinterlacer.flush()
    assert [source.pts for _, source in pairs] == list(range(8))
    assert [(p.width, p.height) for p, _ in pairs] == [(64, 48)] * 4 + [(128, 96)] * 4
    assert all(p.pts == s.pts for p, s in pairs)


def test_vsr_upscale_of_an_interlaced_clip_is_whole_at_4x_with_every_frame(tmp_path: Path, capsys) -> None:
    from vsr.cli import main

    clip = make_interlaced(tmp_path / "in.mp4", 10, 64, 48)
    assert main(["upscale", str(clip), "-o", str(tmp_path / "out.mkv"), "--engine", "bicubic"]) == 0
    assert "the source is interlaced" in capsys.readouterr().out
    out = _decoded(tmp_path / "out.mkv")
    assert len(out) == 10 and (out[0].width, out[0].height) == (256, 192)
    assert not any(f.interlaced_frame for f in out)
    assert max(comb(f.to_ndarray(format="rgb24")) for f in out) < WHOLE
