"""``LiveSource``: decoded frames (and the audio) of anything FFmpeg opens as input, as they arrive.

A network stream (``udp://``, ``srt://``, ``rtmp://``, ``rtsp://``, ``tcp://``, an HLS ``http(s)://``
URL), a V4L2 camera (``/dev/video0``, when this FFmpeg build has the ``v4l2`` device) or a file. Every
blocking call is bounded: ``av.open``'s interrupt callback gives up after ``timeout`` seconds without
data, and the protocols get their own time-outs (microseconds, FFmpeg's unit: ``timeout`` for
UDP/TCP/SRT, ``rw_timeout`` for the others; UDP also ``fifo_size`` and ``overrun_nonfatal``, so a
slow reader loses packets instead of stopping the socket thread).

``read()`` yields ``LiveFrame`` (a video frame with its source time and arrival time) and
``LiveAudio`` (an audio packet, or a decoded audio frame with ``decode_audio``), in the order they
were demuxed. Frames flagged interlaced are deinterlaced (``media.deinterlace``: one frame late, same
times). Colour conversion to RGB is left to ``LiveFrame.rgb()``, so frames a caller drops
cost no conversion. Nothing here paces, drops or reconnects: that is the caller's policy.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from media.colour import ColourTags, frame_to_rgb, resolve_tags
from media.deinterlace import Deinterlacer
from media.errors import MediaError
from media.ffmpeg_relay import SrtRelay, needs_relay

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("udp", "rtp", "srt", "rtmp", "rtmps", "rtsp", "tcp", "http", "https")
UDP_FIFO_PACKETS = 100_000  # 188-byte packets the UDP thread may buffer (about 19 MB)
ANALYZE_SECONDS = 2.0  # how much of a live stream FFmpeg reads to find its streams
RELAY_ANALYZE_SECONDS = 0.5  # what the SRT relay's program reads of the stream before it sends (media.ffmpeg_relay)
RELAY_START_SECONDS = 3.0  # more time for the first packet through the relay: its start, handshake and analysis


class SourceUnavailable(MediaError):
    """The source cannot be opened or read (refused, unreachable, silent, not a video); names it."""


@dataclass(frozen=True)
class LiveFrame:
    """One decoded video frame: ``time`` on the source's clock (seconds), ``arrival`` when it was decoded
    (``time.monotonic()``), ``index`` counted from the source's first frame (across reconnects)."""

    frame: av.VideoFrame
    time: Fraction
    arrival: float
    index: int
    tags: ColourTags

    def rgb(self) -> np.ndarray:
        """HWC uint8 RGB, converted with the stream's colour matrix and range."""
        return frame_to_rgb(self.frame, self.tags, "live source")


@dataclass(frozen=True)
class LiveAudio:
    """An audio packet (or, with ``decode_audio``, a decoded ``av.AudioFrame``) with its source ``time``."""

    item: Any
    time: Fraction


def scheme(url: str) -> str:
    """The URL's scheme (``udp``, ``rtmp``...), ``""`` for a path."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def is_live(url: str) -> bool:
    """Whether ``url`` is a live source (network or device) rather than a file."""
    return scheme(url) in NETWORK_SCHEMES or url.startswith("/dev/")


def demuxer_available(name: str) -> bool:
    """Whether PyAV's FFmpeg has the demuxer (or device) ``name``; its list names each one's aliases
    together (``video4linux2,v4l2``, ``mov,mp4,m4a,3gp,3g2,mj2``)."""
    return any(name in entry.split(",") for entry in av.formats_available) if name else False


def protocol_options(url: str, timeout: float) -> dict[str, str]:
    """FFmpeg input options for ``url``'s protocol: time-outs (microseconds), UDP's buffer, a short analysis."""
    micro = str(int(timeout * 1_000_000))
    kind = scheme(url)
    options = {"analyzeduration": str(int(ANALYZE_SECONDS * 1_000_000))} if kind else {}
    if kind == "udp" or kind == "rtp":
        options.update({"timeout": micro, "fifo_size": str(UDP_FIFO_PACKETS), "overrun_nonfatal": "1"})
    elif kind in ("tcp", "srt"):
        options["timeout"] = micro
    elif kind == "rtsp":
        options["timeout"] = micro
    elif kind:
        options["rw_timeout"] = micro
    return options


class LiveSource:
    """Open ``url`` (``open()``, or as a context manager), then iterate ``read()``.

    ``timeout``: seconds without data before a read gives up (``SourceUnavailable`` on open; ``read``
    then ends with ``stalled`` set). ``input_format``: FFmpeg's demuxer (default: ``v4l2`` for
    ``/dev/video*``, else guessed). ``decode_audio``: yield decoded audio frames instead of packets.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, input_format: str | None = None,
                 decode_audio: bool = False) -> None:
        self.url = url
        self.timeout = timeout
        self.input_format = input_format or ("v4l2" if url.startswith("/dev/video") else None)
        self.decode_audio = decode_audio
        self.container: Any = None
        self.video: Any = None
        self.audio: Any = None
        self.tags: ColourTags | None = None
        self.stalled = False  # the last read() ended because no data came within the time-out
        self.error: str | None = None  # why the last read() ended early, for people
        self._index = 0
        self._relay: SrtRelay | None = None  # srt:// where PyAV's FFmpeg has no SRT (media.ffmpeg_relay)
        # interlaced frames made whole; kept across read() calls (the preroll's, then the stream's)
        self._deinterlacer = Deinterlacer(url)

    def open(self) -> "LiveSource":
        """Open the source and find its first video and audio streams; ``SourceUnavailable`` naming it."""
        if not scheme(self.url) and not os.path.exists(self.url):
            raise SourceUnavailable(f"{self.url}: no such file or device. Give an existing file, a /dev/video* "
                                    "camera or a URL (udp://, srt://, rtmp://, rtsp://, http(s)://...).")
        if self.input_format is not None and not demuxer_available(self.input_format):
            raise SourceUnavailable(f"{self.url}: this FFmpeg build (PyAV {av.__version__}) cannot read "
                                    f"{self.input_format} devices. Stream the camera over udp:// or rtmp:// instead.")
        target, start = self.url, 0.0
        if needs_relay(scheme(self.url)):
            try:
                self._relay = SrtRelay.receive(self.url, RELAY_ANALYZE_SECONDS)
            except MediaError as exc:
                raise SourceUnavailable(f"{self.url}: {exc}") from exc
            target, start = self._relay.local, RELAY_START_SECONDS
        try:
            self.container = av.open(target, "r", format=self.input_format,
                                     options=protocol_options(target, self.timeout + start),
                                     timeout=(self.timeout + start + 2 * ANALYZE_SECONDS, self.timeout))
        except (av.FFmpegError, OSError) as exc:
            reason = self._relay_failure() or _reason(exc, self.timeout, target)
            self.close()
            raise SourceUnavailable(f"{self.url}: cannot open the source: {reason}. "
                                    "Check that it is running and the address is right.") from exc
        videos = self.container.streams.video
        if not videos:
            self.close()
            raise SourceUnavailable(f"{self.url}: the source has no video stream.")
        self.video = videos[0]
        self.video.thread_type = "AUTO"
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        ctx = self.video.codec_context
        self.tags = resolve_tags(ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range,
                                 ctx.height or 0, ctx.format.name if ctx.format else None)
        log.info("opened %s: %s %sx%s at %s fps%s", self.url, ctx.name, ctx.width, ctx.height,
                 self.video.average_rate, f", audio {self.audio.codec_context.name}" if self.audio else ", no audio")
        return self

    @property
    def live(self) -> bool:
        """Whether the opened source is live (it comes at its own pace and has no end) rather than a
        recording: a file, or an http(s) URL with a known duration (a finished HLS playlist, a video file
        on a web server), which is read like a file instead of waited for and opened again at its end."""
        if not is_live(self.url):
            return False
        finite = self.container is not None and bool(self.container.duration)
        return not (scheme(self.url) in ("http", "https") and finite)

    @property
    def width(self) -> int:
        return int(self.video.codec_context.width)

    @property
    def height(self) -> int:
        return int(self.video.codec_context.height)

    @property
    def rate(self) -> Fraction:
        """The stream's nominal frame rate (25 when it declares none)."""
        rate = self.video.average_rate or self.video.guessed_rate
        return Fraction(rate) if rate else Fraction(25)

    def read(self) -> Iterator[LiveFrame | LiveAudio]:
        """Frames and audio as they are demuxed; ends at the end of the source or when it stalls or fails
        (``stalled`` / ``error`` say which; a clean end leaves both unset)."""
        self.stalled, self.error = False, None
        streams = [s for s in (self.video, self.audio) if s is not None]
        try:
            for packet in self.container.demux(streams):
                if packet.stream is self.audio:
                    yield from self._audio(packet)
                    continue
                for frame in packet.decode():
                    if frame.pts is not None:
                        yield from map(self._frame, self._deinterlacer.push(frame))
        except av.ExitError:  # the interrupt callback: no data within the time-out
            self.stalled, self.error = True, f"no data for {self.timeout:g} s"
        except (av.FFmpegError, OSError) as exc:
            self.error = _reason(exc, self.timeout, self.url)
            self.stalled = isinstance(exc, (TimeoutError, av.error.TimeoutError))
        yield from map(self._frame, self._deinterlacer.flush())  # the last picture an interlaced source made
        if self.error is not None and (failure := self._relay_failure()):
            self.error = failure  # the relay's connection ended: its reason, not the loopback's silence
        log.info("%s: reading ended (%s)", self.url, self.error or "end of the source")

    def _frame(self, pair: tuple[av.VideoFrame, av.VideoFrame]) -> LiveFrame:
        picture, source = pair  # deinterlaced when the source is interlaced (media.deinterlace)
        self._index += 1
        return LiveFrame(picture, Fraction(source.pts) * source.time_base, time.monotonic(), self._index - 1,
                         self.tags)

    def _audio(self, packet: av.Packet) -> Iterator[LiveAudio]:
        if packet.pts is None:
            return
        if not self.decode_audio:
            if packet.size:
                yield LiveAudio(packet, Fraction(packet.pts) * packet.time_base)
            return
        for frame in packet.decode():
            if frame.pts is not None:
                yield LiveAudio(frame, Fraction(frame.pts) * frame.time_base)

    def _relay_failure(self) -> str | None:
        return self._relay.failure() if self._relay is not None else None

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            except (av.FFmpegError, OSError) as exc:
                log.debug("%s: closing: %s", self.url, exc)
            self.container = None
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def __enter__(self) -> "LiveSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: BaseException, timeout: float, url: str) -> str:
    """FFmpeg's error in words, without PyAV's repetition of the URL."""
    if isinstance(exc, av.ExitError):
        return f"no answer within {timeout:g} s"
    text = str(getattr(exc, "strerror", None) or exc).split(": '")[0].rstrip(".")
    if scheme(url) in ("udp", "rtp") and getattr(exc, "errno", None) in (errno.EIO, errno.ETIMEDOUT, errno.EAGAIN):
        return f"no data within {timeout:g} s ({text})"  # UDP has no connection: silence is all it can tell
    return text
