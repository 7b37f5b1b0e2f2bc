"""A live MPEG-TS sender for the ``vsr stream`` tests: H.264 + AAC pushed over loopback UDP at real time.

``send(port, seconds, ...)`` encodes ``tests.media_factory.pattern`` frames (64x48 at 25 fps by default)
and a sine tone into MPEG-TS and writes it to ``udp://127.0.0.1:PORT``, each frame when its time comes,
so the receiver sees a live source. ``Sender`` runs it in a thread that ``stop()`` ends early.
``publish_hls(playlist, seconds)`` writes the same as a live HLS playlist that grows at real time.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.media_factory import pattern, tone

SAMPLE_RATE = 48000


def send(port: int, seconds: float, *, width: int = 64, height: int = 48, rate: int = 25,
         stop: threading.Event | None = None) -> int:
    """Send ``seconds`` of video (and audio) at real time; returns the frames sent."""
    with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", "w", format="mpegts") as out:
        return push(out, seconds, width=width, height=height, rate=rate, stop=stop)


def publish_hls(playlist: Path, seconds: float, *, stop: threading.Event | None = None) -> int:
    """A live HLS playlist (an EVENT one, 1 s segments) that grows at real time for ``seconds`` and is
    finished (``#EXT-X-ENDLIST``) when it ends; returns the frames written."""
    options = {"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "event"}
    with av.open(str(playlist), "w", format="hls", options=options) as out:
        return push(out, seconds, stop=stop)


def push(out: av.container.OutputContainer, seconds: float, *, width: int = 64, height: int = 48, rate: int = 25,
         stop: threading.Event | None = None) -> int:
    """H.264 + AAC into ``out``, each frame when its time comes; returns the frames written."""
    stop = stop or threading.Event()
    video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "tune": "zerolatency"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.gop_size = rate
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.codec_context.layout = "stereo"
    started = time.monotonic()
    samples = 0
    sent = 0
    for index in range(round(seconds * rate)):
        if stop.is_set():
            break
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = av.VideoFrame.from_ndarray(pattern(width, height, index), format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, rate)
        out.mux(video.encode(frame))
        sent += 1
        until = round((index + 1) * SAMPLE_RATE / rate)
        chunk = tone(SAMPLE_RATE, samples, until - samples, 2)
        sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.astype(np.float32)), format="fltp",
                                           layout="stereo")
        sound.sample_rate, sound.pts, sound.time_base = SAMPLE_RATE, samples, Fraction(1, SAMPLE_RATE)
        samples = until
        out.mux(audio.encode(sound))
    out.mux(video.encode(None))
    out.mux(audio.encode(None))
    return sent


class Sender(threading.Thread):
    """``send`` in a thread; ``sent`` is its frame count once joined."""

    def __init__(self, port: int, seconds: float, **kwargs: object) -> None:
        super().__init__(name="live-sender", daemon=True)
        self.port, self.seconds, self.kwargs = port, seconds, kwargs
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        self.sent = send(self.port, self.seconds, stop=self.halt, **self.kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
