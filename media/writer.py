"""``VideoWriter``: encode upscaled RGB frames and mux them with the source's audio and subtitles.

One pass: every ``write(rgb, pts)`` encodes a frame and lets the source's audio/subtitle packets
up to that time follow it into the muxer (see ``media.mux``). Timestamps are the source's own
(``pts`` seconds, rebased only by a trim start, the same shift for every stream), so a 30000/1001
source stays 30000/1001 and a variable-rate source keeps its timestamps. Rotation, sample aspect
ratio and colour tags are carried over, so the output displays exactly as the source does (in
Matroska/WebM the display size is written into the finished header, see ``media.matroska``).

The file is written to a hidden, uniquely named temporary file next to ``dest``; ``finish()``
closes (flushes) it, checks it, fsyncs it and renames it onto ``dest`` in one atomic step.
``abort()`` (also called on any exception inside ``with``) deletes it. The source is only read.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Callable

import av
import numpy as np

from media.colour import ColourTags, rgb_to_frame
from media.encode import EncodeSettings
from media.hdr import output_depth
from media.mov import hdr_boxes, write_hdr_boxes
from media.matroska import HDR_PLACEHOLDER_NAME, PLACEHOLDER_NAME, colour_children, display_size, write_header
from media.errors import (
    EncoderUnavailable,
    MediaError,
    OutputNotWritable,
    TimestampError,
    UnsupportedSize,
    VerificationFailed,
    WriteAborted,
    ZeroFrames,
    reason,
    translate_os_error,
)
from media.mux import SideStreams, StreamAction, container_format, plan_stream_actions, supported_codecs
from media.packets import flush
from media.probe import MediaInfo
from media.reader import resolve_trim

log = logging.getLogger(__name__)

__all__ = ["VideoWriter", "WriteReport", "check_structure", "rename_durably", "show_as_source", "temp_path_for",
           "write_durably"]


@dataclass(frozen=True)
class WriteReport:
    """What ``finish()`` produced: the file, its video, and the fate of every source stream."""

    path: Path
    frames: int
    width: int
    height: int
    codec: str
    encoder: str
    pix_fmt: str
    rate: Fraction
    duration: Fraction
    bytes: int
    seconds: float
    streams: tuple[StreamAction, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    verification: Any = None  # the media.verify.VerifyReport, when the file was verified before its rename

    def to_text(self) -> str:
        lines = [
            f"Wrote {self.path.name}: {self.frames} frames, {self.width}x{self.height}, {self.codec} ({self.encoder}, "
            f"{self.pix_fmt}), {self.rate.numerator}/{self.rate.denominator} fps, {float(self.duration):.3f} s, "
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s."
        ]
        lines += [f"  {s.to_text()}" for s in self.streams]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        from media.probe import _jsonable

        return _jsonable(self)


def rename_durably(tmp: Path, dest: Path) -> None:
    """Rename the finished (already fsynced) ``tmp`` onto ``dest`` in one atomic step and fsync the
    folder, so the new name survives a power cut."""
    os.replace(tmp, dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def temp_path_for(dest: Path) -> Path:
    """A hidden, unique temporary name next to ``dest`` (same suffix, so the muxer is the same)."""
    return dest.with_name(f".{dest.stem}.{uuid.uuid4().hex[:12]}.partial{dest.suffix}")


def write_durably(dest: Path, write: Callable[[BinaryIO], None]) -> None:
    """Make ``dest`` whole or not at all: ``write`` fills a hidden temporary file next to it
    (``temp_path_for``), which is fsynced and renamed over ``dest`` (``rename_durably``); on any
    failure the temporary file is removed and ``dest`` is left as it was."""
    tmp = temp_path_for(dest)
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        rename_durably(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_NO_HDR_IN_BITSTREAM = frozenset({"prores_ks", "prores", "ffv1"})
"""Codecs whose bitstream has no place for HDR static metadata: in Matroska it goes into the header."""


def mov_hdr(fmt: str, encoder: str, video: Any) -> bytes:
    """The ``mdcv``/``clli`` boxes (``media.mov``) a MOV file of ``encoder`` needs once it is closed, for the
    source ``video``'s HDR10 metadata: ProRes cannot carry it in its bitstream. Empty otherwise."""
    return hdr_boxes(video.hdr) if fmt == "mov" and encoder in _NO_HDR_IN_BITSTREAM else b""


def muxer_options(fmt: str, mov_boxes: bytes = b"") -> dict[str, str]:
    """MP4/MOV: faststart (the index first, for players that stream), except when ``mov_boxes`` are to be
    written into the index afterwards (``media.mov.write_hdr_boxes`` needs it last)."""
    return {"movflags": "+faststart"} if fmt in ("mp4", "mov") and not mov_boxes else {}


def show_as_source(stream: av.video.stream.VideoStream, source: Any, width: int, height: int,
                   fmt: str) -> tuple[tuple[int, int, int | None] | None, bytes] | None:
    """Give the ``width`` x ``height`` output ``stream`` the display of the ``source`` video stream (its
    display aspect ratio whatever the size, and its rotation). Returns what to write into the Matroska
    header once the file is closed (``media.matroska.write_header(path, display, colour)``), or None:
    MP4/MOV and the H.264/HEVC bitstream take the sample aspect from the codec context, Matroska does
    not; and ProRes/FFV1 have no place for HDR static metadata, so in Matroska it goes into the header."""
    sar = source.display_aspect_ratio * Fraction(height, width)
    display = None
    if sar != 1:
        stream.codec_context.sample_aspect_ratio = sar
        if fmt in ("matroska", "webm"):
            display = display_size(width, height, sar, webm=fmt == "webm")
            stream.metadata["title"] = PLACEHOLDER_NAME
    if source.rotation:
        stream.set_display_rotation(source.rotation)
    colour = b""
    if fmt == "matroska" and stream.codec_context.name in _NO_HDR_IN_BITSTREAM:
        colour = colour_children(source.hdr)  # HDR10 static metadata, which ProRes/FFV1 cannot carry
        if colour:
            stream.metadata["title"] = HDR_PLACEHOLDER_NAME
    return (display, colour) if display is not None or colour else None


def check_structure(tmp: Path, dest: Path, frames: int, actions: tuple[StreamAction, ...], what: str) -> None:
    """Every frame and every kept stream in ``tmp`` (the ``what`` file for ``dest``: "finished", "joined"),
    read back before it is renamed onto ``dest``; ``MediaError`` / ``VerificationFailed`` when not."""
    try:
        with av.open(str(tmp)) as check:
            packets = sum(1 for p in check.demux(check.streams.video[0]) if p.size)
            streams = len(check.streams)
    except (av.FFmpegError, IndexError) as exc:
        raise MediaError(f"{dest}: the {what} file cannot be read back ({reason(exc)}).", dest) from exc
    want = 1 + sum(1 for a in actions if a.action != "dropped")
    if packets != frames or streams < want:
        raise VerificationFailed(f"{dest}: the {what} file holds {packets} of {frames} frames and {streams} of "
                                 f"{want} streams; it was not saved.", dest)


class VideoWriter:
    """Write ``width`` x ``height`` RGB frames to ``dest`` with ``source``'s audio and subtitles.

    ``start``/``end`` (seconds from the source's first frame, like ``FrameReader``) select the
    range: audio and subtitles are cut to it and every stream is shifted by the same amount.
    ``write(rgb, pts)``: ``rgb`` HWC RGB of exactly (height, width, 3), uint8 (0..255) or uint16
    (0..65535, a deep source's frames: encoded without passing through 8 bits);
    ``pts`` the source time (``Frame.pts``) of the frame it was made from, strictly increasing.
    ``browser``: also transcode audio that browsers cannot play (used for previews).

    ``video_only``: write the video stream alone (a segment of a longer job, see ``media.segments``;
    the audio and subtitles are muxed when the segments are joined). ``timeline``: the ``offset`` of
    an earlier segment of the same video, so this one's frames land on the very same time line.
    ``packets`` logs every muxed video packet as ``(pts, dts, duration)`` in ``time_base`` ticks.
    """

    def __init__(
        self,
        dest: str | Path,
        source: MediaInfo,
        width: int,
        height: int,
        encode: EncodeSettings | None = None,
        start: Fraction | None = None,
        end: Fraction | None = None,
        *,
        browser: bool = False,
        video_only: bool = False,
        timeline: Fraction | None = None,
    ) -> None:
        self.dest = Path(dest)
        self.source = source
        self.width, self.height = width, height
        self.encode = encode or EncodeSettings()
        self.abs_start, self.abs_end = resolve_trim(source, start, end)
        self.trimmed = start is not None or end is not None
        self._has_end = end is not None
        v = source.video
        # Shift every stream by the trim start, rounded down to a whole video tick.
        self.offset = (self.abs_start // v.time_base) * v.time_base if start is not None else Fraction(0)
        self._fixed_offset = timeline is not None
        if timeline is not None:
            self.offset = Fraction(timeline)
        self.packets: list[tuple[int, int | None, int]] = []
        self._t0 = time.monotonic()
        self._frames = 0
        self._last_pts: Fraction | None = None
        self._first_pts: Fraction | None = None
        self._last_index: int | None = None
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder
        self._held: av.Packet | None = None
        self._first_dts: int | None = None
        self._start_ticks: int | None = None
        self._end_ticks = 0
        self._closed = False
        self._out: av.container.OutputContainer | None = None
        self._side: SideStreams | None = None

        self.encode.check_available()
        self.encode.check_container(self.dest)
        self.format = container_format(self.dest)
        self.depth = output_depth(source.video)  # bits per component the output keeps (media.hdr)
        self.pix_fmt = self.encode.pix_fmt_for(width, height, self.depth)
        self.actions = () if video_only else plan_stream_actions(source, self.dest, browser=browser)
        self._check_dest_dir()
        self.tmp = temp_path_for(self.dest)
        try:
            self._open()
        except BaseException:
            self.abort()
            raise

    # -- setup --------------------------------------------------------------------------------
    def _check_dest_dir(self) -> None:
        parent = self.dest.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise OutputNotWritable(
                f"{parent}: the output directory does not exist or is not writable. Create it, fix its "
                "permissions or choose another output directory.",
                self.dest,
            )
        if self.dest.resolve() == self.source.path.resolve():
            raise OutputNotWritable(
                f"{self.dest}: the output would overwrite the source video. Choose another output name.", self.dest
            )

    def _open(self) -> None:
        v = self.source.video
        self._mov_hdr = mov_hdr(self.format, self.encode.spec.encoder, v)
        options = muxer_options(self.format, self._mov_hdr)
        try:
            self._out = av.open(str(self.tmp), "w", format=self.format, options=options)
        except av.FFmpegError as exc:
            raise translate_os_error(exc, self.tmp, "creating the output") or exc
        out = self._out
        spec = self.encode.spec
        if spec.encoder not in supported_codecs(self.format) and self.encode.codec not in supported_codecs(self.format):
            raise EncoderUnavailable(f"{self.dest}: the {self.format} container cannot hold {self.encode.codec}.")
        stream = out.add_stream(spec.encoder, rate=v.avg_rate, options=self.encode.codec_options(self.width, v.hdr))
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = self.pix_fmt
        ctx = stream.codec_context
        # Constant rate: timestamps on the exact frame grid, one tick per frame (time base 1/rate,
        # so the bitstream's timing info says 30000/1001 too), which is where the source's own
        # (possibly ms-rounded) timestamps belong. Variable rate: the source's time base and
        # timestamps, unchanged.
        self._cfr = not v.variable_rate and v.avg_rate.numerator < 2**31
        self.time_base = 1 / v.avg_rate if self._cfr else v.time_base
        ctx.time_base = self.time_base
        stream.time_base = self.time_base
        ctx.framerate = v.avg_rate
        if self.encode.bitrate is not None:
            ctx.bit_rate = self.encode.bitrate
        self.tags: ColourTags = v.colour
        if av.VideoFormat(self.pix_fmt).is_rgb:
            ctx.colorspace = 0
        else:
            ctx.colorspace = self.tags.matrix
            ctx.color_range = self.tags.range
        if self.tags.primaries != 2:
            ctx.color_primaries = self.tags.primaries
        if self.tags.transfer != 2:
            ctx.color_trc = self.tags.transfer
        self._display = show_as_source(stream, v, self.width, self.height, self.format)
        if self.encode.codec == "hevc" and self.format in ("mp4", "mov"):
            ctx.codec_tag = "hvc1"  # QuickTime/Safari only play HEVC tagged hvc1
        self._video = stream
        self._side = SideStreams(
            self.source, out, self.actions, self.abs_start, self.abs_end, self.offset, self.trimmed
        )

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._closed:
            if exc_type is None:
                log.warning("%s: the writer was left without finish(); the partial output is removed", self.dest)
            self.abort()

    # -- frames -------------------------------------------------------------------------------
    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        """Encode one frame shown at source time ``pts`` (seconds) for ``duration`` seconds (default:
        one frame at the source's average rate)."""
        if self._closed:
            raise WriteAborted(f"{self.dest}: write() after finish() or abort(); start a new VideoWriter.", self.dest)
        if rgb.dtype not in (np.uint8, np.uint16) or rgb.shape != (self.height, self.width, 3):
            raise UnsupportedSize(
                f"{self.dest}: frame {self._frames} is {rgb.shape} {rgb.dtype}, expected "
                f"({self.height}, {self.width}, 3) uint8 (or uint16) RGB. Give frames of the size the writer was "
                "created with.",
                self.dest,
            )
        pts = Fraction(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            raise TimestampError(
                f"{self.dest}: frame {self._frames} has pts {pts} s, not after the previous {self._last_pts} s. "
                "Pass each frame's source Frame.pts, in order.",
                self.dest,
            )
        if pts < self.abs_start or (self._has_end and pts >= self.abs_end):
            raise TimestampError(
                f"{self.dest}: frame {self._frames} has pts {float(pts):.4f} s, outside the range "
                f"[{float(self.abs_start):.4f}, {float(self.abs_end):.4f}) s. Pass the frames the reader gave.",
                self.dest,
            )
        v = self.source.video
        frame = rgb_to_frame(rgb, self.pix_fmt, self.tags, str(self.dest))
        frame.time_base = self.time_base
        if self._cfr and self._first_pts is None and not self._fixed_offset:
            # Put the first frame exactly on the output's frame grid and shift every other stream
            # by the very same amount, so the audio/video offset stays the source's to the sample.
            slot = round((pts - self.offset) / v.frame_duration)
            self.offset = pts - slot * v.frame_duration
            assert self._side is not None
            self._side.offset = self.offset
        if self._cfr:
            index = round((pts - self.offset) / v.frame_duration)
            if self._last_index is not None and index <= self._last_index:
                raise TimestampError(
                    f"{self.dest}: frame {self._frames} at {float(pts):.4f} s falls on the same frame slot as the "
                    "previous one; pass each source frame once, with its own Frame.pts.",
                    self.dest,
                )
            self._last_index = index
            frame.pts = index
            frame.duration = 1
        else:
            frame.pts = round((pts - self.offset) / self.time_base)
            frame.duration = max(1, round((duration or v.frame_duration) / self.time_base))
        assert self._side is not None
        self._durations[frame.pts] = frame.duration
        if self._start_ticks is None:
            self._start_ticks = frame.pts
        self._end_ticks = frame.pts + frame.duration
        try:
            self._side.pump(pts)
        except av.FFmpegError as exc:
            self._fail(exc, f"carrying the audio/subtitle streams up to {float(pts):.3f} s", video=False)
        try:
            packets = self._video.encode(frame)
            self._mux(packets)
        except av.FFmpegError as exc:
            self._fail(exc, f"encoding frame {self._frames}")
        self._frames += 1
        self._last_pts = pts
        if self._first_pts is None:
            self._first_pts = pts

    def _mux(self, packets: list[av.Packet], last: bool = False) -> None:
        """Mux video packets, each with its own frame's duration (libx264 shuffles durations across
        reordered B-frames). The newest packet is held back: in MP4/MOV the last sample's duration
        decides where the video ends, so it is set from the frames' real end in ``finish``."""
        assert self._out is not None
        for packet in packets:
            duration = self._durations.pop(packet.pts, None)
            if duration is not None:
                packet.duration = duration
            if self._first_dts is None and packet.dts is not None:
                self._first_dts = packet.dts
            if self._held is not None:
                self._mux_one(self._held)
            self._held = packet
        if last and self._held is not None:
            held = self._held
            if self.format in ("mp4", "mov") and held.dts is not None and self._first_dts is not None:
                span = (self._end_ticks - self._start_ticks) - (held.dts - self._first_dts)
                if span > 0:
                    held.duration = span
            self._mux_one(held)
            self._held = None

    def _mux_one(self, packet: av.Packet) -> None:
        assert self._out is not None
        self.packets.append((int(packet.pts), None if packet.dts is None else int(packet.dts), int(packet.duration)))
        self._out.mux(packet)

    def _fail(self, exc: BaseException, action: str, video: bool = True) -> None:
        mapped = translate_os_error(exc, self.dest, action)
        self.abort()
        if mapped is not None:
            raise mapped from exc
        if video and isinstance(exc, av.FFmpegError) and self._frames == 0:
            raise EncoderUnavailable(
                f"{self.dest}: the {self.encode.codec} encoder ({self.encode.spec.encoder}) rejected the settings "
                f"({self.width}x{self.height}, {self.pix_fmt}): {reason(exc)}. Try another pixel format or codec.",
                self.dest,
            ) from exc
        raise MediaError(f"{self.dest}: writing failed while {action}: {reason(exc)}.", self.dest) from exc

    # -- end ----------------------------------------------------------------------------------
    def finish(self, expected: Any | None = None) -> WriteReport:
        """Flush the encoder, mux the rest of the audio/subtitles, close, check and rename onto ``dest``.

        With ``expected`` (a ``media.verify.ExpectedOutput``) the temporary file is fully verified
        first and ``VerificationFailed`` is raised (and nothing is renamed) when a check fails.
        """
        if self._closed:
            raise WriteAborted(f"{self.dest}: finish() after finish() or abort().", self.dest)
        if self._frames == 0:
            self.abort()
            raise ZeroFrames(f"{self.dest}: no frame was written; nothing to save.", self.dest)
        assert self._out is not None and self._side is not None
        try:
            self._mux(flush(self._video, self._frames), last=True)
            self._side.pump(None)
            self._side.close()
            self._out.close()
            self._closed = True
            if self._display is not None:
                write_header(self.tmp, *self._display)
            if self._mov_hdr:
                write_hdr_boxes(self.tmp, self._mov_hdr)
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
        except (av.FFmpegError, OSError) as exc:
            self._fail(exc, "finishing the file")
        except MediaError:
            self.abort()
            raise
        report = self._report()
        self._check_structure(report)
        if expected is not None:
            from media.verify import verify

            result = verify(self.source, self.tmp, expected)
            if not result.ok:
                self._remove_tmp()
                raise VerificationFailed(f"{self.dest}: the output failed verification:\n{result.to_text()}",
                                         self.dest, report=result)
        try:
            rename_durably(self.tmp, self.dest)
        except OSError as exc:
            self._remove_tmp()
            raise translate_os_error(exc, self.dest, "renaming the finished file") or exc
        log.info("%s", report.to_text())
        return WriteReport(**{**report.__dict__, "path": self.dest})

    def _report(self) -> WriteReport:
        v = self.source.video
        assert self._last_pts is not None
        assert self._first_pts is not None
        duration = self._last_pts + v.frame_duration - self._first_pts
        actions = (StreamAction(v.index, "video", v.codec, self.encode.codec, "encoded"),) + tuple(
            self._side.actions if self._side else ()
        )
        return WriteReport(
            path=self.tmp, frames=self._frames, width=self.width, height=self.height, codec=self.encode.codec,
            encoder=self.encode.spec.encoder, pix_fmt=self.pix_fmt, rate=v.avg_rate, duration=duration,
            bytes=self.tmp.stat().st_size, seconds=time.monotonic() - self._t0, streams=actions,
        )

    def _check_structure(self, report: WriteReport) -> None:
        """Cheap completeness check before the rename (``check_structure``); the temporary file goes on failure."""
        try:
            check_structure(self.tmp, self.dest, report.frames, self.actions, "finished")
        except MediaError:
            self._remove_tmp()
            raise

    def abort(self) -> None:
        """Stop and delete the temporary file (safe to call at any time, also twice)."""
        self._closed = True
        if self._side is not None:
            self._side.close()
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError) as exc:  # the file is being thrown away; only log why
                log.debug("%s: closing the aborted output failed: %s", self.tmp, exc)
            self._out = None
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        tmp = getattr(self, "tmp", None)
        if tmp is not None:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
