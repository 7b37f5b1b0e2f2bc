"""``vsr.job.live.LiveStream`` with an engine slower than its source: frames are dropped, never piled up,
so the latency stays within ``max_latency``; and with an engine faster than its source nothing is
dropped. The source is a generated file played at its own rate (``realtime``), the engine a stand-in
that takes a fixed time per frame (what matters here is only how long it takes)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.media_factory import make_video
from vsr.job.live import LiveStream, live_settings
from vsr.options import build_options


class _TimedEngine:
    """4x by pixel repetition, taking ``seconds`` per frame."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.frames = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return 4 * width, 4 * height

    def upscale_frame(self, rgb: np.ndarray, *, wait: bool = True) -> np.ndarray | None:
        time.sleep(self.seconds)
        self.frames += 1
        return np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)


def _stream(tmp_path: Path, engine: _TimedEngine, max_latency: float, seconds: int = 3):
    clip = make_video(tmp_path / "clip.mp4", 32, 24, Fraction(25), 25 * seconds, audio="aac")
    stream = LiveStream(str(clip), str(tmp_path / "out.m3u8"), build_options({"engine": "bicubic"}),
                        live_settings(realtime=True, max_latency=max_latency, segment_seconds=1))
    return stream.run(engine)


@pytest.mark.parametrize("step", [0.1, 0.3])
def test_an_engine_slower_than_the_source_drops_frames_and_keeps_the_latency_bound(tmp_path: Path,
                                                                                   step: float) -> None:
    status = _stream(tmp_path, _TimedEngine(step), max_latency=0.8)
    assert status.ended == "the source ended"
    assert status.frames_in == 75 and status.frames_in == status.frames_out + status.dropped
    assert status.frames_out <= 3 / step + 2  # what the engine could do in the clip's 3 s (and the tail)
    assert status.dropped >= 75 - (3 / step + 2)
    # never piled up: each frame waits at most for the one in the engine, then takes its own step
    # (plus the encoder's share); without dropping, the last frame would wait 3 s * (1 - 0.04 / step)
    assert status.latency_p95 <= max(0.8, 2 * step) + 0.5, status


def test_an_engine_faster_than_the_source_drops_nothing(tmp_path: Path) -> None:
    status = _stream(tmp_path, _TimedEngine(0.005), max_latency=0.8, seconds=2)
    assert (status.frames_in, status.frames_out, status.dropped) == (50, 50, 0)
    assert status.latency_p95 <= 0.3
