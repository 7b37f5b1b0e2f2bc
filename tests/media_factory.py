"""Deterministic test clips made with PyAV, for every package's tests (media, job, CLI, app).

``make_video(path, width, height, ...)`` writes a short clip whose picture is moving and textured
(a shifting checkerboard over colour gradients and a travelling box), whose audio is a sine tone,
and whose optional subtitles are a few cues. The container follows ``path``'s suffix (.mp4, .mkv,
.mov, .webm...). Everything is a pure function of the arguments, so two calls give the same pixels.

``pattern(width, height, index, scene)`` is the exact RGB picture frame ``index`` was made from
(HWC uint8, values 0..255), so tests can compare decoded pixels against it.

Keep the signatures stable: tests of other packages import them.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROOT_DIR = Path(__file__).resolve().parent.parent  # the repository (for subprocesses that import media)

__all__ = ["ROOT_DIR", "make_video", "make_audio_only", "make_picture", "pattern", "tone", "copy_through",
           "SUBTITLE_CUES"]

# Subtitle cues written by ``make_video(subtitles=...)``: (start, end, text), seconds as Fraction.
SUBTITLE_CUES: tuple[tuple[Fraction, Fraction, str], ...] = (
    (Fraction(1, 10), Fraction(4, 10), "Hello, world"),
    (Fraction(5, 10), Fraction(9, 10), "Second cue: été"),
    (Fraction(12, 10), Fraction(15, 10), "Third cue"),
)

_AUDIO_CODECS = {"aac": ("aac", "fltp"), "opus": ("libopus", "flt"), "pcm": ("pcm_s16le", "s16")}
_SUBTITLE_CODECS = {"srt": "subrip", "mov_text": "mov_text"}
_ALPHA_FORMATS = {"yuva420p", "yuva444p", "rgba", "bgra", "argb", "yuva444p10le", "yuva420p10le"}


def pattern(width: int, height: int, index: int, scene: int = 0) -> np.ndarray:
    """The RGB picture of frame ``index``: HWC uint8, shape (height, width, 3), values 0..255.

    Scene 0 is a checkerboard (8 px squares) drifting 2 px per frame over red/green gradients with
    a bright box travelling left to right; scene 1 is a completely different picture (blue diagonal
    stripes over a dark vertical gradient, with a dark box travelling top to bottom).
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.int32)
    rgb = np.empty((height, width, 3), np.uint8)
    if scene == 0:
        checker = (((x + 2 * index) // 8 + y // 8) % 2).astype(np.int32)
        rgb[..., 0] = (40 + 150 * x // max(width - 1, 1) + 40 * checker).astype(np.uint8)
        rgb[..., 1] = (40 + 150 * y // max(height - 1, 1) + 40 * checker).astype(np.uint8)
        rgb[..., 2] = (60 + 60 * checker + (index * 7) % 40).astype(np.uint8)
        box = max(min(width, height) // 4, 1)
        bx = (index * 3) % max(width - box + 1, 1)
        by = max(height // 2 - box // 2, 0)
        rgb[by : by + box, bx : bx + box] = (235, 230, 60)
    else:
        stripes = (((x + y + 3 * index) // 6) % 2).astype(np.int32)
        rgb[..., 0] = (20 + 30 * stripes).astype(np.uint8)
        rgb[..., 1] = (20 + 60 * y // max(height - 1, 1)).astype(np.uint8)
        rgb[..., 2] = (120 + 110 * stripes).astype(np.uint8)
        box = max(min(width, height) // 4, 1)
        by = (index * 3) % max(height - box + 1, 1)
        bx = max(width // 2 - box // 2, 0)
        rgb[by : by + box, bx : bx + box] = (10, 10, 10)
    return rgb


def tone(sample_rate: int, start_sample: int, count: int, channels: int, track: int = 0) -> np.ndarray:
    """A sine tone of 440 Hz + 110 Hz per ``track``, channel c at amplitude 0.5 / (c + 1).

    Returns (channels, count) float32 in [-0.5, 0.5], samples ``start_sample`` onwards."""
    t = (np.arange(start_sample, start_sample + count, dtype=np.float64)) / sample_rate
    freq = 440.0 + 110.0 * track
    return np.stack([0.5 / (c + 1) * np.sin(2 * np.pi * freq * t) for c in range(channels)]).astype(np.float32)


def _pick_video_codec(path: Path, pix_fmt: str, codec: str | None) -> str:
    if codec is not None:
        return codec
    if pix_fmt in _ALPHA_FORMATS:
        return "ffv1"  # lossless, keeps alpha, fits MKV/MOV/AVI
    if path.suffix.lower() == ".webm":
        return "libvpx-vp9" if _has_encoder("libvpx-vp9") else "libsvtav1"
    return "libx264"


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends: simply not available
        return False
    return True


def make_video(
    path: str | Path,
    width: int = 64,
    height: int = 48,
    rate: Fraction | int = Fraction(30000, 1001),
    frames: int = 12,
    *,
    audio: str | None = "aac",
    audio_tracks: int = 1,
    sample_rate: int = 48000,
    channels: int = 2,
    audio_offset: Fraction = Fraction(0),
    audio_duration: Fraction | None = None,
    subtitles: str | None = None,
    pix_fmt: str = "yuv420p",
    codec: str | None = None,
    rotation: int = 0,
    sample_aspect_ratio: Fraction | None = None,
    scene_cut_at: int | None = None,
    timestamps: Sequence[Fraction] | None = None,
    color_range: str = "tv",
    colorspace: str = "bt709",
    gop: int | None = None,
    crf: int = 12,
    languages: Sequence[str] | None = None,
) -> Path:
    """Write a deterministic clip to ``path`` and return it (container chosen by the suffix).

    - ``frames`` pictures from ``pattern`` (scene 1 from frame ``scene_cut_at`` on), encoded with
      ``codec`` (default libx264 CRF ``crf``, or FFV1 for an alpha ``pix_fmt``) at constant ``rate``,
      or at the variable ``timestamps`` (seconds, one per frame, increasing) when given.
    - ``audio``: ``'aac'`` | ``'opus'`` | ``'pcm'`` (s16le) | ``None``; ``audio_tracks`` streams of a tone
      lasting as long as the video (or ``audio_duration`` seconds), starting ``audio_offset`` seconds
      after the video.
    - ``subtitles``: ``None`` | ``'srt'`` (SubRip, for MKV) | ``'mov_text'`` (for MP4/MOV), ``SUBTITLE_CUES``.
    - ``rotation``: display-matrix rotation in degrees (90 = the player turns the picture).
    - ``color_range`` ``'tv'``/``'pc'`` and ``colorspace`` ``'bt709'``/``'bt601'``: how RGB is
      converted to YUV and how the stream is tagged.
    - ``gop``: keyframe interval (default: the encoder's).
    """
    path = Path(path)
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    if timestamps is not None and len(timestamps) != frames:
        raise ValueError(f"timestamps has {len(timestamps)} entries for {frames} frames")
    rate = Fraction(rate)
    vcodec = _pick_video_codec(path, pix_fmt, codec)
    matrix = {"bt709": "ITU709", "bt601": "ITU601", "smpte170m": "SMPTE170M"}[colorspace]
    space_id = {"bt709": 1, "bt601": 6, "smpte170m": 6}[colorspace]
    prim_id = {"bt709": 1, "bt601": 6, "smpte170m": 6}[colorspace]
    range_id = {"tv": 1, "pc": 2}[color_range]

    with av.open(str(path), "w") as out:
        options: dict[str, str] = {}
        if vcodec in ("libx264", "libx265"):
            options["crf"] = str(crf)
            options["preset"] = "ultrafast" if vcodec == "libx264" else "ultrafast"
            if vcodec == "libx265":
                options["x265-params"] = "log-level=error"
        video = out.add_stream(vcodec, rate=rate, options=options)
        video.width = width
        video.height = height
        video.pix_fmt = pix_fmt
        if gop is not None:
            video.codec_context.gop_size = gop
        video.codec_context.color_range = range_id
        video.codec_context.colorspace = space_id
        video.codec_context.color_primaries = prim_id
        video.codec_context.color_trc = prim_id
        if sample_aspect_ratio is not None:
            video.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
        if timestamps is not None:
            video.codec_context.time_base = Fraction(1, 90000)
            video.time_base = Fraction(1, 90000)
        if rotation:
            video.set_display_rotation(rotation)

        audio_streams = []
        if audio is not None:
            acodec, sample_fmt = _AUDIO_CODECS[audio]
            for track in range(audio_tracks):
                stream = out.add_stream(acodec, rate=sample_rate)
                stream.layout = "stereo" if channels == 2 else "mono"
                stream.format = sample_fmt
                if languages is not None:
                    stream.metadata["language"] = languages[track]
                audio_streams.append(stream)

        sub_stream = None
        if subtitles is not None:
            sub_stream = out.add_mux_stream(_SUBTITLE_CODECS[subtitles])
            sub_stream.time_base = Fraction(1, 1000)

        out.start_encoding()  # writes the header even when no frame follows (a zero-frame file)
        frame_times: list[Fraction] = (
            [Fraction(t) for t in timestamps] if timestamps is not None else [i / rate for i in range(frames)]
        )
        for i in range(frames):
            scene = 1 if scene_cut_at is not None and i >= scene_cut_at else 0
            rgb = pattern(width, height, i, scene)
            if pix_fmt in _ALPHA_FORMATS:
                alpha = np.full((height, width, 1), 128, np.uint8)
                frame = av.VideoFrame.from_ndarray(np.concatenate([rgb, alpha], axis=2), format="rgba")
                frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=range_id)
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=range_id)
            frame.color_range = range_id
            frame.colorspace = space_id
            if timestamps is not None:
                frame.pts = round(frame_times[i] * 90000)
                frame.time_base = Fraction(1, 90000)
            else:
                frame.pts = i
                frame.time_base = 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))

        video_duration = (frame_times[-1] + (1 / rate)) if frames else Fraction(0)
        tone_duration = video_duration if audio_duration is None else Fraction(audio_duration)
        for track, stream in enumerate(audio_streams):
            _write_tone(out, stream, track, sample_rate, channels, audio_offset, tone_duration)

        if sub_stream is not None:
            for start, end, text in SUBTITLE_CUES:
                data = text.encode("utf-8")
                if subtitles == "mov_text":
                    data = len(data).to_bytes(2, "big") + data
                packet = av.Packet(data)
                packet.stream = sub_stream
                packet.time_base = Fraction(1, 1000)
                packet.pts = packet.dts = int(start * 1000)
                packet.duration = int((end - start) * 1000)
                out.mux(packet)
    return path


def _write_tone(
    out: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    track: int,
    sample_rate: int,
    channels: int,
    offset: Fraction,
    duration: Fraction,
) -> None:
    total = int(duration * sample_rate)
    first = int(offset * sample_rate)
    chunk = stream.codec_context.frame_size or 1024
    sample_fmt = stream.format.name
    written = 0
    while written < total:
        count = min(chunk, total - written)
        samples = tone(sample_rate, written, count, channels, track)
        if sample_fmt == "s16":
            data = (samples.T.reshape(1, -1) * 32767).astype(np.int16)
        elif sample_fmt == "flt":
            data = np.ascontiguousarray(samples.T.reshape(1, -1))
        else:  # planar float
            data = samples
        frame = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = sample_rate
        frame.pts = first + written
        frame.time_base = Fraction(1, sample_rate)
        out.mux(stream.encode(frame))
        written += count
    out.mux(stream.encode(None))


def make_audio_only(path: str | Path, seconds: Fraction = Fraction(1), codec: str = "aac") -> Path:
    """An audio-only file (a tone, no video stream), for the 'audio-only file' error."""
    path = Path(path)
    acodec, sample_fmt = _AUDIO_CODECS[codec]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(acodec, rate=48000)
        stream.layout = "stereo"
        stream.format = sample_fmt
        _write_tone(out, stream, 0, 48000, 2, Fraction(0), seconds)
    return path


# Still-picture kinds for ``make_picture``: (encoder, pixel format, muxer).
_PICTURE_CODECS = {
    "png": ("png", "rgb24", "image2"),
    "jpeg": ("mjpeg", "yuvj420p", "image2"),
    "webp": ("libwebp", "yuv420p", "image2"),
    "gif": ("gif", "rgb8", "gif"),
}


def make_picture(path: str | Path, kind: str = "png", width: int = 64, height: int = 48) -> Path:
    """One still picture of ``pattern`` (``kind``: png | jpeg | webp | gif) written to ``path`` whatever
    its suffix says (``pic.mp4`` holds a PNG picture), as a camera or an editor would write it."""
    path = Path(path)
    encoder, pix_fmt, muxer = _PICTURE_CODECS[kind]
    options = {"update": "1"} if muxer == "image2" else {}  # image2: one file, not a numbered sequence
    with av.open(str(path), "w", format=muxer, options=options) as out:
        stream = out.add_stream(encoder, rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        frame = av.VideoFrame.from_ndarray(pattern(width, height, 0), format="rgb24").reformat(format=pix_fmt)
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def copy_through(
    src: str | Path,
    dest: str | Path,
    *,
    scale: int = 1,
    encode: object | None = None,
    start: Fraction | None = None,
    end: Fraction | None = None,
) -> tuple[object, object]:
    """Run ``src`` through ``media.FrameReader`` -> nearest-neighbour ``scale``x -> ``media.VideoWriter``
    into ``dest`` (an identity "upscaler"); returns ``(source MediaInfo, WriteReport)``."""
    from media import EncodeSettings, FrameReader, VideoWriter, probe

    info = probe(src)
    v = info.video
    settings = encode if encode is not None else EncodeSettings()
    with FrameReader(src, start=start, end=end, info=info) as frames, VideoWriter(
        dest, info, v.width * scale, v.height * scale, settings, start=start, end=end  # type: ignore[arg-type]
    ) as writer:
        for frame in frames:
            rgb = frame.rgb if scale == 1 else np.repeat(np.repeat(frame.rgb, scale, axis=0), scale, axis=1)
            writer.write(rgb, frame.pts, frame.duration)
        report = writer.finish()
    return info, report


def cut_with_an_edit_list(src: Path, dest: Path, seconds: int = 1) -> Path:
    """What ``ffmpeg -ss 1 -i src -c copy dest`` makes: the packets from the key frame before the cut, those
    before it with negative times, which the MP4 edit list has players (and FFmpeg's decoders) discard."""
    with av.open(str(src)) as source, av.open(str(dest), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            shift = round(seconds / packet.time_base)
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dest

