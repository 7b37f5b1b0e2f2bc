"""``TsChunkWriter``: a growing video as short, self-contained MPEG-TS chunks (H.264 + AAC) for HLS.

Each chunk is a complete ``.ts`` file that starts with the stream tables and an IDR frame, so a
player (hls.js in the browser) can start at any chunk; the chunks of one writer share one H.264
encoder and one AAC encoder, so their timestamps, picture quality and audio run on without seams.
The audio is the source's first audio track, decoded for exactly the range the chunk's frames
cover and encoded to AAC (stereo or mono, the source's rate). Timestamps are seconds from the
range's start plus ``TS_BASE`` (MPEG-TS holds no negative times; the AAC encoder's priming would
need one at zero). Everything is in process (PyAV): no FFmpeg executable.

A chunk is written to a hidden temporary name and renamed when complete, so ``list_chunks`` only
ever sees whole chunks. Its name carries what a player needs: ``chunk_name(first, frames, start,
duration)``, the index of its first frame in the job's range, its frame count, and its start and
length in microseconds.

``continue_counters`` renumbers a chunk's continuity counters to follow the previous chunk's, as one
muxer would have written them (each chunk has its own muxer; players read a jump as lost packets).
"""

from __future__ import annotations

import io
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from media.probe import MediaInfo

log = logging.getLogger(__name__)

__all__ = ["TsChunkWriter", "Chunk", "chunk_of", "list_chunks", "chunk_name", "continue_counters", "stream_size",
           "TS_BASE", "MAX_SHORT_SIDE"]

TS_BASE = Fraction(10)
"""Seconds added to every timestamp (MPEG-TS cannot hold a negative one; AAC priming needs room)."""
MAX_SHORT_SIDE = 1080
"""The stream's picture is scaled down to at most this short side (1080p), so its encode stays cheap."""
AAC_FRAME = 1024
_NAME = re.compile(r"^chunk-(\d{8})-(\d{6})-(\d+)-(\d+)\.ts$")
_TS_PACKET = 188


@dataclass(frozen=True)
class Chunk:
    """One finished chunk: ``first`` (index of its first frame in the job's range), ``frames``, and
    ``start`` / ``duration`` in seconds on the stream's time line (0 = the range's first frame)."""

    path: Path
    first: int
    frames: int
    start: float
    duration: float

    @property
    def end_index(self) -> int:
        return self.first + self.frames


def chunk_name(first: int, frames: int, start: Fraction, duration: Fraction) -> str:
    return f"chunk-{first:08d}-{frames:06d}-{round(start * 1_000_000)}-{round(duration * 1_000_000)}.ts"


def chunk_of(path: Path) -> Chunk | None:
    """The chunk a file is, from its name (None: not a chunk's name)."""
    match = _NAME.match(path.name)
    if match is None:
        return None
    first, frames, start, duration = (int(g) for g in match.groups())
    return Chunk(path, first, frames, start / 1e6, duration / 1e6)


def list_chunks(folder: Path) -> list[Chunk]:
    """The finished chunks in ``folder``, in order (an absent folder has none)."""
    if not folder.is_dir():
        return []
    found = [chunk for chunk in map(chunk_of, folder.iterdir()) if chunk is not None]
    return sorted(found, key=lambda c: c.first)


def stream_size(width: int, height: int, max_short: int = MAX_SHORT_SIDE) -> tuple[int, int]:
    """The stream's picture size for a ``width`` x ``height`` video: at most ``max_short`` on the short
    side, the aspect kept, both sides even (H.264 4:2:0)."""
    scale = min(1.0, max_short / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def continue_counters(data: bytes, counters: dict[int, int]) -> bytes:
    """``data`` (whole MPEG-TS packets) with each PID's continuity counter following ``counters``
    (updated in place), as if one muxer had written every chunk. Other data is returned unchanged."""
    if not data or len(data) % _TS_PACKET or any(data[o] != 0x47 for o in range(0, len(data), _TS_PACKET)):
        return data
    out = bytearray(data)
    for offset in range(0, len(out), _TS_PACKET):
        pid = ((out[offset + 1] & 0x1F) << 8) | out[offset + 2]
        if pid == 0x1FFF:  # null packets carry no counter
            continue
        value = counters.get(pid, 0)
        out[offset + 3] = (out[offset + 3] & 0xF0) | value
        if out[offset + 3] & 0x10:  # the counter advances only on packets with a payload
            counters[pid] = (value + 1) & 0x0F
    return bytes(out)


class _Audio:
    """The source's first audio track, decoded from ``start`` on and handed out as AAC packets for
    whole stretches of the stream's time line (silence where the source has none). The encoder runs
    a little ahead: the packets that start after a chunk's end wait for the next chunk, so a chunk's
    audio reaches its end without the encoder being drained."""

    def __init__(self, info: MediaInfo, encoder: av.audio.stream.AudioStream, start: Fraction,
                 origin: Fraction) -> None:
        self.encoder = encoder
        self.rate = encoder.codec_context.sample_rate
        self.channels = encoder.codec_context.channels
        self.origin = origin
        self._container = av.open(str(info.path), metadata_errors="replace")
        source = self._container.streams.audio[0]
        if start > info.video.start_time:
            self._container.seek(int(start / source.time_base), stream=source, backward=True)
        self._frames: Any = self._container.decode(source)
        self._resampler = av.AudioResampler(format="fltp", layout=encoder.layout.name, rate=self.rate)
        self._pending = np.zeros((self.channels, 0), np.float32)
        self._pending_at = start  # source seconds of the first pending sample
        self._sent = round((start - origin) * self.rate)  # samples of the time line handed to the encoder
        self._held: list[av.Packet] = []  # encoded, starting at or after the last chunk's end

    def packets(self, until: Fraction) -> list[av.Packet]:
        """The AAC packets that start before ``until`` (source seconds) and were not handed out yet."""
        limit = TS_BASE + until - self.origin
        out: list[av.Packet] = []
        while True:
            while self._held and Fraction(self._held[0].pts) * Fraction(self._held[0].time_base) < limit:
                out.append(self._held.pop(0))
            if self._held:
                return out
            self._held += self._encode_next()

    def _encode_next(self) -> list[av.Packet]:
        """One more AAC frame of the source's audio (silence once it has ended)."""
        while self._pending.shape[1] < AAC_FRAME and self._frames is not None:
            self._decode_one()
        if self._pending.shape[1] < AAC_FRAME:
            missing = AAC_FRAME - self._pending.shape[1]
            self._pending = np.concatenate([self._pending, np.zeros((self.channels, missing), np.float32)], axis=1)
        samples, self._pending = self._pending[:, :AAC_FRAME], self._pending[:, AAC_FRAME:]
        self._pending_at += Fraction(AAC_FRAME, self.rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp",
                                           layout=self.encoder.layout.name)
        frame.sample_rate = self.rate
        frame.pts = self._sent + round(TS_BASE * self.rate)
        frame.time_base = Fraction(1, self.rate)
        self._sent += AAC_FRAME
        return list(self.encoder.encode(frame))

    def close(self) -> None:
        self._container.close()

    def _decode_one(self) -> None:
        frame = next(self._frames, None)
        if frame is None:
            self._frames = None
            return
        if frame.pts is None:
            return
        at = Fraction(frame.pts) * Fraction(frame.time_base)
        for piece in self._resampler.resample(frame):
            self._append(piece.to_ndarray().astype(np.float32, copy=False), at)
            at += Fraction(piece.samples, self.rate)

    def _append(self, samples: np.ndarray, at: Fraction) -> None:
        """Add decoded samples that start at source time ``at``: what lies before the wanted position
        is dropped, a gap before it is filled with silence."""
        expected = self._pending_at + Fraction(self._pending.shape[1], self.rate)
        offset = round((at - expected) * self.rate)
        if offset < 0:
            samples = samples[:, -offset:]
        elif offset > 0:
            samples = np.concatenate([np.zeros((self.channels, offset), np.float32), samples], axis=1)
        self._pending = np.concatenate([self._pending, samples], axis=1)


class TsChunkWriter:
    """Frames (HWC uint8 RGB, any size; scaled to ``width`` x ``height``) into chunks in ``folder``.

    ``start``: the range's first frame time on the source's time line (seconds, ``Frame.pts``
    scale); ``resume_at``: the source time of the first frame this writer gets when it continues a
    stream (chunks are numbered by ``first_index`` on). ``write`` each frame with its source ``pts``;
    ``cut()`` ends the current chunk (the next frame opens a new one); ``close()`` ends the last one
    and flushes the encoders; ``abort()`` drops the chunk being written.
    """

    def __init__(self, folder: Path, source: MediaInfo, width: int, height: int, *, start: Fraction,
                 resume_at: Fraction | None = None, first_index: int = 0, crf: int = 23,
                 preset: str = "veryfast") -> None:
        self.folder = folder
        self.size = (width, height)
        self.origin = start
        self._index = first_index
        self._template = av.open(io.BytesIO(), "w", format="mpegts")  # owns the encoders, never written
        rate = source.video.avg_rate
        video = self._template.add_stream("libx264", rate=rate, options={
            "preset": preset, "tune": "zerolatency", "crf": str(crf), "forced-idr": "1",
            "x264-params": "keyint=infinite:scenecut=0:log-level=error"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 90000)  # the source's times, unrounded
        self._video = video
        self._audio: _Audio | None = None
        self._template_audio: av.audio.stream.AudioStream | None = None
        if source.audio:
            channels = 1 if source.audio[0].channels == 1 else 2
            audio = self._template.add_stream("aac", rate=source.audio[0].sample_rate or 48000)
            audio.layout = "mono" if channels == 1 else "stereo"
            audio.bit_rate = 64000 * channels
            self._template_audio = audio
        self._template.start_encoding()  # opens the encoders: the chunks copy their parameters
        if self._template_audio is not None:
            self._audio = _Audio(source, self._template_audio, resume_at if resume_at is not None else start, start)
        self._chunk: tuple[av.container.OutputContainer, io.BytesIO, av.stream.Stream, av.stream.Stream | None] | None
        self._chunk = None
        self._first_pts: Fraction | None = None
        self._frames = 0
        self._last: tuple[Fraction, Fraction] | None = None  # (pts, duration) of the last frame written

    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        """Encode one frame (source time ``pts``, seconds) into the current chunk."""
        if self._chunk is None:
            self._open(pts)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p", interpolation="AREA")
        frame.pts = round((pts - self.origin + TS_BASE) * 90000)
        frame.time_base = Fraction(1, 90000)
        if self._frames == 0:
            frame.pict_type = av.video.frame.PictureType.I  # every chunk starts on an IDR frame
        assert self._chunk is not None
        out, _, stream, _ = self._chunk
        for packet in self._video.encode(frame):
            packet.stream = stream
            out.mux(packet)
        self._frames += 1
        self._last = (pts, duration if duration else 1 / Fraction(self._video.codec_context.framerate or 25))

    def cut(self) -> Chunk | None:
        """End the current chunk (None when it has no frame yet) and return it."""
        return self._cut(last=False)

    def close(self) -> Chunk | None:
        """End the last chunk, with everything the encoders still hold."""
        try:
            return self._cut(last=True)
        finally:
            self._release()

    def _cut(self, last: bool) -> Chunk | None:
        if self._chunk is None or self._last is None or self._first_pts is None:
            return None
        end = self._last[0] + self._last[1]
        out, _, video, audio = self._chunk
        packets = [(p, video) for p in self._video.encode(None)] if last else []
        if self._audio is not None and audio is not None:  # (at the end, what is held lies past the video)
            packets += [(p, audio) for p in self._audio.packets(end)]
        for packet, stream in packets:
            packet.stream = stream
            out.mux(packet)
        return self._finish(end)

    def abort(self) -> None:
        """Drop the chunk being written (finished chunks stay)."""
        if self._chunk is not None:
            self._chunk[0].close()
            self._chunk = None
        self._release()

    def _open(self, pts: Fraction) -> None:
        buffer = io.BytesIO()
        out = av.open(buffer, "w", format="mpegts")
        video = out.add_stream_from_template(self._video, opaque=True)
        audio = out.add_stream_from_template(self._template_audio, opaque=True) if self._audio else None
        self._chunk = (out, buffer, video, audio)
        self._first_pts, self._frames = pts, 0

    def _finish(self, end: Fraction) -> Chunk:
        assert self._chunk is not None and self._first_pts is not None
        out, buffer, _, _ = self._chunk
        out.close()
        start, duration = self._first_pts - self.origin, end - self._first_pts
        dest = self.folder / chunk_name(self._index, self._frames, start, duration)
        tmp = self.folder / f".{dest.name}.partial"
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, dest)
        chunk = Chunk(dest, self._index, self._frames, float(start), float(duration))
        self._index += self._frames
        self._chunk, self._first_pts, self._frames = None, None, 0
        return chunk

    def _release(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        if self._template is not None:
            self._template.close()
            self._template = None  # type: ignore[assignment]
