"""Audio and subtitle streams of the source, carried into the output in the same pass as the video.

``plan_stream_actions`` decides, before any work, what happens to each source stream in a given
output container: ``copied`` (packets stream-copied, bit for bit) or ``transcoded`` (only when the
container cannot hold the codec: PCM audio in MP4 -> AAC, SubRip in MP4 -> mov_text, mov_text in
MKV -> SubRip...). A stream that can go nowhere is an error, never silently dropped.

``SideStreams`` then reads the source's audio/subtitle packets with a second demuxer, trims and
rebases them to the video's range and feeds them to the muxer as the video advances (``pump``), so
the output is interleaved without buffering whole tracks.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import av

from media.errors import UnsupportedContainer
from media.probe import AudioStreamInfo, MediaInfo, OtherStreamInfo, SubtitleStreamInfo

log = logging.getLogger(__name__)

__all__ = ["StreamAction", "plan_stream_actions", "container_format", "SideStreams"]

# Output suffix -> FFmpeg muxer name.
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
# Text subtitle codecs FFmpeg can decode to ASS events and encode again.
_TEXT_SUBS = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"}
_SUB_TARGET = {"mp4": "mov_text", "mov": "mov_text", "matroska": "subrip", "webm": "webvtt"}
_AUDIO_TARGET = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus"}


@dataclass(frozen=True)
class StreamAction:
    """What happens to one source stream: ``action`` is ``"encoded"`` (the upscaled video),
    ``"copied"`` (stream copy, packets untouched), ``"transcoded"`` (with ``reason``) or, only for
    attachments and data streams the container cannot hold, ``"dropped"`` (with ``reason``)."""

    source_index: int
    kind: str
    codec_in: str
    codec_out: str
    action: str
    reason: str = ""
    language: str | None = None

    def to_text(self) -> str:
        lang = f" [{self.language}]" if self.language else ""
        if self.action == "copied":
            return f"{self.kind} #{self.source_index}{lang}: {self.codec_in}, copied unchanged"
        if self.action == "dropped":
            return f"{self.kind} #{self.source_index} ({self.codec_in}): not carried ({self.reason})"
        if self.action == "encoded":
            return f"{self.kind} #{self.source_index}: {self.codec_in} -> {self.codec_out}, upscaled and encoded"
        return (f"{self.kind} #{self.source_index}{lang}: {self.codec_in} -> {self.codec_out}, "
                f"transcoded ({self.reason})")


def container_format(dest: Path) -> str:
    """The FFmpeg muxer for ``dest``'s suffix; ``UnsupportedContainer`` for anything else."""
    fmt = FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise UnsupportedContainer(
            f"{dest}: cannot write a {dest.suffix or 'suffix-less'} file. Use one of {', '.join(sorted(FORMATS))}.",
            dest,
        )
    return fmt


@lru_cache(maxsize=None)
def supported_codecs(fmt: str) -> frozenset[str]:
    """Codec names the muxer ``fmt`` can hold (FFmpeg's own table)."""
    with av.open(io.BytesIO(), "w", format=fmt) as probe_out:
        return frozenset(probe_out.supported_codecs)


# Audio codecs Chromium's <video> plays; previews keep only the first two (every browser plays them).
BROWSER_AUDIO = {"aac", "mp3", "opus", "vorbis", "flac"}
PREVIEW_AUDIO = {"aac", "mp3"}


def _audio_action(a: AudioStreamInfo, fmt: str, browser: bool = False) -> StreamAction:
    ok = supported_codecs(fmt)
    if fmt == "mp4" and a.codec.startswith("pcm_"):
        reason = "MP4 players do not play PCM audio"
    elif browser and a.codec not in PREVIEW_AUDIO:
        reason = f"the browser preview uses AAC audio, which every browser plays (the source has {a.codec})"
    elif a.codec not in ok:
        reason = f"the {fmt} container cannot hold {a.codec}"
    else:
        return StreamAction(a.index, "audio", a.codec, a.codec, "copied", language=a.language)
    target = _AUDIO_TARGET[fmt]
    return StreamAction(a.index, "audio", a.codec, target.removeprefix("lib"), "transcoded", reason, a.language)


def _subtitle_action(s: SubtitleStreamInfo, fmt: str, dest: Path) -> StreamAction:
    if s.codec in supported_codecs(fmt) and not (fmt == "webm" and s.codec != "webvtt"):
        return StreamAction(s.index, "subtitle", s.codec, s.codec, "copied", language=s.language)
    if s.codec not in _TEXT_SUBS:
        raise UnsupportedContainer(
            f"{dest}: the source's subtitle stream #{s.index} ({s.codec}, a picture-based format) cannot be stored "
            f"in {fmt} and cannot be converted to text. Write an .mkv output instead.",
            dest,
        )
    target = _SUB_TARGET[fmt]
    return StreamAction(
        s.index, "subtitle", s.codec, target, "transcoded", f"the {fmt} container stores text subtitles as {target}",
        s.language,
    )


def _other_action(o: OtherStreamInfo, fmt: str) -> StreamAction:
    name = o.name or "unnamed"
    if o.kind == "attachment" and fmt == "matroska":
        return StreamAction(o.index, "attachment", name, name, "copied")
    if o.kind == "attachment":
        reason = f"a {fmt} file cannot hold attachments such as fonts for styled subtitles; write .mkv to keep it"
    elif o.kind == "video":
        reason = "one video is upscaled, the one with the most frames; this one is a cover picture or another view"
    else:
        reason = f"{o.kind} streams (timecode, metadata) are not part of the picture or sound"
    return StreamAction(o.index, o.kind, name, "", "dropped", reason)


def plan_stream_actions(source: MediaInfo, dest: str | Path, *, browser: bool = False) -> tuple[StreamAction, ...]:
    """The action for every audio and subtitle stream of ``source`` written to ``dest`` (by suffix);
    ``browser``: also transcode audio that Chromium cannot play (for previews)."""
    dest = Path(dest)
    fmt = container_format(dest)
    actions = [_audio_action(a, fmt, browser) for a in source.audio]
    actions += [_subtitle_action(s, fmt, dest) for s in source.subtitles]
    actions += [_other_action(o, fmt) for o in source.other]
    return tuple(actions)


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _ordered_layout(layout: av.AudioLayout, channels: int) -> str:
    """A named channel layout for encoders that refuse "unspecified order" ones (PCM from Matroska
    reads as "2 channels"): FFmpeg's default layout for that many channels."""
    if layout.name.endswith("channels") and channels in _DEFAULT_LAYOUTS:
        return _DEFAULT_LAYOUTS[channels]
    return layout.name


class _Track:
    """One output audio/subtitle stream fed from one source stream."""

    def __init__(self, action: StreamAction, src: av.stream.Stream, out: av.container.OutputContainer) -> None:
        self.action = action
        self.src = src
        self.packets = 0
        self.resampler: av.AudioResampler | None = None
        if action.action == "copied":
            self.dst = out.add_stream_from_template(src)
        elif action.kind == "audio":
            ctx = src.codec_context
            target = _AUDIO_TARGET[out.format.name if out.format.name in _AUDIO_TARGET else "mp4"]
            rate = 48000 if target == "libopus" else ctx.sample_rate
            self.dst = out.add_stream(target, rate=rate)
            layout = _ordered_layout(ctx.layout, ctx.channels)
            self.dst.layout = layout
            self.dst.bit_rate = 64000 * max(ctx.channels, 1)
            fmt = self.dst.codec_context.codec.audio_formats[0].name
            frame_size = 960 if target == "libopus" else 1024
            self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate, frame_size=frame_size)
        else:
            src.codec_context.open()
            self.dst = out.add_stream(action.codec_out)
            self.dst.codec_context.subtitle_header = src.codec_context.subtitle_header
            self.dst.codec_context.time_base = Fraction(1, 1000)
        for key in ("language", "title", "handler_name"):
            if key in (src.metadata or {}):
                self.dst.metadata[key] = src.metadata[key]
        self.dst.disposition = src.disposition


class SideStreams:
    """Copies/transcodes the source's audio and subtitle streams into ``out`` for ``[abs_start, abs_end)``.

    Times are seconds on the source's time line; ``offset`` (seconds) is subtracted from every
    timestamp, the same offset the video uses, so audio, subtitles and video stay in sync.
    """

    def __init__(
        self,
        source: MediaInfo,
        out: av.container.OutputContainer,
        actions: tuple[StreamAction, ...],
        abs_start: Fraction,
        abs_end: Fraction,
        offset: Fraction,
        trimmed: bool,
    ) -> None:
        self.abs_start, self.abs_end, self.offset, self.trimmed = abs_start, abs_end, offset, trimmed
        self.tracks: dict[int, _Track] = {}
        self._input: av.container.InputContainer | None = None
        self._packets: Any = None
        self._pending: av.Packet | None = None
        self._out = out
        # Packets the source's MP4 edit list hides (those before a `-c copy` cut; an AAC encoder's priming)
        # are not part of what plays: an MP4/MOV output hides them again with its own edit list; any other
        # container would play them (a second of audio before the cut, audio a priming packet early), so
        # they are left out there. The shown packets are copied unchanged either way.
        self._keep_discarded = out.format.name in ("mp4", "mov")
        self.other = [a for a in actions if a.kind not in ("audio", "subtitle")]
        actions = tuple(a for a in actions if a.kind in ("audio", "subtitle"))
        for action in self.other:
            if action.action == "dropped":
                log.warning("%s: %s", source.path, action.to_text())
        attachments = [a for a in self.other if a.action == "copied"]
        if not actions and not attachments:
            return
        self._input = av.open(str(source.path), metadata_errors="replace")
        for action in attachments:
            src = self._input.streams[action.source_index]
            out.add_attachment(src.name, src.mimetype, src.data)
        if not actions:
            return
        for action in actions:
            src = self._input.streams[action.source_index]
            self.tracks[action.source_index] = _Track(action, src, out)
        if trimmed and abs_start > source.video.start_time:
            vtb = source.video.time_base
            self._input.seek(int(abs_start / vtb), stream=self._input.streams[source.video.index], backward=True)
        self._packets = self._input.demux([t.src for t in self.tracks.values()])

    @property
    def actions(self) -> list[StreamAction]:
        return [t.action for t in self.tracks.values()] + self.other

    def pump(self, until: Fraction | None) -> None:
        """Mux every pending packet that starts before ``until`` (source seconds; None: all)."""
        if self._packets is None:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                self._finish_transcoders()
                return
            if packet.pts is None or packet.size == 0 or (packet.is_discard and not self._keep_discarded):
                continue
            start = Fraction(packet.pts) * Fraction(packet.time_base)
            if until is not None and start > until:
                self._pending = packet
                return
            self._route(packet, start)

    def _route(self, packet: av.Packet, start: Fraction) -> None:
        track = self.tracks[packet.stream.index]
        tb = Fraction(packet.time_base)
        end = start + Fraction(packet.duration or 0) * tb
        # Untrimmed: every packet, as long as the source's tracks are. Trimmed: the packets that
        # overlap the range (an audio packet is cut whole, so audio covers the whole range).
        if self.trimmed and (end <= self.abs_start or start >= self.abs_end):
            return
        if track.action.action == "copied":
            self._mux_copy(track, packet, start, end, tb)
        elif track.action.kind == "audio":
            self._mux_audio(track, packet)
        else:
            self._mux_subtitle(track, packet, start, end, tb)

    def _shift(self, ticks: int | None, tb: Fraction) -> int | None:
        return None if ticks is None else ticks - round(self.offset / tb)

    def _mux_copy(self, track: _Track, packet: av.Packet, start: Fraction, end: Fraction, tb: Fraction) -> None:
        if self.trimmed and track.action.kind == "subtitle" and start < self.abs_start:
            # A cue already on screen at the trim start: keep it, from the start on.
            new_start = round(self.abs_start / tb)
            packet.duration = max(1, round(end / tb) - new_start)
            packet.pts = packet.dts = new_start
        packet.pts = self._shift(packet.pts, tb)
        packet.dts = self._shift(packet.dts, tb)
        packet.stream = track.dst
        self._out.mux(packet)
        track.packets += 1

    def _mux_audio(self, track: _Track, packet: av.Packet) -> None:
        assert track.resampler is not None
        for frame in track.src.codec_context.decode(packet):
            self._encode_audio(track, frame)

    def _encode_audio(self, track: _Track, frame: av.AudioFrame | None) -> None:
        assert track.resampler is not None
        if frame is not None and frame.pts is not None:
            frame.pts = self._shift(frame.pts, Fraction(frame.time_base))
        for out_frame in track.resampler.resample(frame):
            for pkt in track.dst.encode(out_frame):
                self._out.mux(pkt)
                track.packets += 1
        if frame is None:
            for pkt in track.dst.encode(None):
                self._out.mux(pkt)
                track.packets += 1

    def _mux_subtitle(self, track: _Track, packet: av.Packet, start: Fraction, end: Fraction, tb: Fraction) -> None:
        subtitle = track.src.codec_context.decode2(packet)
        if subtitle is None:
            return
        out = track.dst.codec_context.encode_subtitle(subtitle)
        if self.trimmed:
            start = max(start, self.abs_start)
        out.stream = track.dst
        out.time_base = Fraction(1, 1000)
        out.pts = out.dts = round((start - self.offset) * 1000)
        out.duration = max(1, round((end - start) * 1000))
        self._out.mux(out)
        track.packets += 1

    def _finish_transcoders(self) -> None:
        for track in self.tracks.values():
            if track.action.action == "transcoded" and track.action.kind == "audio":
                for frame in track.src.codec_context.decode(None):
                    self._encode_audio(track, frame)
                self._encode_audio(track, None)

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None
        self._packets = None
