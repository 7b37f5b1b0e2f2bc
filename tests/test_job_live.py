"""``vsr.job.live.LiveStream`` with an engine slower than its source: frames are dropped, never piled up,
so the latency stays within ``max_latency``; and with an engine faster than its source nothing is
dropped. The source is a generated file played at its own rate (``realtime``), the engine a stand-in
that takes a fixed time per frame (what matters here is only how long it takes)."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from media.ffmpeg_relay import free_udp_port
from tests.live_sender import Sender
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

    def reset(self) -> None:
        pass


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
    assert status.latency_p95 <= 0.5


class _RecordingEngine(_TimedEngine):
    """Records the size of each picture it is given and the frame count at each reset."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.sizes: list[tuple[int, ...]] = []
        self.resets: list[int] = []

    def upscale_frame(self, rgb: np.ndarray, *, wait: bool = True) -> np.ndarray | None:
        self.sizes.append(rgb.shape)
        return super().upscale_frame(rgb, wait=wait)

    def reset(self) -> None:
        self.resets.append(self.frames)


def test_a_source_back_at_another_size_starts_over_at_the_outputs_size(tmp_path: Path, caplog) -> None:
    """After a reconnect the source is another stream (here 80x60 where it was 64x48): its first frame is
    upscaled as a first frame (the temporal state reset) and its frames are resized to 64x48, said once."""
    port = free_udp_port()
    first = Sender(port, 600.0)
    first.start()
    done: list = []
    engine = _RecordingEngine()
    try:
        stream = LiveStream(f"udp://127.0.0.1:{port}", str(tmp_path / "out.m3u8"),
                            build_options({"engine": "bicubic"}),
                            live_settings(timeout=1, reconnects=2, reconnect_delay=0.1, segment_seconds=1))
        runner = threading.Thread(target=lambda: done.append(stream.run(engine)), daemon=True)
        runner.start()
        deadline = time.monotonic() + 60
        while engine.frames < 25:  # a second of the first source went through
            assert time.monotonic() < deadline and runner.is_alive(), "the stream did not start"
            time.sleep(0.05)
    finally:
        first.stop()
    before = engine.frames
    time.sleep(1.5)
    second = Sender(port, 3.0, width=80, height=60)
    second.start()
    second.join(30)
    runner.join(60)
    status = done[0]
    assert status.reconnects == 1 and status.frames_in == status.frames_out + status.dropped
    assert engine.frames >= before + 50  # most of the second source's 75 frames
    assert set(engine.sizes) == {(48, 64, 3)}  # every picture at the size the output was made for
    # once, between the sources: after the first's frames, before (nearly) all of the second's
    assert len(engine.resets) == 1 and engine.resets[0] >= before and engine.frames - engine.resets[0] >= 50
    resized = [r.getMessage() for r in caplog.records if "the picture is now 80x60" in r.getMessage()]
    assert len(resized) == 1 and "resized to 64x48" in resized[0]


def test_without_reconnects_the_end_says_only_why(tmp_path: Path) -> None:
    """--reconnects 0: the summary said "...; gave up after 0 reconnects"."""
    port = free_udp_port()
    sender = Sender(port, 1.5)
    sender.start()
    try:
        stream = LiveStream(f"udp://127.0.0.1:{port}", str(tmp_path / "out.m3u8"),
                            build_options({"engine": "bicubic"}), live_settings(timeout=0.5, reconnects=0))
        status = stream.run(_TimedEngine(0.0))
    finally:
        sender.stop()
    assert status.ended == "the source stopped (no data for 0.5 s)" and status.frames_out > 0


def test_what_comes_while_the_model_loads_is_skipped_not_piled_up(tmp_path: Path) -> None:
    """The source is opened (to fail at once) before the model loads. What it sent meanwhile waited in
    FFmpeg's UDP buffer (or a TCP window, stalling the sender) and came out as a burst, dropped and counted
    to catch up. It is now read and skipped while the model loads: the stream starts at the live edge."""
    port = free_udp_port()
    sender = Sender(port, 600.0)
    sender.start()
    try:
        stream = LiveStream(f"udp://127.0.0.1:{port}", str(tmp_path / "out.m3u8"),
                            build_options({"engine": "bicubic"}), live_settings(timeout=1, reconnects=0))
        time.sleep(3.0)  # the model loading: 75 frames come meanwhile
        done: list = []
        runner = threading.Thread(target=lambda: done.append(stream.run(_TimedEngine(0.0))), daemon=True)
        runner.start()
        time.sleep(2.0)
    finally:
        sender.stop()
    runner.join(30)
    status = done[0]
    assert status.frames_in == status.frames_out + status.dropped
    assert status.dropped <= 3, status  # no burst of stale frames to drop
    assert 25 <= status.frames_in <= 65, status  # the 2 s after the start (and the sender's end), not 5 s


def test_a_source_whose_clock_keeps_jumping_is_warned_of_once_in_a_while(tmp_path: Path, caplog) -> None:
    """Each jump of the source's clock of a second or more is a warning, but not 25 a second from a source
    that keeps jumping (two senders on one port): one in JUMP_WARN_EVERY_S, the rest at INFO; jitter
    (a jump under a second) is never a warning. Each one starts the pictures over."""
    import logging

    from vsr.job.live import JUMP_WARN_EVERY_S
    from vsr.job.live_clock import Jump

    clip = make_video(tmp_path / "clip.mp4", 32, 24, Fraction(25), 5, audio=None)
    stream = LiveStream(str(clip), str(tmp_path / "out.m3u8"), build_options({"engine": "bicubic"}),
                        live_settings())
    try:
        with caplog.at_level(logging.INFO, logger="vsr.job.live"):
            for seconds in (-4.2, 3.1, -0.2, -4.0):
                stream._jumped(Jump("video", seconds))
                assert stream._new_source
                stream._new_source = False
    finally:
        stream.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "clock jumped" in r.getMessage()]
    assert [level for level, _ in said] == [logging.WARNING] + [logging.INFO] * 3
    assert "jumped back 4.20 s" in said[0][1] and "jumped ahead 3.1 s" in said[1][1]
    assert JUMP_WARN_EVERY_S >= 5
