"""``LiveOutput``: a growing, upscaled stream: an HLS playlist with its segments, or a URL to publish to.

- ``*.m3u8``: FFmpeg's ``hls`` muxer: H.264 (or HEVC) + the audio in MPEG-TS segments beside the
  playlist (``<name>_00000.ts``...), each segment written under a temporary name and renamed when
  complete, the playlist an ``EVENT`` playlist that lists every segment, so players (and browsers,
  through hls.js) play it while it grows; ``close()`` writes ``#EXT-X-ENDLIST``. With ``keep_segments=N``
  it is a sliding window instead (for a stream that runs for days): the newest N segments are listed, and
  older ones are deleted from the disk (one more is kept for players still fetching it).
- ``udp://``, ``srt://``, ``tcp://``: MPEG-TS; ``rtmp://``, ``rtmps://``: FLV.

Timestamps are the caller's (seconds, the source's clock); the video encoder runs with
``tune=zerolatency`` (no look-ahead, no B-frames: a frame in is a packet out). The source's audio is
copied when the container can carry its codec, else decoded and encoded to AAC. Every packet is muxed
from the thread that calls ``write`` (the encode thread); audio handed in by ``put_audio`` from another
thread waits in a bounded queue until then.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.colour import ColourTags, rgb_to_frame
from media.encode import EncodeSettings
from media.errors import MediaError, OutputNotWritable
from media.ffmpeg_relay import RelayUnavailable, SrtRelay, ffmpeg_program, needs_relay, pyav_has_protocol
from media.live_source import LiveAudio, scheme
from media.stall_guard import StallGuard

log = logging.getLogger(__name__)

FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtmp": "flv", "rtmps": "flv"}
OPTIONAL_PROTOCOLS = ("srt", "rtmps")
CONNECTED = ("rtmp", "rtmps", "tcp", "srt")
"""Protocols whose writes wait while the receiver reads nothing: guarded by ``StallGuard``."""
COPYABLE_AUDIO = {"hls": {"aac", "mp3", "ac3", "eac3", "mp2"}, "mpegts": {"aac", "mp3", "ac3", "eac3", "mp2"},
                  "flv": {"aac", "mp3"}}
LIVE_CODECS = {"hls": ("h264", "hevc"), "mpegts": ("h264", "hevc"), "flv": ("h264",)}
TIME_BASE = Fraction(1, 90000)
AUDIO_QUEUE = 2000  # audio items waiting for the encode thread (about 40 s of AAC); older ones are dropped
BT709 = ColourTags(primaries=1, transfer=1, matrix=1, range=1)


class DestinationUnusable(MediaError):
    """The output cannot be written or published (a bad path or URL, a refused server); names it."""


def output_format(dest: str) -> str:
    """FFmpeg's muxer for ``dest`` (``hls``, ``mpegts``, ``flv``); ``DestinationUnusable`` naming the choices."""
    kind = scheme(dest)
    if not kind and dest.lower().endswith(".m3u8"):
        return "hls"
    if kind in FORMATS:
        return FORMATS[kind]
    raise DestinationUnusable(f"{dest}: cannot write a live stream there. Give a path ending in .m3u8 (an HLS "
                              "playlist and its segments) or a URL to publish to: udp://, srt://, tcp:// (MPEG-TS) "
                              "or rtmp:// (FLV).")


def segment_pattern(playlist: Path) -> Path:
    """Where the HLS segments of ``playlist`` go: ``<name>_%05d.ts`` beside it."""
    return playlist.with_name(f"{playlist.stem}_%05d.ts")


def check_destination(dest: str, codec: str, *, overwrite: bool = False, timeout: float = 5.0,
                      keep_segments: int | None = None) -> str:
    """Check ``dest`` before any work; returns its muxer. A playlist needs a writable folder (and
    ``overwrite`` when one is there); a URL a protocol this FFmpeg has and, for TCP-based ones, a server
    that accepts a connection. Raises ``DestinationUnusable`` / ``OutputNotWritable`` naming the fix."""
    fmt = output_format(dest)
    _check_window(dest, fmt, keep_segments)
    if codec not in LIVE_CODECS[fmt]:
        raise DestinationUnusable(f"{dest}: a live {fmt} stream carries {' or '.join(LIVE_CODECS[fmt])} video, not "
                                  f"{codec}. Choose --codec {LIVE_CODECS[fmt][0]}.")
    if fmt == "hls":
        _check_playlist(Path(dest), overwrite)
    else:
        _check_url(dest, timeout)
    return fmt


def _check_window(dest: str, fmt: str, keep_segments: int | None) -> None:
    if keep_segments is not None and fmt != "hls":
        raise DestinationUnusable(f"{dest}: keeping the newest {keep_segments} segments applies to an HLS playlist "
                                  "(DEST ending in .m3u8) only; a stream published to a URL keeps nothing.")


def _check_playlist(playlist: Path, overwrite: bool) -> None:
    folder = playlist.parent
    if not folder.is_dir():
        raise OutputNotWritable(f"{playlist}: the folder {folder} does not exist. Create it first.", playlist)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputNotWritable(f"{playlist}: the folder {folder} is not writable. Choose another place.", playlist)
    if playlist.exists() and not overwrite:
        raise DestinationUnusable(f"{playlist} already exists. Pass --overwrite to replace it (and its segments), "
                                  "or choose another name.")


def _check_url(url: str, timeout: float) -> None:
    kind = scheme(url)
    if needs_relay(kind):  # SRT through FFmpeg's program (media.ffmpeg_relay): it must be installed
        try:
            ffmpeg_program()
        except RelayUnavailable as exc:
            raise DestinationUnusable(f"{url}: {exc}") from None
    elif kind in OPTIONAL_PROTOCOLS and not pyav_has_protocol(kind):  # udp, tcp, rtmp: in every FFmpeg build
        raise DestinationUnusable(f"{url}: this FFmpeg build (PyAV {av.__version__}) has no {kind} protocol. "
                                  "Publish over udp:// or rtmp://, or write an .m3u8 playlist.")
    host, port = _host_port(url)
    if kind in ("rtmp", "rtmps", "tcp"):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise DestinationUnusable(f"{url}: cannot publish there: {exc.strerror or exc}. Start the server (or "
                                      "check the address) first.") from None
    else:
        try:
            socket.getaddrinfo(host, port)
        except OSError as exc:
            raise DestinationUnusable(f"{url}: unknown host {host!r}: {exc.strerror or exc}.") from None


def _host_port(url: str) -> tuple[str, int]:
    rest = url.partition("://")[2].split("/")[0].split("?")[0]
    host, _, port = rest.rpartition(":")
    default = {"rtmp": 1935, "rtmps": 443}.get(scheme(url), 0)
    try:
        return (host or rest).strip("[]"), int(port) if port else default
    except ValueError:
        raise DestinationUnusable(f"{url}: {port!r} is not a port number.") from None


class LiveOutput:
    """Encode upscaled frames into ``dest`` as they come (see the module doc).

    ``write(rgb, time, duration)`` (the ``EncodeThread`` writer protocol): HWC uint8 RGB of ``width`` x
    ``height`` at ``time`` seconds (increasing). ``put_audio(item, shift)``: a ``LiveAudio`` from the
    source, shown at ``item.time + shift``; any thread. ``close()`` flushes and finishes (the playlist's
    end), whatever happened before.
    """

    def __init__(self, dest: str, width: int, height: int, rate: Fraction, *, audio: Any = None,
                 encode: EncodeSettings | None = None, segment_seconds: float = 2.0, timeout: float = 5.0,
                 keep_segments: int | None = None) -> None:
        self.dest = dest
        self.format = output_format(dest)
        self.width, self.height = width, height
        self.encode = encode or EncodeSettings("h264")
        self.copy_audio = audio is not None and audio.codec_context.name in COPYABLE_AUDIO[self.format]
        self.frames = 0
        self.audio_packets = 0
        self.audio_dropped = 0
        self._audio_in: collections.deque[tuple[LiveAudio, Fraction]] = collections.deque()
        self._lock = threading.Lock()
        self._last_time: Fraction | None = None
        self._audio_last: Fraction | None = None  # seconds of the newest audio written
        self._closed = False
        options = self._muxer_options(segment_seconds, keep_segments)
        self._relay = self._start_relay(dest)
        target = self._relay.local if self._relay is not None else dest
        try:
            self._out = av.open(target, "w", format=self.format, options=options, timeout=timeout)
        except (av.FFmpegError, OSError) as exc:
            if self._relay is not None:
                self._relay.close()
            raise DestinationUnusable(f"{dest}: cannot write the live stream: {exc}") from exc
        connected = scheme(dest) in CONNECTED and self._relay is None
        self._guard = StallGuard(*_host_port(dest), timeout) if connected else None
        self._video = self._add_video(rate)
        self._audio, self._audio_encoder = self._add_audio(audio)
        log.info("live output %s (%s): %dx%d %s, audio %s", dest, self.format, width, height, self.encode.codec,
                 "none" if audio is None else ("copied" if self.copy_audio else "re-encoded to AAC"))

    @staticmethod
    def _start_relay(dest: str) -> SrtRelay | None:
        """SRT where PyAV's FFmpeg has none: MPEG-TS to a loopback UDP port, FFmpeg's program publishes it."""
        if not needs_relay(scheme(dest)):
            return None
        try:
            return SrtRelay.publish(dest)
        except MediaError as exc:
            raise DestinationUnusable(str(exc)) from exc

    @property
    def needs_decoded_audio(self) -> bool:
        """Whether ``put_audio`` must be given decoded frames (the audio is re-encoded) rather than packets."""
        return self._audio_encoder is not None

    def _muxer_options(self, segment_seconds: float, keep_segments: int | None) -> dict[str, str]:
        _check_window(self.dest, self.format, keep_segments)
        if self.format != "hls":
            return {}
        options = {"hls_time": f"{segment_seconds:g}", "hls_flags": "temp_file+independent_segments",
                   "hls_segment_filename": str(segment_pattern(Path(self.dest)))}
        if keep_segments is None:
            options.update(hls_list_size="0", hls_playlist_type="event")
        else:  # a sliding window: FFmpeg deletes what falls out of it (hls_delete_threshold: 1 more kept)
            options.update(hls_list_size=str(keep_segments), hls_flags=options["hls_flags"] + "+delete_segments")
        return options

    def _add_video(self, rate: Fraction) -> Any:
        spec = self.encode.spec
        options = self.encode.codec_options(self.width)
        if self.encode.preset is None and spec.default_preset is not None:
            options["preset"] = "veryfast"  # live: keep up first
        options["tune"] = "zerolatency"
        stream = self._out.add_stream(spec.encoder, rate=rate, options=options)
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = self.encode.pix_fmt_for(self.width, self.height)
        ctx = stream.codec_context
        ctx.time_base = TIME_BASE
        ctx.framerate = rate
        ctx.gop_size = max(1, round(rate))  # a key frame every second: segments cut close to their length
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = 1, 1, 1, 1
        return stream

    def _add_audio(self, audio: Any) -> tuple[Any, Any]:
        if audio is None:
            return None, None
        if self.copy_audio:
            return self._out.add_stream_from_template(audio), None
        ctx = audio.codec_context
        stream = self._out.add_stream("aac", rate=ctx.sample_rate or 48000)
        stream.codec_context.layout = "stereo" if (ctx.channels or 2) >= 2 else "mono"
        stream.codec_context.time_base = Fraction(1, ctx.sample_rate or 48000)
        return stream, stream.codec_context

    # -- writing -------------------------------------------------------------------------------

    def put_audio(self, item: LiveAudio, shift: Fraction) -> None:
        """Queue the source's audio (shown at ``item.time + shift`` seconds) for the next ``write``."""
        if self._audio is None or self._closed:
            return
        if len(self._audio_in) >= AUDIO_QUEUE:
            self._audio_in.popleft()
            self.audio_dropped += 1
        self._audio_in.append((item, shift))

    def write(self, rgb: np.ndarray, time: Fraction, duration: Fraction | None = None) -> bool:
        """Encode one frame shown at ``time`` seconds, after the audio queued so far; False when it was not
        written (closed, or not after the previous frame's time)."""
        with self._lock:
            if self._closed:
                return False
            if rgb.shape != (self.height, self.width, 3):
                raise ValueError(f"{self.dest}: a {rgb.shape} frame, expected ({self.height}, {self.width}, 3).")
            ticks = round(Fraction(time) / TIME_BASE)
            if self._last_time is not None and ticks <= self._last_time:
                log.debug("%s: frame at %s s is not after the previous one; skipped", self.dest, float(time))
                return False
            self._last_time = ticks
            self._drain_audio()
            frame = rgb_to_frame(rgb, self._video.pix_fmt, BT709, self.dest)
            frame.pts, frame.time_base = ticks, TIME_BASE
            self._mux(self._video.encode(frame))
            self.frames += 1
            return True

    def _drain_audio(self) -> None:
        while self._audio_in:
            item, shift = self._audio_in.popleft()
            at = item.time + shift
            if at < 0:
                continue  # before the output's first moment
            unit = item.item.time_base if self._audio_encoder is None else Fraction(1, item.item.sample_rate)
            ticks = round(at / unit)
            if self._audio_last is not None and ticks * unit <= self._audio_last:
                # not after the audio written before it (a garbled source): the muxer would refuse it
                log.debug("%s: audio at %s s is not after the previous audio; skipped", self.dest, float(at))
                self.audio_dropped += 1
                continue
            self._audio_last = ticks * unit
            if self._audio_encoder is None:
                packet = item.item
                delta = (packet.dts - packet.pts) if packet.dts is not None else 0
                packet.pts = ticks
                packet.dts = packet.pts + delta
                packet.stream = self._audio
                self._mux([packet])
            else:
                frame = item.item
                frame.pts, frame.time_base = ticks, unit
                self._mux(self._audio.encode(frame))
            self.audio_packets += 1

    def _mux(self, packets: list[Any]) -> None:
        try:
            with self._guard or contextlib.nullcontext():  # a connection opens (and shakes hands) in the first write
                for packet in packets:
                    self._out.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            if self._guard is not None and self._guard.tripped:
                raise DestinationUnusable(f"{self.dest}: the receiver read nothing for {self._guard.timeout:g} s, so "
                                          "the stream was ended. Check the server, then start again.") from exc
            raise
        failure = self._relay.failure() if self._relay is not None else None
        if failure is not None:
            raise DestinationUnusable(f"{self.dest}: cannot publish there: {failure}. Start the receiver (or check "
                                      "the address), then start again.")

    def close(self) -> None:
        """Flush the encoders and finish the stream (the playlist gets ``#EXT-X-ENDLIST``); safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._drain_audio()
                self._mux(self._video.encode(None))
                if self._audio_encoder is not None:
                    self._mux(self._audio.encode(None))
            except (av.FFmpegError, OSError, ValueError, DestinationUnusable) as exc:
                log.warning("%s: flushing the encoders failed: %s", self.dest, exc)
            finally:
                try:
                    self._out.close()
                except (av.FFmpegError, OSError) as exc:
                    log.warning("%s: finishing the stream failed: %s", self.dest, exc)
                if self._guard is not None:
                    self._guard.close()
                if self._relay is not None:
                    self._relay.close(drain=True)
