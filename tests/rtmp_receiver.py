"""A one-publisher RTMP server for the tests: FFmpeg's own RTMP listener (``listen=1``) on loopback.

Run as ``python tests/rtmp_receiver.py PORT``: it takes the first publisher that completes the RTMP
handshake (a bare TCP probe, as ``vsr stream`` makes before any work, fails the handshake and it listens
again), decodes everything published until the publisher leaves, and prints one JSON line: the container
format, the audio codecs, the number of video frames and their sizes. It runs in its own process: in the
test's process, PyAV's listening open held up the publishing thread."""

from __future__ import annotations

import json
import sys
import time

import av

LISTEN_S = 120.0  # how long it waits for a publisher in all; a bound, not a timing


def receive(port: int) -> dict:
    got: dict = {"probes": 0}
    deadline = time.monotonic() + LISTEN_S
    while time.monotonic() < deadline:
        try:
            container = av.open(f"rtmp://127.0.0.1:{port}/live/up", options={"listen": "1"}, timeout=(LISTEN_S, 5))
        except (av.FFmpegError, OSError):
            got["probes"] += 1  # a connection that was not an RTMP publisher
            continue
        with container:
            got["format"] = container.format.name
            got["audio"] = [stream.codec_context.name for stream in container.streams.audio]
            sizes = []
            try:
                for frame in container.decode(video=0):
                    sizes.append([frame.width, frame.height])
            except (av.FFmpegError, OSError):
                pass  # the publisher left
            got["frames"], got["sizes"] = len(sizes), sorted({tuple(size) for size in sizes})
        break
    return got


if __name__ == "__main__":
    print(json.dumps(receive(int(sys.argv[1]))), flush=True)
