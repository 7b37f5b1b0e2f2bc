"""``vsr stream`` from sources that a server hands out, on loopback: an HLS URL over HTTP (a finished
playlist, a recording, is read like a file, every frame and its audio, and ends; a live playlist is
followed at its pace until its publisher finishes it, and is not read a second time from its start), and
an RTMP stream that FFmpeg's program serves to the player that connects (``-listen 1``)."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media.ffmpeg_relay import ffmpeg_program
from tests.app_harness import free_port
from tests.live_sender import publish_hls
from tests.media_factory import make_video
from tests.test_cli_stream import STARTUP_S, _decode, _env, _segments, _summary, _wait_for
from vsr.cli import main

pytestmark = pytest.mark.slow  # each test streams a few seconds at real time


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def web_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its URL."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _stream(url: str, tmp_path: Path, *extra: str, timeout: float = STARTUP_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsr", "stream", url, "-o", "out.m3u8", "--engine", "bicubic",
                           "--timeout", "2", "--reconnect-delay", "0.1", "--segment-seconds", "1", *extra],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=timeout)


def test_a_finished_hls_playlist_is_read_like_a_file(tmp_path: Path, web_folder: tuple[Path, str]) -> None:
    """A VOD playlist over HTTP was taken for a live source: read as fast as the network gave it (95 % of
    its frames dropped), then 'reconnected' at its end, which read it again from the start, for ever."""
    folder, base = web_folder
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 100, audio="aac", gop=25)
    with av.open(str(clip)) as source, av.open(str(folder / "vod.m3u8"), "w", format="hls",
                                                options={"hls_time": "1", "hls_playlist_type": "vod"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (source.streams.video[0], source.streams.audio[0])}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    assert (folder / "vod.m3u8").read_text().count(".ts") >= 4  # several segments, as a server has them
    done = _stream(f"{base}/vod.m3u8", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "read as fast as the engine goes" in done.stdout
    frames_in, frames_out, dropped, *_, ended = _summary(done.stdout).groups()
    assert (int(frames_in), int(frames_out), int(dropped)) == (100, 100, 0) and ended == "the source ended"
    assert "reconnecting" not in done.stderr
    playlist = tmp_path / "out.m3u8"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    decoded = [_decode(segment) for segment in _segments(playlist)]
    assert [size for sizes, _, _ in decoded for size in sizes] == [(256, 192)] * 100
    assert all(codec == "aac" and sounds > 0 for _, sounds, codec in decoded)


def test_a_live_hls_playlist_is_followed_until_its_publisher_finishes_it(tmp_path: Path,
                                                                         web_folder: tuple[Path, str]) -> None:
    folder, base = web_folder
    stop = threading.Event()
    written: list[int] = []
    publisher = threading.Thread(target=lambda: written.append(publish_hls(folder / "live.m3u8", 600.0, stop=stop)),
                                 name="hls-publisher", daemon=True)
    publisher.start()
    deadline = time.monotonic() + 60
    while not ((folder / "live.m3u8").exists() and ".ts" in (folder / "live.m3u8").read_text()):
        assert time.monotonic() < deadline and publisher.is_alive(), "the HLS publisher wrote no playlist"
        time.sleep(0.05)  # a player asking before the first segment gets 404, as from any HLS server
    proc = subprocess.Popen([sys.executable, "-m", "vsr", "stream", f"{base}/live.m3u8", "-o", "out.m3u8",
                             "--engine", "bicubic", "--timeout", "3", "--reconnect-delay", "0.1",
                             "--segment-seconds", "1", "--max-latency", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=_env(tmp_path))
    try:
        _wait_for(tmp_path / "out.m3u8", proc, STARTUP_S, segments=2)
    finally:
        stop.set()  # the publisher writes #EXT-X-ENDLIST
        publisher.join(30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "played in real time" in out
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    # HLS comes a segment (25 frames) at a time: an engine far faster than the source has no reason to
    # drop any within 5 s (it dropped 22 %, taking the bursts' gaps for the source's frame interval)
    assert int(dropped) == 0 and int(frames_in) == int(frames_out)
    assert ended == "the source ended (its HLS playlist is finished)"
    assert 25 <= int(frames_in) <= written[0]  # followed while it grew, never read again from its start
    assert re.search(r"end of stream; reconnecting in 0\.1 s \(attempt 1 of 3\)", err)
    playlist = tmp_path / "out.m3u8"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert sum(len(_decode(segment)[0]) for segment in _segments(playlist)) == int(frames_out)


def _tcp_listening(port: int) -> bool:
    """Whether something listens on TCP ``port`` (read from /proc: a test connection would be taken for the
    player by a server that serves one)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                return True
    return False


def test_an_rtmp_stream_becomes_an_hls_playlist_with_its_audio(tmp_path: Path, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 150, audio="aac", gop=25)  # 6 s
    port = free_port()
    server = subprocess.Popen([ffmpeg_program(), "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-i",
                               str(clip), "-map", "0", "-c", "copy", "-f", "flv", "-listen", "1",
                               f"rtmp://127.0.0.1:{port}/live/cam"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _tcp_listening(port):
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "FFmpeg's RTMP server did not listen"
            time.sleep(0.05)
        playlist = tmp_path / "out.m3u8"
        code = main(["stream", f"rtmp://127.0.0.1:{port}/live/cam", "-o", str(playlist), "--engine", "bicubic",
                     "--timeout", "1", "--reconnects", "1", "--reconnect-delay", "0.1", "--segment-seconds", "1"])
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=30)
    out = capsys.readouterr().out
    assert code == 0, out
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert int(frames_in) == int(frames_out) + int(dropped) and int(frames_out) >= 100, out
    assert "gave up after 1 reconnect" in ended  # the stream ended with the clip; nobody serves it again
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    decoded = [_decode(segment) for segment in _segments(playlist)]
    assert {size for sizes, _, _ in decoded for size in sizes} == {(256, 192)}
    assert sum(len(sizes) for sizes, _, _ in decoded) == int(frames_out)
    assert all(codec == "aac" and sounds > 0 for _, sounds, codec in decoded)
