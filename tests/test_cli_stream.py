"""``vsr stream SOURCE -o DEST`` through the command line: a live MPEG-TS source over loopback UDP (H.264 +
AAC at real time, ``tests.live_sender``) upscaled into a growing HLS playlist; Ctrl-C and a dead source
finish the playlist; an unreachable source and a bad destination are one error line and exit 3."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from media.ffmpeg_relay import free_udp_port
from tests.live_sender import Sender
from tests.media_factory import ROOT_DIR, make_video
from vsr.cli import main

STARTUP_S = 180.0  # the command's start (imports, the model) on a busy machine; a bound, not a timing
SUMMARY = re.compile(r"Stream:\s+(\d+) frames in, (\d+) out, (\d+) dropped .*latency median ([0-9.]+) s, "
                     r"p95 ([0-9.]+) s; first output after ([0-9.]+) s; (.*)")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT_DIR), "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache"),
            "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp"), "HF_HUB_OFFLINE": "1"}


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vsr", "stream", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(tmp_path))


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float, segments: int = 1) -> float:
    """Seconds until ``path`` (a playlist) lists ``segments`` segments; fails if the command ends first."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if path.exists() and path.read_text().count(".ts") >= segments:
            return time.monotonic() - started
        if proc.poll() is not None:
            pytest.fail(f"vsr stream ended early ({proc.returncode}): {proc.communicate()[1][-3000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no playlist with {segments} segments at {path} after {seconds} s: {proc.communicate()[1][-3000:]}")


def _segments(playlist: Path) -> list[Path]:
    return [playlist.parent / line for line in playlist.read_text().splitlines() if line.endswith(".ts")]


def _decode(segment: Path) -> tuple[list[tuple[int, int]], int, str | None]:
    """(size of each video frame, audio frames, audio codec) of one segment."""
    with av.open(str(segment)) as container:
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        sizes, sounds = [], 0
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                sizes.append((frame.width, frame.height))
            else:
                sounds += 1
    return sizes, sounds, audio


def _summary(out: str) -> re.Match:
    match = SUMMARY.search(out)
    assert match, f"no summary line in: {out}"
    return match


LIVE = ["--engine", "bicubic", "--timeout", "1", "--reconnects", "1", "--reconnect-delay", "0.1",
        "--segment-seconds", "1"]


@pytest.mark.slow
def test_a_live_udp_source_becomes_a_growing_hls_playlist_with_its_audio(tmp_path: Path) -> None:
    """The sender stops after a few seconds of playlist: the source is dead, one reconnect fails, and the
    stream ends cleanly with every frame accounted for."""
    port = free_udp_port()
    (tmp_path / "live").mkdir()
    playlist = tmp_path / "live" / "out.m3u8"
    proc = _start([f"udp://127.0.0.1:{port}", "-o", "live/out.m3u8", *LIVE], tmp_path)
    sender = Sender(port, 600.0)
    sender.start()
    try:
        _wait_for(playlist, proc, STARTUP_S, segments=1)
        assert "#EXT-X-ENDLIST" not in playlist.read_text()  # growing: playable while it is written
        first = _decode(_segments(playlist)[0])
        assert first[0] and set(first[0]) == {(256, 192)}
        _wait_for(playlist, proc, 60, segments=3)
    finally:
        sender.stop()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    frames_in, frames_out, dropped, median, p95, first_delay, ended = _summary(out).groups()
    assert int(frames_in) == int(frames_out) + int(dropped) and int(frames_out) >= 50
    assert 0 < float(median) <= float(p95) and float(first_delay) > 0
    assert "gave up after 1 reconnect" in ended and "no data for 1 s" in ended
    assert "latency" in err and "live: in" in err  # the status line (plain lines: stderr is a pipe)
    text = playlist.read_text()
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and "#EXT-X-PLAYLIST-TYPE:EVENT" in text
    decoded = [_decode(segment) for segment in _segments(playlist)]
    assert {size for sizes, _, _ in decoded for size in sizes} == {(256, 192)}  # exactly 4x 64x48
    assert sum(len(sizes) for sizes, _, _ in decoded) == int(frames_out)
    assert all(codec == "aac" and sounds > 0 for _, sounds, codec in decoded)  # the source's audio, copied
    assert not list(playlist.parent.glob("*.tmp"))


def _frame_times(playlist: Path) -> tuple[list[float], list[float]]:
    """Presentation times in seconds of every video and every audio frame, in playlist order."""
    video: list[float] = []
    audio: list[float] = []
    for segment in _segments(playlist):
        with av.open(str(segment)) as container:
            for frame in container.decode(*container.streams):
                (video if isinstance(frame, av.VideoFrame) else audio).append(float(frame.time))
    return video, audio


@pytest.mark.slow
def test_a_source_that_drops_and_comes_back_goes_on_in_the_same_playlist(tmp_path: Path) -> None:
    """The sender stops, and 1.5 s later a new one starts on the port (its clock from 0 again): the
    command reconnects, the playlist goes on with the gap kept in its timestamps and the audio with it,
    and when the second sender ends too the reconnects run out and the playlist is finished."""
    port = free_udp_port()
    playlist = tmp_path / "out.m3u8"
    proc = _start([f"udp://127.0.0.1:{port}", "-o", "out.m3u8", "--engine", "bicubic", "--timeout", "1",
                   "--reconnects", "2", "--reconnect-delay", "0.1", "--segment-seconds", "1"], tmp_path)
    first = Sender(port, 600.0)
    first.start()
    try:
        _wait_for(playlist, proc, STARTUP_S, segments=2)
    finally:
        first.stop()
    time.sleep(1.5)
    second = Sender(port, 4.0)
    second.start()
    second.join(30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert int(frames_in) == int(frames_out) + int(dropped)
    # one reconnect brought the source back; after the second sender, two found nothing
    assert ended.startswith("reconnected 1 time; ") and ended.endswith("gave up after 2 reconnects")
    assert f"udp://127.0.0.1:{port}: no data for 1 s; reconnecting in 0.1 s (attempt 1 of 2)" in err
    assert f"{port}: udp://" not in err  # the address is named once per line
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    video, audio = _frame_times(playlist)
    assert len(video) == int(frames_out)
    steps = [b - a for a, b in zip(video, video[1:])]
    assert min(steps) > 0  # one clock from start to end: never back to 0 at the second sender
    gap = max(range(len(steps)), key=steps.__getitem__)
    assert 1.4 <= steps[gap] <= 5.0, steps[gap]  # the 1.5 s the source was away (plus the reconnect's wait)
    after = video[gap + 1:]
    assert len(after) >= 50  # the second sender's 4 s, less what came before its first key frame
    # the second sender's sound came along with its pictures, on the same clock
    assert any(after[0] - 0.5 <= t <= after[-1] + 0.5 for t in audio)
    assert sum(after[0] <= t <= after[-1] for t in audio) >= 0.5 * len(after)


@pytest.mark.slow
def test_a_sender_restarted_within_the_time_out_goes_on_without_a_reconnect(tmp_path: Path) -> None:
    """A sender restarted on the port at once (its clock from 0 again, 4+ s back) is no silence, so nothing
    reconnects: the source's clock jumps back. Its frames were all "not after the previous one" (skipped,
    the picture frozen) and its first audio packet ended the command with "Invalid argument ... This is a
    bug". Now the output's clock goes on across the jump, said once on stderr, with the audio along."""
    port = free_udp_port()
    playlist = tmp_path / "out.m3u8"
    proc = _start([f"udp://127.0.0.1:{port}", "-o", "out.m3u8", "--engine", "bicubic", "--timeout", "2",
                   "--reconnects", "0", "--segment-seconds", "1"], tmp_path)
    first = Sender(port, 600.0)
    first.start()
    try:
        _wait_for(playlist, proc, STARTUP_S, segments=4)  # 4+ s of the first sender's clock
    finally:
        first.stop()
    second = Sender(port, 3.0)
    second.start()
    second.join(30)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert int(frames_in) == int(frames_out) + int(dropped) and int(dropped) <= 5, out
    assert ended == "the source stopped (no data for 2 s)", ended  # the end of the second sender; no reconnect
    assert err.count("the source's clock jumped back") == 1, err
    video, audio = _frame_times(playlist)
    assert len(video) == int(frames_out)
    steps = [b - a for a, b in zip(video, video[1:])]
    assert min(steps) > 0 and max(steps) < 1.0, max(steps)  # one clock, and no hole where the sender restarted
    gap = max(range(len(steps)), key=steps.__getitem__)
    after = video[gap + 1:]
    assert len(after) >= 50, len(after)  # the second sender's 3 s (less what came before its first key frame)
    assert sum(after[0] <= t <= after[-1] + 0.1 for t in audio) >= 0.5 * len(after)  # its sound along


@pytest.mark.slow
def test_ctrl_c_finishes_the_playlist(tmp_path: Path) -> None:
    port = free_udp_port()
    playlist = tmp_path / "out.m3u8"
    proc = _start([f"udp://127.0.0.1:{port}", "-o", "out.m3u8", *LIVE], tmp_path)
    sender = Sender(port, 600.0)
    sender.start()
    try:
        _wait_for(playlist, proc, STARTUP_S, segments=1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        sender.stop()
    assert proc.returncode == 0, err
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert int(frames_in) == int(frames_out) + int(dropped) and ended == "cancelled"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    assert sum(len(_decode(s)[0]) for s in _segments(playlist)) == int(frames_out)


@pytest.mark.slow
def test_the_diffusion_model_streams_a_file_without_dropping(tmp_path: Path, fixture_dir: Path, capsys,
                                                             model_threads) -> None:
    """A file without --realtime is read as fast as the engine goes: every frame out, at exactly 4x."""
    clip = make_video(tmp_path / "clip.mp4", 32, 24, Fraction(25), 2, audio="aac")
    code = main(["stream", str(clip), "-o", str(tmp_path / "out.m3u8"), "--model-id", str(fixture_dir / "model"),
                 "--flow-weights", str(fixture_dir / "raft_large.safetensors"), "--device", "cpu", "--precision",
                 "fp32", "--seed", "7"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Engine:   stream-diffvsr on cpu (fp32), seed 7" in out
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert (int(frames_in), int(frames_out), int(dropped), ended) == (2, 2, 0, "the source ended")
    playlist = tmp_path / "out.m3u8"
    assert playlist.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    decoded = [_decode(segment) for segment in _segments(playlist)]
    assert [size for sizes, _, _ in decoded for size in sizes] == [(128, 96)] * 2
    assert all(codec == "aac" for _, _, codec in decoded)


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.parametrize("scheme", ["tcp", "rtmp"])
def test_an_unreachable_source_is_one_line_naming_it_and_exit_3(tmp_path: Path, capsys, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{_refused_port()}" + ("/live/cam" if scheme == "rtmp" else "")
    code = main(["stream", url, "-o", str(tmp_path / "out.m3u8"), "--engine", "bicubic", "--timeout", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1
    assert err.startswith(f"vsr: error: {url}: cannot open the source: Connection refused")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dest, words", [
    ("missing/out.m3u8", "does not exist. Create it first"),
    ("out.mp4", "Give a path ending in .m3u8"),
    ("rtmp://127.0.0.1:{port}/live/up", "cannot publish there: Connection refused"),
    ("srt://127.0.0.1:x{port}", "is not a port number"),  # SRT itself: tests/test_cli_stream_srt.py
    ("udp://127.0.0.1:{port} --keep-segments 3", "applies to an HLS playlist (DEST ending in .m3u8) only"),
])
def test_a_bad_destination_is_refused_before_any_work(tmp_path: Path, capsys, dest: str, words: str) -> None:
    """The source would take seconds to give up (silent UDP); the destination is refused at once."""
    dest, *flags = dest.format(port=_refused_port()).split()
    dest = dest if "://" in dest else str(tmp_path / dest)
    started = time.monotonic()
    code = main(["stream", f"udp://127.0.0.1:{free_udp_port()}", "-o", dest, "--engine", "bicubic", "--timeout", "30",
                 *flags])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and words in err and dest in err, err
    assert time.monotonic() - started < 20  # never waited for the source


def test_an_existing_playlist_needs_overwrite(tmp_path: Path, capsys) -> None:
    (tmp_path / "out.m3u8").write_text("#EXTM3U\n")
    code = main(["stream", f"udp://127.0.0.1:{free_udp_port()}", "-o", str(tmp_path / "out.m3u8")])
    assert code == 3 and "already exists. Pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, words", [
    ("--max-latency", "-1", "max_latency='-1' must be at least"),
    ("--reconnects", "x", "reconnects='x' is not a whole number"),
    ("--keep-segments", "0", "keep_segments='0' must be 1 or more"),
    ("--codec", "prores", "carries h264 or hevc video, not prores"),
])
def test_bad_live_flags_are_named(tmp_path: Path, capsys, flag: str, value: str, words: str) -> None:
    code = main(["stream", f"udp://127.0.0.1:{free_udp_port()}", "-o", str(tmp_path / "out.m3u8"), flag, value])
    assert code in (2, 3) and words in capsys.readouterr().err


def test_keep_segments_makes_a_sliding_window_that_deletes_older_segments(tmp_path: Path, capsys) -> None:
    """For a stream that runs for days: the playlist lists the newest 2 segments, FFmpeg deletes the
    older ones (keeping one more for a player still fetching it), and the end still finishes it."""
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 150, audio="aac", gop=25)  # 6 s, 1 s segments
    (tmp_path / "live").mkdir()
    playlist = tmp_path / "live" / "out.m3u8"
    code = main(["stream", str(clip), "-o", str(playlist), "--engine", "bicubic", "--segment-seconds", "1",
                 "--keep-segments", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert _summary(out).groups()[:3] == ("150", "150", "0")
    text = playlist.read_text()
    listed = _segments(playlist)
    assert len(listed) == 2 and "#EXT-X-PLAYLIST-TYPE" not in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1)) >= 3  # 6 segments made, 2 listed
    on_disk = sorted(playlist.parent.glob("*.ts"))
    assert set(listed) <= set(on_disk) and len(on_disk) <= 3, on_disk
    assert not list(playlist.parent.glob("*.tmp"))
    decoded = [_decode(segment) for segment in listed]
    assert {size for sizes, _, _ in decoded for size in sizes} == {(256, 192)}
    assert 25 <= sum(len(sizes) for sizes, _, _ in decoded) <= 75  # the newest seconds only
    assert all(codec == "aac" and sounds > 0 for _, sounds, codec in decoded)


@pytest.mark.parametrize("codec, suffix", [("aac", ".mp4"), ("opus", ".mkv")])
def test_the_audio_is_copied_or_encoded_to_aac_in_sync(tmp_path: Path, capsys, codec: str, suffix: str) -> None:
    """A file read as fast as the engine goes (nothing dropped), its audio starting 0.2 s after the video:
    AAC is copied, Opus (which HLS segments do not carry) becomes AAC; either way it keeps its offset and
    lasts as long as the source's."""
    clip = make_video(tmp_path / f"clip{suffix}", 64, 48, Fraction(25), 25, audio=codec, audio_offset=Fraction(1, 5))
    code = main(["stream", str(clip), "-o", str(tmp_path / "out.m3u8"), "--engine", "bicubic"])
    out = capsys.readouterr().out
    assert code == 0, out
    frames_in, frames_out, dropped, *_, ended = _summary(out).groups()
    assert (int(frames_in), int(frames_out), int(dropped), ended) == (25, 25, 0, "the source ended")
    video_times, audio_times = [], []
    for segment in _segments(tmp_path / "out.m3u8"):
        with av.open(str(segment)) as container:
            assert container.streams.audio[0].codec_context.name == "aac"
            for frame in container.decode(*container.streams):
                (video_times if isinstance(frame, av.VideoFrame) else audio_times).append(float(frame.time))
    assert len(video_times) == 25
    assert abs(min(audio_times) - min(video_times) - 0.2) < 0.03  # the source's offset, kept
    assert abs(max(audio_times) - max(video_times) - 0.2) < 0.1  # and as long (AAC frames are 21 ms)


def test_a_stream_published_to_udp_is_mpeg_ts_at_4x_with_audio(tmp_path: Path, capsys) -> None:
    """DEST a URL: a receiver on loopback UDP reads MPEG-TS with the 4x pictures and the AAC audio."""
    import threading

    port = free_udp_port()
    got: dict[str, object] = {}

    def receive() -> None:
        with av.open(f"udp://127.0.0.1:{port}", options={"timeout": "3000000", "overrun_nonfatal": "1",
                                                         "fifo_size": "100000"}, timeout=(120, 3)) as container:
            got["format"] = container.format.name
            got["audio"] = [s.codec_context.name for s in container.streams.audio]
            sizes = []
            try:
                for frame in container.decode(video=0):
                    sizes.append((frame.width, frame.height))
            except (av.FFmpegError, OSError):
                pass  # the sender is gone: silence ends the read
            got["sizes"] = sizes

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    time.sleep(0.5)
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 50, audio="aac")
    code = main(["stream", str(clip), "-o", f"udp://127.0.0.1:{port}", "--engine", "bicubic", "--realtime"])
    out = capsys.readouterr().out
    assert code == 0, out
    frames_out = int(_summary(out).group(2))
    receiver.join(60)
    assert got.get("format") == "mpegts" and got.get("audio") == ["aac"]
    sizes = got.get("sizes")
    assert isinstance(sizes, list) and set(sizes) == {(256, 192)}
    assert frames_out - 2 <= len(sizes) <= frames_out  # what was written came through (loopback UDP)


def test_a_stream_published_to_rtmp_is_flv_at_4x_with_audio(tmp_path: Path, capsys) -> None:
    """DEST an rtmp:// URL: FFmpeg's RTMP listener (tests/rtmp_receiver.py, another process) gets FLV with
    the 4x pictures and the AAC audio, every frame the command wrote."""
    import json

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen([sys.executable, str(ROOT_DIR / "tests" / "rtmp_receiver.py"), str(port)],
                                stdout=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _listens(port):  # a probe, as the command makes one too
            assert receiver.poll() is None and time.monotonic() < deadline, "the RTMP receiver did not listen"
            time.sleep(0.1)
        clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 50, audio="aac")
        code = main(["stream", str(clip), "-o", f"rtmp://127.0.0.1:{port}/live/up", "--engine", "bicubic",
                     "--realtime"])
        out = capsys.readouterr().out
        assert code == 0, out
        got = json.loads(receiver.communicate(timeout=120)[0])
    finally:
        receiver.kill()
        receiver.wait(timeout=30)
    assert got["format"] == "flv" and got["audio"] == ["aac"], got
    assert got["sizes"] == [[256, 192]] and got["frames"] == int(_summary(out).group(2)) == 50, got


def _listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
