"""``media.LiveOutput`` publishing to a connected receiver (``tcp://``, MPEG-TS): a receiver that stops
reading ends the stream with a clear error after the output's timeout instead of holding it for ever
(``media.stall_guard``); a receiver that reads is never cut."""

from __future__ import annotations

import socket
import threading
from fractions import Fraction

import numpy as np
import pytest

from media.live_output import DestinationUnusable, LiveOutput

BOUND_S = 60.0  # a bound on each loop, not a timing


class Receiver:
    """A TCP server on loopback that takes one connection and reads everything, or nothing at all."""

    def __init__(self, reads: bool) -> None:
        self.reads, self.received = reads, 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(BOUND_S)
        connection, _ = self._server.accept()
        self._held.append(connection)
        connection.settimeout(BOUND_S)
        while self.reads:
            data = connection.recv(1 << 16)
            if not data:
                return
            self.received += len(data)

    def wait_for_the_end(self) -> None:
        """Until the sender has closed the connection and everything it sent has been read."""
        self._thread.join(BOUND_S)
        assert not self._thread.is_alive(), f"the stream did not end in {BOUND_S:g} s"

    def close(self) -> None:
        for connection in self._held:
            connection.close()
        self._server.close()
        self._thread.join(5)


def _noise(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)  # large H.264 frames: the buffers fill fast


def test_a_receiver_that_reads_nothing_ends_the_stream_after_the_timeout() -> None:
    receiver = Receiver(reads=False)
    output = LiveOutput(f"tcp://127.0.0.1:{receiver.port}", 640, 480, Fraction(25), timeout=1.0)
    outcome: dict[str, BaseException] = {}

    def publish() -> None:  # in a thread: a write that is never cut must not hold up the test
        rng = np.random.default_rng(0)
        try:
            for index in range(100_000):
                output.write(_noise(rng), Fraction(index, 25))
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["error"] = error

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        publisher.start()
        publisher.join(BOUND_S)
        assert not publisher.is_alive(), "the stalled write was never cut"
        error = outcome.get("error")
        assert isinstance(error, DestinationUnusable), error
        assert "the receiver read nothing for 1 s, so the stream was ended" in str(error)
        closing = threading.Thread(target=output.close, daemon=True)  # finishing a cut stream neither hangs
        closing.start()
        closing.join(BOUND_S)
        assert not closing.is_alive()
    finally:
        receiver.close()


def test_a_receiver_that_reads_is_never_cut() -> None:
    receiver = Receiver(reads=True)
    output = LiveOutput(f"tcp://127.0.0.1:{receiver.port}", 640, 480, Fraction(25), timeout=1.0)
    rng = np.random.default_rng(1)
    try:
        for index in range(40):
            assert output.write(_noise(rng), Fraction(index, 25))
        output.close()
        receiver.wait_for_the_end()  # the receiver reads to the end of the stream before its socket is closed
        assert output.frames == 40 and receiver.received > 40 * 1000 and not output._guard.tripped
    finally:
        receiver.close()



@pytest.mark.parametrize("name, codec, decoded", [("in.ts", "aac", False), ("in.mkv", "opus", True)],
                         ids=["copied", "re-encoded"])
def test_audio_that_goes_back_in_time_is_skipped_not_an_error(tmp_path, name: str, codec: str,
                                                              decoded: bool) -> None:
    """The muxer refuses audio that is not after the audio before it ("non monotonically increasing dts";
    a garbled source did that, and the stream ended in 'Invalid argument ... This is a bug'): such audio
    is skipped and counted, and the audio written stays in order. AAC is copied; Opus (which HLS cannot
    carry) comes decoded and is encoded to AAC."""
    import av

    from media.live_source import LiveAudio
    from tests.media_factory import make_video

    clip = make_video(tmp_path / name, 32, 24, Fraction(25), 25, audio=codec)
    with av.open(str(clip)) as source:
        audio = source.streams.audio[0]
        packets = [p for p in source.demux(audio) if p.size]
        items = [f for p in packets for f in p.decode()] if decoded else packets
        times = [Fraction(i.pts) * i.time_base for i in items]
        output = LiveOutput(str(tmp_path / "out.m3u8"), 64, 48, Fraction(25), audio=audio, segment_seconds=1)
        assert output.needs_decoded_audio is decoded
        order = [*range(8), 4, *range(8, len(items))]  # the 5th item again after the 8th: not after it
        for index in order:
            output.put_audio(LiveAudio(items[index], times[index]), -times[0])
        black = np.zeros((48, 64, 3), np.uint8)
        for frame in range(25):
            assert output.write(black, Fraction(frame, 25))
        output.close()
    assert output.audio_dropped == 1 and output.audio_packets == len(items)
    with av.open(str(tmp_path / "out.m3u8")) as result:
        dts = [p.dts for p in result.demux(result.streams.audio[0]) if p.dts is not None]
    assert len(dts) >= 0.9 * len(items) and dts == sorted(dts) and len(set(dts)) == len(dts)
