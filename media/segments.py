"""``join_segments``: one finished video from video-only segments, by stream copy, atomically.

A long job writes its video as a sequence of segments, each a complete, independently decodable,
video-only file that starts on a key frame (``VideoWriter(..., video_only=True)``: a fresh encoder
per segment, all on the time line of the first, ``timeline=``). ``join_segments`` copies their
packets in order into one output, with the timestamps each writer logged (``VideoWriter.packets``,
exact in the writer's time base whatever the segment container rounds to), muxes the source's
audio and subtitles over the whole range in the same pass (``media.mux.SideStreams``, exactly as
``VideoWriter`` does), checks the file and renames it onto ``dest`` atomically. Nothing is
re-encoded; on any failure the temporary file is removed and ``dest`` is untouched.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.hdr import output_depth
from media.encode import EncodeSettings
from media.matroska import write_header
from media.errors import MediaError, VerificationFailed, ZeroFrames, translate_os_error
from media.mux import SideStreams, StreamAction, container_format, plan_stream_actions
from media.packets import decoding_times
from media.probe import MediaInfo
from media.reader import resolve_trim
from media.mov import write_hdr_boxes
from media.writer import (WriteReport, check_structure, mov_hdr, muxer_options, rename_durably, show_as_source,
                          temp_path_for)

log = logging.getLogger(__name__)

__all__ = ["Segment", "decoding_times", "join_segments", "timeline_offset"]

PacketTimes = tuple[tuple[int, "int | None", int], ...]


@dataclass(frozen=True)
class Segment:
    """One closed segment: its file, the writer's ``time_base`` and every packet's ``(pts, dts,
    duration)`` in that time base, in file order (``VideoWriter.packets``)."""

    path: Path
    time_base: Fraction
    packets: PacketTimes

    @property
    def frames(self) -> int:
        return len(self.packets)


def timeline_offset(source: MediaInfo, start: Fraction | None, first_pts: Fraction) -> Fraction:
    """The ``offset`` a ``VideoWriter`` of ``source`` from ``start`` (seconds from the first frame;
    None: the whole video) takes when its first frame is at source time ``first_pts``: segments of one
    job written by several processes pass it as ``timeline=`` so that they share one time line
    (a constant-rate video: the first frame exactly on the output's frame grid)."""
    v = source.video
    abs_start, _ = resolve_trim(source, start, None)
    offset = (abs_start // v.time_base) * v.time_base if start is not None else Fraction(0)
    if not v.variable_rate and v.avg_rate.numerator < 2**31:
        slot = round((Fraction(first_pts) - offset) / v.frame_duration)
        offset = Fraction(first_pts) - slot * v.frame_duration
    return offset


def join_segments(
    dest: str | Path,
    source: MediaInfo,
    segments: Sequence[Segment],
    encode: EncodeSettings,
    offset: Fraction,
    start: Fraction | None = None,
    end: Fraction | None = None,
    *,
    browser: bool = False,
    expected: Any | None = None,
    on_verify: Callable[[], None] | None = None,
) -> WriteReport:
    """Join ``segments`` (in order) into ``dest`` with ``source``'s audio and subtitles for the range
    ``start``..``end`` (seconds from the first frame, as for ``VideoWriter``). ``offset`` is the
    first segment writer's ``offset`` (source seconds subtracted from every timestamp).

    With ``expected`` (a ``media.verify.ExpectedOutput``) the joined file is fully verified before it is
    renamed onto ``dest`` (``on_verify`` is called as that starts), as ``VideoWriter.finish`` does:
    ``VerificationFailed`` (its ``report`` about ``dest``) and nothing renamed when a check fails; the
    report is the result's ``verification``.

    Raises ``ZeroFrames`` without packets, ``MediaError`` when a segment does not match its log or
    the others (another encoder build or settings), ``DiskFull`` / ``OutputNotWritable``.
    """
    dest = Path(dest)
    segments = [s for s in segments if s.frames]
    if not segments:
        raise ZeroFrames(f"{dest}: no frame was written; nothing to save.", dest)
    encode.check_container(dest)
    fmt = container_format(dest)
    actions = plan_stream_actions(source, dest, browser=browser)
    abs_start, abs_end = resolve_trim(source, start, end)
    trimmed = start is not None or end is not None
    started = time.monotonic()
    tmp = temp_path_for(dest)
    try:
        boxes = mov_hdr(fmt, encode.spec.encoder, source.video)
        out = av.open(str(tmp), "w", format=fmt, options=muxer_options(fmt, boxes))
    except av.FFmpegError as exc:
        raise translate_os_error(exc, tmp, "creating the output") or exc
    try:
        try:
            report, display = _copy(out, tmp, dest, source, segments, encode, fmt, actions,
                                    (abs_start, abs_end, offset, trimmed))
        finally:
            out.close()
        if display is not None:
            write_header(tmp, *display)
        if boxes:
            write_hdr_boxes(tmp, boxes)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        check_structure(tmp, dest, report.frames, actions, "joined")
        verification = _verified(tmp, dest, source, expected, on_verify) if expected is not None else None
        rename_durably(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (av.FFmpegError, OSError)) and not isinstance(exc, MediaError):
            mapped = translate_os_error(exc, dest, "joining the segments")
            if mapped is not None:
                raise mapped from exc
            raise MediaError(f"{dest}: joining the segments failed: {exc}", dest) from exc
        raise
    seconds = time.monotonic() - started
    final = WriteReport(**{**report.__dict__, "path": dest, "bytes": dest.stat().st_size, "seconds": seconds,
                           "verification": verification})
    log.info("%s", final.to_text())
    return final


def _verified(tmp: Path, dest: Path, source: MediaInfo, expected: Any,
              on_verify: Callable[[], None] | None) -> Any:
    """``media.verify`` of the joined ``tmp``, reported as ``dest``; ``VerificationFailed`` when it fails."""
    from media.verify import verify

    if on_verify is not None:
        on_verify()
    result = dataclasses.replace(verify(source, tmp, expected), path=dest)
    if not result.ok:
        raise VerificationFailed(f"{dest}: the joined file failed verification:\n{result.to_text()}", dest,
                                 report=result)
    return result


def _copy(out: av.container.OutputContainer, tmp: Path, dest: Path, source: MediaInfo, segments: list[Segment],
          encode: EncodeSettings, fmt: str, actions: tuple[StreamAction, ...],
          trim: tuple) -> tuple[WriteReport, tuple | None]:
    """Add the video stream (from the first segment) and the side streams, copy every packet."""
    abs_start, abs_end, offset, trimmed = trim
    video, extradata, display = _video_stream(out, segments[0], source, encode, fmt)
    side = SideStreams(source, out, actions, abs_start, abs_end, offset, trimmed)
    try:
        _mux_video(out, video, side, segments, extradata, offset, fmt, dest)
        side.pump(None)
        side_actions = side.actions
    finally:
        side.close()
    v = source.video
    every = [p[0] for s in segments for p in s.packets]
    duration = Fraction(max(every) - min(every)) * segments[0].time_base + v.frame_duration  # as VideoWriter's
    width, height = video.codec_context.width, video.codec_context.height
    streams = (StreamAction(v.index, "video", v.codec, encode.codec, "encoded"),) + tuple(side_actions)
    report = WriteReport(path=tmp, frames=len(every), width=width, height=height, codec=encode.codec,
                         encoder=encode.spec.encoder, pix_fmt=encode.pix_fmt_for(width, height, output_depth(v)),
                         rate=v.avg_rate, duration=duration, bytes=0, seconds=0.0, streams=streams)
    return report, display


def _video_stream(out: av.container.OutputContainer, first: Segment, source: MediaInfo, encode: EncodeSettings,
                  fmt: str) -> tuple[av.video.stream.VideoStream, bytes, tuple | None]:
    """The output's video stream, a copy of the first segment's (codec, size, colour), with the
    rotation, aspect and tag ``VideoWriter`` gives it; the codec's header bytes every segment must
    share; and the Matroska display size to write once the file is closed (None: none to write)."""
    with av.open(str(first.path)) as container:
        template = container.streams.video[0]
        extradata = bytes(template.codec_context.extradata or b"")
        video = out.add_stream_from_template(template, opaque=True)  # the codec id is what a remux needs
    video.time_base = first.time_base
    video.codec_context.framerate = source.video.avg_rate  # the stream's rate, as VideoWriter gives it
    width, height = video.codec_context.width, video.codec_context.height
    display = show_as_source(video, source.video, width, height, fmt)  # replaces what the segment carried
    if encode.codec == "hevc" and fmt in ("mp4", "mov"):
        video.codec_tag = "hvc1"  # QuickTime/Safari only play HEVC tagged hvc1
    return video, extradata, display


def _mux_video(out: av.container.OutputContainer, video: av.video.stream.VideoStream, side: SideStreams,
               segments: list[Segment], extradata: bytes, offset: Fraction, fmt: str, dest: Path) -> None:
    """Every segment's packets, in order, with one run of decoding times; the audio and subtitles
    follow them into the muxer. In MP4/MOV the last packet's duration is set from the frames' real
    end, as ``VideoWriter`` does (the last sample's duration decides where the video ends)."""
    time_base = segments[0].time_base
    every = [p for s in segments for p in s.packets]
    first_pts, end = min(p[0] for p in every), max(p[0] + p[2] for p in every)
    dts = decoding_times([p[0] for p in every])
    held: av.Packet | None = None
    count = 0
    for number, segment in enumerate(segments):
        if segment.time_base != time_base:
            raise MediaError(f"{segment.path}: segment {number} uses time base {segment.time_base}, the first "
                             f"{time_base}; the segments are not of one video.", dest)
        with av.open(str(segment.path)) as container:
            for packet in _packets(container, segment, extradata, dest):
                packet.dts = dts[count]
                count += 1
                side.pump(offset + packet.dts * time_base)
                packet.stream = video
                if held is not None:
                    out.mux(held)
                held = packet
    assert held is not None and held.dts is not None
    if fmt in ("mp4", "mov"):
        remaining = (end - first_pts) - (held.dts - dts[0])
        if remaining > 0:
            held.duration = remaining
    out.mux(held)


def _packets(container: av.container.InputContainer, segment: Segment, extradata: bytes,
             dest: Path) -> Iterator[av.Packet]:
    """The packets of ``segment`` with the logged timestamps; refuses a segment that does not match."""
    stream = container.streams.video[0]
    if bytes(stream.codec_context.extradata or b"") != extradata:
        raise MediaError(f"{segment.path}: this segment was encoded with other codec settings than the first "
                         "(another encoder build?); the segments cannot be joined. Start the job over.", dest)
    count = 0
    for packet in container.demux(stream):
        if not packet.size:
            continue
        if count >= segment.frames:
            count += 1
            break
        packet.pts, _, packet.duration = segment.packets[count]
        packet.time_base = segment.time_base
        count += 1
        yield packet
    if count != segment.frames:
        raise MediaError(f"{segment.path}: the segment does not hold the {segment.frames} video packets written to it; "
                         "it is damaged. Start the job over.", dest)
