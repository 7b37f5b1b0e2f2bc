"""The running job's streamed result (issue 19): MPEG-TS chunks of the very frames of the final file,
with the source's audio, that go on across pieces (ZeroGPU calls, a resume), and the chunk plan."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from job_support import decode, plan
from media_factory import make_video
from media.ts_chunks import TS_BASE, continue_counters, list_chunks, stream_size
from vsr.job import run
from vsr.job.result_stream import ERROR_FILE, ChunkPlan
from vsr.job.runner import CallLimit, JobPaused, finish_job, run_piece
from vsr.model.bicubic import BicubicUpscaler
from vsr.options import build_options

RATE = Fraction(25)


@pytest.fixture
def options(tmp_path: Path):
    def make(**overrides):
        values = {"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache", "seed": 5,
                  "codec": "ffv1", "checkpoint_seconds": 0}
        values.update(overrides)
        return build_options(values, env={})

    return make


def _stream_of(folder: Path) -> tuple[list, list, int, float]:
    """The chunks joined: (video frames, their pts in seconds, audio samples, audio sample rate)."""
    data = b"".join(c.path.read_bytes() for c in list_chunks(folder))
    joined = folder.parent / "joined.ts"
    joined.write_bytes(data)
    with av.open(str(joined)) as container:
        frames = [(f.to_ndarray(format="rgb24"), float(f.pts * f.time_base)) for f in container.decode(video=0)]
    with av.open(str(joined)) as container:
        audio = list(container.decode(audio=0)) if container.streams.audio else []
    rate = audio[0].sample_rate if audio else 0
    return [f for f, _ in frames], [t for _, t in frames], sum(a.samples for a in audio), rate


def test_the_chunks_are_the_final_frames_with_their_audio(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 50, audio="aac")
    job = plan(src, options(), output=tmp_path / "out.mkv")
    result = run_piece(job, tmp_path / "out.mkv", checkpoint_dir=tmp_path / "ck", stream_dir=tmp_path / "stream",
                       processor=BicubicUpscaler())
    chunks = list_chunks(tmp_path / "stream")
    assert chunks[0].frames == 25 and chunks[0].start == 0.0  # the first chunk: one second, at once
    assert sum(c.frames for c in chunks) == 50 and [c.first for c in chunks] == [0, *np.cumsum([c.frames for c in chunks])[:-1]]
    frames, times, samples, rate = _stream_of(tmp_path / "stream")
    assert len(frames) == 50 and frames[0].shape == (192, 256, 3)  # 4x, under 1080p: not scaled
    assert times == pytest.approx([float(TS_BASE) + i / 25 for i in range(50)], abs=1e-4)
    assert samples >= 2 * rate and samples < 2 * rate + 3 * 1024  # two seconds of audio (+ AAC's padding)
    final = decode(result.output)
    for streamed, made in zip(frames, final, strict=True):  # the same pictures, through a lossy encode
        assert np.abs(streamed.astype(int) - made.rgb.astype(int)).mean() < 6


def test_the_stream_goes_on_across_pieces_and_a_resume_drops_what_is_made_again(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 40, audio="aac")
    job = plan(src, options(), output=tmp_path / "out.mkv")
    folder, stream = tmp_path / "ck", tmp_path / "stream"
    handover = None
    while True:
        outcome = run_piece(job, tmp_path / "out.mkv", checkpoint_dir=folder, resume=handover, stream_dir=stream,
                            limit=CallLimit(frames=15), finish=False, processor=BicubicUpscaler())
        assert isinstance(outcome, JobPaused)
        handover = pickle.loads(pickle.dumps(outcome.checkpoint))
        if outcome.complete:
            break
        # A chunk from a piece that died after its checkpoint: made again by the next piece.
        (stream / f"chunk-{handover.next_index:08d}-000003-0-120000.ts").write_bytes(b"stale")
    finish_job(job, tmp_path / "out.mkv", folder, handover)
    chunks = list_chunks(stream)
    assert [c.first for c in chunks][:3] == [0, 15, 25] or sum(c.frames for c in chunks) == 40
    assert sum(c.frames for c in chunks) == 40 and all(c.path.read_bytes() != b"stale" for c in chunks)
    assert max(c.end_index for c in chunks) == 40 and all(c.end_index <= 15 or c.first >= 15 for c in chunks)
    frames, times, samples, rate = _stream_of(stream)
    assert len(frames) == 40
    assert times == pytest.approx([float(TS_BASE) + i / 25 for i in range(40)], abs=1e-4)
    assert samples >= Fraction(8, 5) * rate


def test_a_video_without_audio_streams_video_only(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, RATE, 10, audio=None)
    job = plan(src, options(), output=tmp_path / "out.mkv")
    run(job, tmp_path / "out.mkv", processor=BicubicUpscaler())  # no stream asked: none made
    run_piece(job, tmp_path / "out2.mkv", checkpoint_dir=tmp_path / "ck", stream_dir=tmp_path / "stream",
              processor=BicubicUpscaler())
    frames, _, samples, _ = _stream_of(tmp_path / "stream")
    assert len(frames) == 10 and samples == 0
    assert not (tmp_path / "stream" / ERROR_FILE).exists()


def test_the_stream_is_at_most_1080p() -> None:
    assert stream_size(2560, 1440) == (1920, 1080)
    assert stream_size(1440, 2560) == (1080, 1920)  # portrait: the short side
    assert stream_size(256, 192) == (256, 192)
    assert stream_size(3840, 1636) == (2534, 1080)  # 2535 rounded to even


def test_chunks_grow_only_when_the_job_is_slower_than_real_time() -> None:
    plan = ChunkPlan(first_seconds=1, min_seconds=2, max_seconds=16, growth=2)
    assert plan.length(0, 0, None) == 1
    assert plan.length(1, 1, 3.0) == 2 and plan.length(5, 2, 1.0) == 2  # real time or faster: short chunks
    lengths, previous = [], 1.0
    for number in range(1, 7):
        previous = plan.length(number, previous, 0.4)
        lengths.append(previous)
    assert lengths == [2, 4, 8, 16, 16, 16]
    assert plan.ends_here(2.0, 1.0, 2.0) and not plan.ends_here(1.9, 1.0, 2.0)
    assert plan.ends_here(0.1, plan.max_work_seconds, 16)  # a very slow engine still shows something


def test_continuity_counters_follow_on_from_the_previous_chunk() -> None:
    def packet(pid: int, counter: int, payload: bool = True) -> bytes:
        return bytes([0x47, pid >> 8, pid & 0xFF, (0x10 if payload else 0x20) | counter]) + bytes(184)

    counters: dict[int, int] = {}
    first = continue_counters(packet(256, 0) + packet(256, 1) + packet(0, 0), counters)
    second = continue_counters(packet(256, 0) + packet(256, 0, payload=False) + packet(0, 0), counters)
    assert [b & 0x0F for b in first[3::188]] == [0, 1, 0]
    assert [b & 0x0F for b in second[3::188]] == [2, 3, 1]
    assert continue_counters(b"not ts", counters) == b"not ts"
