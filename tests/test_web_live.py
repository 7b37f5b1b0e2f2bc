"""The Live tab (issue 19 item 2): a camera in, the upscaled picture out; frames that arrive while the
engine is busy are dropped and counted, never queued; the input is the largest size the device
upscales at a usable rate; through gradio_client the live endpoint gives the picture 4x."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app_harness import AppServer
from vsr.model.bicubic import BicubicUpscaler
from vsr.web import live


class SlowUpscaler:
    """Bicubic that takes ``seconds`` per frame and can be held (a busy engine)."""

    scale = 4

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.engine = BicubicUpscaler()
        self.sizes: list[tuple[int, int]] = []
        self.resets = 0
        self.gate = threading.Event()
        self.gate.set()

    def reset(self) -> None:
        self.resets += 1

    def upscale_frame(self, rgb: np.ndarray) -> np.ndarray:
        self.gate.wait(10)
        time.sleep(self.seconds)
        self.sizes.append((rgb.shape[1], rgb.shape[0]))
        return self.engine.process(rgb)


def test_the_input_is_the_largest_size_upscaled_at_a_usable_rate() -> None:
    per_pixel = 1 / (live.LIVE_FPS * 320 * 240)  # exactly LIVE_FPS at 320x240
    size = live.live_size(1280, 720, lambda w, h: w * h * per_pixel, lambda w, h: True)
    assert size == (320, 180)  # 16:9 kept, the largest short side at or under 240 that is fast enough
    assert live.live_size(1280, 720, lambda w, h: 0.0, lambda w, h: w * h <= 640 * 360) == (640, 360)  # memory
    assert live.live_size(64, 48, lambda w, h: 0.0, lambda w, h: True) == (64, 48)  # never larger than the camera
    assert live.live_size(640, 480, lambda w, h: 10.0, lambda w, h: True) == (42, 32)  # nothing fast: the smallest


def test_frames_arriving_while_the_engine_is_busy_are_dropped_and_counted() -> None:
    engine = SlowUpscaler()
    session = live.LiveSession(engine, lambda w, h: (w // 2, h // 2))
    frame = np.full((48, 64, 3), 120, np.uint8)
    engine.gate.clear()  # the engine is busy with the first frame
    assert session.offer(frame)
    assert not session.offer(frame) and not session.offer(frame)  # dropped, not queued
    engine.gate.set()
    session.wait_idle()
    picture, figures = session.newest()
    assert picture.shape == (96, 128, 3) and engine.sizes == [(32, 24)]  # scaled down, then 4x
    assert (figures.frames_in, figures.frames_out, figures.dropped) == (3, 1, 2)
    assert figures.latency_ms is not None and figures.size == (32, 24) and figures.output == (128, 96)
    assert session.newest()[0] is None  # each picture is handed out once
    assert "dropped** 2 of 3" in figures.to_text() and "32x24" in figures.to_text()


def test_each_visitor_has_their_own_stream_that_ends_when_idle() -> None:
    made: list[SlowUpscaler] = []

    def make(engine: str) -> SlowUpscaler:
        made.append(SlowUpscaler())
        return made[-1]

    now = [0.0]
    desk = live.LiveDesk(make, lambda engine: (lambda w, h: (w, h)), clock=lambda: now[0])
    frame = np.zeros((24, 32, 3), np.uint8)
    desk.frame("a", "bicubic", frame)
    desk.frame("b", "bicubic", frame)
    assert desk.session("a", "bicubic") is not desk.session("b", "bicubic") and len(made) == 2
    now[0] += live.IDLE_SECONDS + 1
    desk.frame("a", "bicubic", frame)
    assert len(made) == 3  # a quiet session starts over (fresh temporal state)
    desk.frame("a", "stream-diffvsr", frame)
    assert len(made) == 4  # another engine: another stream
    with pytest.raises(ValueError, match="camera sent no picture"):
        desk.frame("a", "bicubic", None)


@pytest.mark.slow
def test_the_live_endpoint_upscales_frames_4x(tmp_path, fixture_dir):
    server = AppServer(base=tmp_path / "app", fixture_dir=fixture_dir, cache_dir=tmp_path / "cache").start()
    try:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        picture = tmp_path / "frame.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), np.uint8)).save(picture)
        outputs = []
        for _ in range(3):  # one frame in, its picture out, the temporal state carried on
            outputs.append(client.predict(handle_file(str(picture)), "bicubic", api_name="/live"))
        pictures = [o[0] for o in outputs if isinstance(o[0], str)]
        assert len(pictures) == 3, outputs
        with Image.open(pictures[-1]) as upscaled:
            assert upscaled.size == (256, 192)
        assert "frames/s" in outputs[-1][1] and "64x48" in outputs[-1][1] and "dropped** 0 of 3" in outputs[-1][1]
    finally:
        server.stop()
