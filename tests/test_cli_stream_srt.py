"""``vsr stream`` with SRT: PyAV's FFmpeg has no SRT, so ``media.ffmpeg_relay`` carries it through the
FFmpeg program of the imageio-ffmpeg wheel. The test's peers are that program too: an SRT listener that
sends a clip (H.264 + AAC in MPEG-TS at real time) and an SRT listener that receives, on loopback."""

from __future__ import annotations

import re
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media.ffmpeg_relay import ffmpeg_program, free_udp_port, pyav_has_protocol, udp_bound
from tests.media_factory import make_video
from vsr.cli import main

BOUND_S = 120.0  # a bound on each wait, not a timing
SIZES_4X = {(256, 192)}


def _peer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([ffmpeg_program(), "-nostdin", "-hide_banner", "-loglevel", "error", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _listening(peer: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + BOUND_S
    while not udp_bound(port):  # an SRT listener binds its UDP port
        assert peer.poll() is None, peer.communicate()[1]
        assert time.monotonic() < deadline, "the SRT peer did not listen"
        time.sleep(0.05)


def _stop(peer: subprocess.Popen) -> None:
    if peer.poll() is None:
        peer.kill()
    peer.communicate(timeout=30)


def _counts(summary: str) -> tuple[int, int, int]:
    """Frames in, out and dropped, from the command's summary line."""
    found = re.match(r"Stream:\s+(\d+) frames in, (\d+) out, (\d+) dropped", summary)
    assert found, summary
    return int(found[1]), int(found[2]), int(found[3])


def _decoded(path: Path) -> tuple[list[tuple[int, int]], list[str]]:
    with av.open(str(path)) as container:
        audio = [s.codec_context.name for s in container.streams.audio]
        return [(f.width, f.height) for f in container.decode(video=0)], audio


def test_pyav_has_no_srt_so_it_is_relayed() -> None:
    """Why the relay exists; if a PyAV build brings SRT, the relay is not used and this says so."""
    assert not pyav_has_protocol("srt") and pyav_has_protocol("udp")


@pytest.mark.slow
def test_an_srt_source_becomes_an_hls_playlist_with_its_audio(tmp_path: Path, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 150, audio="aac")  # 6 s
    port = free_udp_port()
    sender = _peer("-re", "-i", str(clip), "-map", "0", "-c", "copy", "-f", "mpegts",
                   f"srt://127.0.0.1:{port}?mode=listener")
    try:
        _listening(sender, port)
        playlist = tmp_path / "out.m3u8"
        code = main(["stream", f"srt://127.0.0.1:{port}", "-o", str(playlist), "--engine", "bicubic", "--timeout", "1",
                     "--reconnects", "1", "--reconnect-delay", "0.1", "--segment-seconds", "1"])
    finally:
        _stop(sender)
    out = capsys.readouterr().out
    assert code == 0, out
    summary = next(line for line in out.splitlines() if line.startswith("Stream:"))
    frames_in, frames_out, dropped = _counts(summary)
    assert frames_in == frames_out + dropped and frames_out >= 100, summary
    # The sender's end reaches the relay as the connection's end, or first as silence (SRT's close may come later).
    assert re.search(r"the source stopped \((the connection ended|no data for 1 s)", summary), summary
    assert "gave up after 1 reconnect" in summary, summary
    text = playlist.read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    sizes, audio = [], set()
    for name in (line for line in text.splitlines() if line.endswith(".ts")):
        got, codecs = _decoded(tmp_path / name)
        sizes += got
        audio.update(codecs)
    assert set(sizes) == SIZES_4X and len(sizes) == frames_out and audio == {"aac"}


@pytest.mark.slow
def test_a_stream_published_to_srt_is_mpeg_ts_at_4x_with_audio(tmp_path: Path, capsys) -> None:
    port = free_udp_port()
    received = tmp_path / "received.ts"
    receiver = _peer("-i", f"srt://127.0.0.1:{port}?mode=listener", "-map", "0", "-c", "copy", "-f", "mpegts",
                     "-y", str(received))
    try:
        _listening(receiver, port)
        clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 50, audio="aac")
        code = main(["stream", str(clip), "-o", f"srt://127.0.0.1:{port}", "--engine", "bicubic", "--realtime"])
        out = capsys.readouterr().out
        assert code == 0, out
        receiver.wait(BOUND_S)  # the relay closes the connection at the end: the receiver finishes its file
    finally:
        _stop(receiver)
    frames_out = _counts(next(line for line in out.splitlines() if line.startswith("Stream:")))[1]
    sizes, audio = _decoded(received)
    assert set(sizes) == SIZES_4X and audio == ["aac"]
    assert frames_out - 2 <= len(sizes) <= frames_out  # loopback UDP to the relay, then SRT


@pytest.mark.slow
def test_an_srt_destination_with_no_receiver_is_one_error_line_and_exit_3(tmp_path: Path, capsys) -> None:
    """SRT has no connection to test before the work (its handshake would start a stream): the relay's
    refused connection ends the command as soon as it publishes."""
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 250, audio="aac")
    url = f"srt://127.0.0.1:{free_udp_port()}"
    code = main(["stream", str(clip), "-o", url, "--engine", "bicubic", "--realtime"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and err[-1].startswith(f"vsr: error: {url}: cannot publish there: connection failed"), err
