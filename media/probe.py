"""``probe(path) -> MediaInfo``: everything about a media file, read once, before any work.

The probe opens the file with PyAV, reads every packet header once (no decoding, except the first
video frame for its rotation and real pixel format) and so knows exact frame counts, durations and
whether the frame rate varies, even for containers whose header does not say (MKV, WebM). It also
catches a truncated file early: fewer packets than the header promises is a ``TruncatedVideo``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.colour import ColourTags, bit_depth, has_alpha, resolve_tags, sws_matrix
from media.hdr import HdrInfo, hdr_from_frame
from media.containers import container_name
from media.errors import (
    DecodeError,
    MediaFileNotFound,
    NotAVideo,
    NoVideoStream,
    SizeLimitExceeded,
    StillImage,
    TruncatedVideo,
    UnsupportedSize,
    ZeroFrames,
    reason,
)
from media.rates import STANDARD_RATES, constant_rate

log = logging.getLogger(__name__)

__all__ = ["MediaInfo", "VideoStreamInfo", "AudioStreamInfo", "SubtitleStreamInfo", "OtherStreamInfo", "probe",
           "MIN_SIDE"]

# The smallest picture side we accept: Stream-DiffVSR's VAE works on 8x8 blocks, so a smaller
# picture has no latent pixel at all (and most encoders refuse 1-pixel pictures).
MIN_SIDE = 8


@dataclass(frozen=True)
class VideoStreamInfo:
    """The video stream. Sizes in pixels; times in seconds as ``Fraction`` on the source's time line.

    ``width``/``height`` are the coded size (what the reader's RGB arrays have); ``display_width`` /
    ``display_height`` are what a player shows after the sample aspect ratio and the rotation.
    ``rotation`` is the display-matrix rotation in degrees (0, 90, 180, 270; FFmpeg's convention:
    counter-clockwise). ``pix_fmt`` is what the reader decodes; ``has_alpha`` says whether the source
    carries transparency, in the pixel format or beside it (VP8/VP9 alpha in WebM/Matroska), which the
    reader drops. ``avg_rate`` is frames / duration for a variable rate; ``real_rate`` is the
    container's base rate. ``frame_count`` and ``duration`` come from the packets, not the header.
    """

    index: int
    codec: str
    profile: str | None
    width: int
    height: int
    sample_aspect_ratio: Fraction
    display_aspect_ratio: Fraction
    display_width: int
    display_height: int
    rotation: int
    pix_fmt: str
    bit_depth: int | None
    has_alpha: bool
    color_primaries: str
    color_transfer: str
    color_matrix: str
    color_range: str
    colour: ColourTags
    avg_rate: Fraction
    real_rate: Fraction | None
    time_base: Fraction
    start_time: Fraction
    duration: Fraction | None
    frame_count: int | None
    variable_rate: bool
    bit_rate: int | None
    hdr: HdrInfo = HdrInfo()  # HDR10 static metadata / Dolby Vision of the first frame (media.hdr)
    interlaced: bool = False  # the first frame is interlaced: the reader deinterlaces (media.deinterlace)

    @property
    def frame_duration(self) -> Fraction:
        """One frame at the average rate, in seconds."""
        return 1 / self.avg_rate


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream. ``packet_duration`` is a typical packet (the stream-copy granularity), seconds."""

    index: int
    codec: str
    channels: int
    layout: str
    sample_rate: int
    language: str | None
    title: str | None
    time_base: Fraction
    start_time: Fraction | None
    duration: Fraction | None
    packet_duration: Fraction | None
    packets: int
    bit_rate: int | None
    # When the first decoded sound plays: after ``start_time`` when the decoder needs packets before it gives
    # sound (WMA); a track encoded anew starts there, as it does in a player. None when nothing decoded.
    first_sound: Fraction | None = None


@dataclass(frozen=True)
class SubtitleStreamInfo:
    """One subtitle stream (text or bitmap). ``packets`` is the number of cues."""

    index: int
    codec: str
    language: str | None
    title: str | None
    time_base: Fraction
    start_time: Fraction | None
    packets: int


@dataclass(frozen=True)
class OtherStreamInfo:
    """A stream that is neither the video to upscale, sound nor subtitles: an attachment (e.g. a font for
    styled subtitles in Matroska; ``name`` is its file name), a data stream (e.g. a camera's timecode) or
    another video stream (a cover picture; ``name`` is its codec)."""

    index: int
    kind: str
    name: str | None
    mimetype: str | None
    size_bytes: int | None


@dataclass(frozen=True)
class MediaInfo:
    """A probed file: the container, its video stream and every audio and subtitle stream.

    ``container`` is FFmpeg's demuxer name (``mov,mp4,m4a,3gp,3g2,mj2``), for programs;
    ``container_name`` what people call the file's format (``MP4``, ``QuickTime (MOV)``, ``WebM``).
    """

    path: Path
    container: str
    size_bytes: int
    duration: Fraction | None
    video: VideoStreamInfo
    audio: tuple[AudioStreamInfo, ...]
    subtitles: tuple[SubtitleStreamInfo, ...]
    other: tuple[OtherStreamInfo, ...] = ()
    container_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``Fraction`` -> ``"30000/1001"``, ``Path`` -> str, colour tags -> names."""
        return _jsonable(self)


def _jsonable(value: Any) -> Any:
    if isinstance(value, ColourTags):
        return {**value.names, "matrix_guessed": value.matrix_guessed}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


LISTEN_PACKETS = 16  # audio packets decoded at most to find a stream's first sound


@dataclass
class _Scan:
    """Packet statistics of one stream, gathered in the single demux pass."""

    count: int = 0
    first_pts: int | None = None
    end_pts: int | None = None  # max(pts + duration)
    total_duration: int = 0  # sum of packet durations (the span, in MP4 and Matroska alike)
    missing_duration: bool = False
    pts: list[int] = dataclasses.field(default_factory=list)
    first_duration: int | None = None
    discarded: int = 0  # packets marked discard (not counted above)
    first_sound: Fraction | None = None  # audio: when the first decoded samples play (seconds)
    _listened: int = 0  # audio packets decoded to find it

    def add(self, packet: av.Packet, keep_pts: bool) -> None:
        # A packet marked discard is not shown (an MP4 edit list cuts it: the frames before the key frame a
        # `-c copy` cut starts from, an audio encoder's priming) and decoders drop it: it is not the stream's.
        if packet.size == 0 or packet.pts is None:
            return
        if packet.is_discard:
            self.discarded += 1
            return
        self.count += 1
        pts, dur = packet.pts, packet.duration or 0
        self.total_duration += dur
        self.missing_duration |= dur <= 0
        if self.first_duration is None and dur:
            self.first_duration = dur
        self.first_pts = pts if self.first_pts is None else min(self.first_pts, pts)
        self.end_pts = pts + dur if self.end_pts is None else max(self.end_pts, pts + dur)
        if keep_pts:
            self.pts.append(pts)

    def listen(self, packet: av.Packet) -> None:
        """Audio: decode the first packets until sound comes out (some decoders, WMA's, need a few first)."""
        if self.first_sound is not None or self._listened >= LISTEN_PACKETS or packet.size == 0:
            return
        self._listened += 1
        try:
            frames = packet.decode()
        except av.FFmpegError:
            self._listened = LISTEN_PACKETS  # an undecodable start: the packets' times stand
            return
        for frame in frames:
            if frame.pts is not None:
                self.first_sound = Fraction(frame.pts) * frame.time_base
                return


def probe(path: str | Path, *, max_pixels: int | None = None) -> MediaInfo:
    """Describe ``path``. Raises a ``MediaError`` naming the problem and the fix: missing file, not a
    media file, no video stream / audio only, a still picture (``StillImage``: a PNG/JPEG/WebP... file
    or a one-frame GIF/APNG, whatever its name; one frame in a video container is a video), zero
    frames, truncated file, picture smaller than ``MIN_SIDE`` or (with ``max_pixels``) larger than
    ``max_pixels`` pixels per frame."""
    path = Path(path)
    if not path.is_file():
        raise MediaFileNotFound(f"{path}: no such file. Check the path and the spelling of the file name.", path)
    try:
        container = av.open(str(path), metadata_errors="replace")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise NotAVideo(
            f"{path}: not a video FFmpeg can read ({reason(exc)}). Check that it is a complete video file "
            "(MP4, MKV, MOV, WebM, AVI...); a partial download whose index is missing cannot be opened.",
            path,
        ) from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            if container.streams.audio:
                what = "an audio-only file"
            else:
                what = f"a file with only {', '.join(kinds)} streams" if kinds else "a file with no streams at all"
            raise NoVideoStream(f"{path}: {what}, there is no video stream to upscale. Choose a video file.", path)
        if all(v.disposition & _COVER for v in container.streams.video):
            raise NoVideoStream(f"{path}: an audio file with a cover picture; there is no video to upscale. "
                                "Choose a video file.", path)
        scans, vstream = _scan_packets(path, container)
        _refuse_still_picture(path, container, vstream, scans[vstream.index].count)
        vinfo = _video_info(path, container, vstream, scans[vstream.index])
        audio = tuple(_audio_info(s, scans[s.index]) for s in container.streams.audio)
        subs = tuple(_subtitle_info(s, scans[s.index]) for s in container.streams.subtitles)
        duration = Fraction(container.duration, av.time_base) if container.duration else None
        other = tuple(_other_info(s) for s in container.streams
                      if s.type not in ("audio", "subtitle") and s.index != vstream.index)
        name = container_name(path, container.format.name, container.format.long_name)
        info = MediaInfo(path, container.format.name, path.stat().st_size, duration, vinfo, audio, subs, other, name)

    if vinfo.width < MIN_SIDE or vinfo.height < MIN_SIDE:
        raise UnsupportedSize(
            f"{path}: the picture is {vinfo.width}x{vinfo.height}; at least {MIN_SIDE}x{MIN_SIDE} pixels are "
            "needed (the model works on 8x8 blocks). Use a larger video.",
            path,
        )
    if max_pixels is not None and vinfo.width * vinfo.height > max_pixels:
        raise SizeLimitExceeded(
            f"{path}: the picture is {vinfo.width}x{vinfo.height} = {vinfo.width * vinfo.height} pixels, over the "
            f"limit of {max_pixels} pixels per frame. Downscale the video first or raise the limit "
            "(STREAM_DIFFVSR_MAX_INPUT_PIXELS).",
            path,
        )
    log.debug("probed %s: %s", path, info.to_dict())
    return info


def _scan_packets(path: Path, container: av.container.InputContainer) -> tuple[dict[int, _Scan], av.VideoStream]:
    """Every stream's packets in one demux pass, and the video to upscale: of ``_moving_videos``, the one
    with the most frames (then the default one, then the first)."""
    scans = {s.index: _Scan() for s in container.streams}
    videos = _moving_videos(container)
    try:
        for packet in container.demux():
            scans[packet.stream.index].add(packet, keep_pts=packet.stream in videos)
            if packet.stream.type == "audio":
                scans[packet.stream.index].listen(packet)
    except av.FFmpegError as exc:
        got = max(scans[v.index].count for v in videos)
        raise TruncatedVideo(
            f"{path}: the file breaks after video frame {got} ({reason(exc)}); it is truncated or damaged. "
            "Download or copy it again; frames before the break would not be the whole video.",
            path,
            frame_index=got,
        ) from exc
    vstream = max(videos, key=lambda v: (scans[v.index].count, bool(v.disposition & _DEFAULT), -v.index))
    vscan = scans[vstream.index]
    if vscan.count == 0:
        raise ZeroFrames(f"{path}: the video stream holds no frames. Choose a video that has pictures.", path)
    # MP4/MOV headers list every sample, so fewer packets than that means a cut file (AVI headers
    # also count dropped frames, which have no packet, so they are not compared).
    header_frames = (vstream.frames or 0) if "mp4" in container.format.name else 0
    if header_frames > vscan.count + vscan.discarded:
        raise TruncatedVideo(
            f"{path}: the header announces {header_frames} frames but only {vscan.count} are in the file; it is "
            "truncated. Download or copy it again.",
            path,
            frame_index=vscan.count,
        )
    return scans, vstream


_DEFAULT = av.stream.Disposition.default
_COVER = av.stream.Disposition.attached_pic


def _moving_videos(container: av.container.InputContainer) -> list[av.VideoStream]:
    """The video streams that can be the video to upscale: not a cover picture (``attached_pic``). Of these
    the one with the most frames is taken (a cover that is not marked as one has a single frame)."""
    return [v for v in container.streams.video if not v.disposition & _COVER]


# FFmpeg reads a picture file with ``image2`` (by file name) or a content-probed ``<codec>_pipe``
# demuxer (``png_pipe``, ``jpeg_pipe``...), whatever the file is called; GIF and APNG files are
# animations, pictures when they hold a single frame. A single frame in a real video container
# (MP4, MKV, MOV...) is a one-frame video and is accepted.
_ANIMATION_FORMATS = frozenset({"gif", "apng"})
_PICTURE_KINDS = {"png": "PNG", "apng": "PNG", "mjpeg": "JPEG", "jpegls": "JPEG-LS", "jpeg2000": "JPEG 2000",
                  "jpegxl": "JPEG XL", "webp": "WebP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF", "qoi": "QOI"}
_VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts",
                             ".mts", ".flv", ".wmv", ".ogv", ".3gp", ".mxf"})


def _refuse_still_picture(path: Path, container: av.container.InputContainer, stream: av.VideoStream,
                          frames: int) -> None:
    """Raise ``StillImage`` when ``path`` is a picture file (or a one-frame GIF/APNG), not a video."""
    fmt = container.format.name
    if not (fmt == "image2" or fmt.endswith("_pipe") or (fmt in _ANIMATION_FORMATS and frames == 1)):
        return
    codec = stream.codec.canonical_name
    kind = _PICTURE_KINDS.get(codec, codec.upper())
    misnamed = f", although its name ends in {path.suffix}" if path.suffix.lower() in _VIDEO_SUFFIXES else ""
    raise StillImage(
        f"{path}: this is a still picture ({kind}), not a video{misnamed}. Choose a video file; to upscale "
        "this picture, use an image upscaler or first turn it into a short video.",
        path,
    )


_DURATION_TAG = re.compile(r"^(\d+):(\d\d):(\d\d)(?:\.(\d+))?$")


def _tag_duration(stream: av.stream.Stream) -> Fraction | None:
    """The Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``) as seconds, when present."""
    raw = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    match = _DURATION_TAG.match(raw.strip()) if raw else None
    if not match:
        return None
    h, m, s, frac = match.groups()
    seconds = Fraction(int(h) * 3600 + int(m) * 60 + int(s))
    if frac:
        seconds += Fraction(int(frac), 10 ** len(frac))
    return seconds


def _video_info(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, scan: _Scan
) -> VideoStreamInfo:
    tb = Fraction(stream.time_base)
    first = _first_frame(path, container, stream)
    pts = sorted(set(scan.pts))
    deltas = [b - a for a, b in zip(pts, pts[1:])]
    last_dur = Fraction(scan.end_pts - pts[-1]) if scan.end_pts is not None and scan.end_pts > pts[-1] else None
    variable = False
    if len(deltas) >= 2:
        spread = max(deltas) - min(deltas)
        mean = Fraction(sum(deltas), len(deltas))
        # One tick of spread is the container's rounding (Matroska's ms) when a tick is much
        # shorter than a frame; when a tick is a whole frame (AVI), any spread is a real gap.
        rounding = 1 if mean >= 10 else 0
        variable = spread > rounding and spread > mean / 200
    avg_rate = Fraction(stream.average_rate) if stream.average_rate else None
    if variable and deltas:
        avg_rate = 1 / (Fraction(sum(deltas), len(deltas)) * tb)
    elif deltas:
        avg_rate = _stream_rate(stream, pts, tb, Fraction(sum(deltas), len(deltas)) * tb) or avg_rate
    if avg_rate is None:
        base = stream.base_rate or stream.guessed_rate
        avg_rate = Fraction(base) if base else Fraction(25)
    if last_dur is None or last_dur == 0:
        last_dur = (1 / avg_rate) / tb
    start = Fraction(pts[0]) * tb
    # Each packet lasts until the next one (MP4 sample durations are dts steps), so their sum is the
    # span even with reordered B-frames, where max(pts + duration) would be wrong; a gap (an AVI
    # dropped frame) is covered by the pts span plus the shortest frame step.
    span = Fraction(pts[-1] - pts[0]) + (min(deltas) if deltas else last_dur)
    if scan.missing_duration:
        duration = (Fraction(pts[-1] - pts[0]) + last_dur) * tb
    else:
        duration = max(Fraction(scan.total_duration), span) * tb
    if not variable and abs(duration - len(pts) / avg_rate) <= min(2 * tb, 1 / (4 * avg_rate)):
        duration = len(pts) / avg_rate  # a constant rate stored with rounded ticks (Matroska: ms)
    tag_duration = _tag_duration(stream)
    if tag_duration is not None and duration + 2 / avg_rate < tag_duration:
        raise TruncatedVideo(
            f"{path}: the video stream ends at {float(duration):.3f} s (frame {len(pts)}) but its header says "
            f"{float(tag_duration):.3f} s; the file is truncated. Download or copy it again.",
            path,
            frame_index=len(pts),
        )

    ctx = stream.codec_context
    width, height = ctx.width, ctx.height
    pix_fmt = first.format.name if first is not None else (ctx.pix_fmt or "unknown")
    sar = Fraction(stream.sample_aspect_ratio) if stream.sample_aspect_ratio else Fraction(1)
    rotation = int(round(first.rotation)) % 360 if first is not None else 0
    if rotation % 90:
        log.warning("%s: display rotation of %d degrees is not a multiple of 90; treated as %d", path, rotation,
                    round(rotation / 90) * 90 % 360)
        rotation = round(rotation / 90) * 90 % 360
    disp_w, disp_h = max(1, round(width * sar)), height
    if rotation in (90, 270):
        disp_w, disp_h = disp_h, disp_w
    src = first if first is not None else ctx
    tags = resolve_tags(src.color_primaries, src.color_trc, src.colorspace, src.color_range, height, pix_fmt)
    if first is not None and not first.format.is_rgb:
        sws_matrix(tags, str(path))  # refuse now a matrix we could not convert correctly later
    names = tags.names
    return VideoStreamInfo(
        index=stream.index,
        codec=stream.codec.canonical_name,
        profile=stream.profile,
        width=width,
        height=height,
        sample_aspect_ratio=sar,
        display_aspect_ratio=Fraction(width * sar, height) if height else Fraction(1),
        display_width=disp_w,
        display_height=disp_h,
        rotation=rotation,
        pix_fmt=pix_fmt,
        bit_depth=bit_depth(pix_fmt),
        has_alpha=has_alpha(pix_fmt) or _alpha_beside_picture(stream),
        color_primaries=names["primaries"],
        color_transfer=names["transfer"],
        color_matrix=names["matrix"],
        color_range=names["range"],
        colour=tags,
        avg_rate=avg_rate,
        real_rate=Fraction(stream.base_rate) if stream.base_rate else None,
        time_base=tb,
        start_time=start,
        duration=duration,
        frame_count=scan.count,
        variable_rate=variable,
        bit_rate=stream.bit_rate or None,
        hdr=hdr_from_frame(first) if first is not None else HdrInfo(),
        interlaced=bool(first is not None and first.interlaced_frame),
    )


def _alpha_beside_picture(stream: av.VideoStream) -> bool:
    """Whether the container says the stream's alpha travels beside the picture: VP8/VP9 in WebM or
    Matroska keep it in BlockAdditional data (track tag ``alpha_mode=1``), which only libvpx decodes, so
    the decoded pixel format (yuv420p from FFmpeg's own decoder) does not show it."""
    value = (stream.metadata or {}).get("alpha_mode") or (stream.metadata or {}).get("ALPHA_MODE")
    return str(value).strip() == "1"


def _stream_rate(stream: av.VideoStream, pts: list[int], tb: Fraction, mean_step: Fraction) -> Fraction | None:
    """The exact rate of a constant-rate stream (see ``media.rates``): the rate its timestamps and what
    the file declares agree on (the bitstream's timing info, e.g. H.264/HEVC, then the container's,
    e.g. Matroska's DefaultDuration); else the closest standard rate within one tick over the whole
    span; else None (keep FFmpeg's estimate, which for a short Matroska clip can be 19001/317)."""
    declared = (stream.codec_context.framerate, stream.average_rate)
    rate = constant_rate(pts, tb, declared)
    if rate is not None:
        return rate
    tolerance = tb / (len(pts) - 1)
    fits = [r for r in STANDARD_RATES if abs(1 / r - mean_step) <= tolerance]
    return min(fits, key=lambda r: abs(1 / r - mean_step)) if fits else None


def _first_frame(path: Path, container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame | None:
    """The first decodable frame (for rotation, pixel format and colour tags); None if none decodes."""
    container.seek(0, stream=stream) if container.format.name not in ("avi",) else container.seek(0)
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise DecodeError(
            f"{path}: the first video frame cannot be decoded ({reason(exc)}). The file is damaged or uses an "
            "unsupported codec; re-encode it (for example to H.264) and try again.",
            path,
            frame_index=0,
        ) from exc
    raise ZeroFrames(f"{path}: no video frame can be decoded. Choose a video that has pictures.", path)


def _audio_info(stream: av.AudioStream, scan: _Scan) -> AudioStreamInfo:
    tb = Fraction(stream.time_base)
    ctx = stream.codec_context
    start = Fraction(scan.first_pts) * tb if scan.first_pts is not None else None
    duration = (Fraction(scan.end_pts - scan.first_pts) * tb) if scan.first_pts is not None else None
    return AudioStreamInfo(
        index=stream.index,
        codec=stream.codec.canonical_name,
        channels=ctx.channels,
        layout=ctx.layout.name,
        sample_rate=ctx.sample_rate,
        language=_language(stream),
        title=(stream.metadata or {}).get("title"),
        time_base=tb,
        start_time=start,
        duration=duration,
        packet_duration=Fraction(scan.first_duration) * tb if scan.first_duration else None,
        packets=scan.count,
        bit_rate=ctx.bit_rate or None,
        first_sound=scan.first_sound,
    )


def _subtitle_info(stream: av.stream.Stream, scan: _Scan) -> SubtitleStreamInfo:
    tb = Fraction(stream.time_base)
    return SubtitleStreamInfo(
        index=stream.index,
        codec=stream.codec.canonical_name,
        language=_language(stream),
        title=(stream.metadata or {}).get("title"),
        time_base=tb,
        start_time=Fraction(scan.first_pts) * tb if scan.first_pts is not None else None,
        packets=scan.count,
    )


def _other_info(stream: av.stream.Stream) -> OtherStreamInfo:
    if stream.type == "attachment":
        data = stream.data
        return OtherStreamInfo(stream.index, "attachment", stream.name, stream.mimetype, len(data) if data else 0)
    if stream.type == "video":
        return OtherStreamInfo(stream.index, "video", stream.codec.canonical_name, None, None)
    meta = stream.metadata or {}
    name = meta.get("handler_name") or meta.get("title") or getattr(stream, "name", None)
    return OtherStreamInfo(stream.index, stream.type, name, None, None)


def _language(stream: av.stream.Stream) -> str | None:
    lang = stream.language or (stream.metadata or {}).get("language")
    return None if lang in (None, "", "und") else lang
