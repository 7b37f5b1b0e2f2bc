"""``make_browser_preview``: a small H.264/AAC MP4 for outputs a browser (Chromium) cannot play.

HEVC, ProRes, FFV1 and 4:4:4 or 10-bit H.264 do not play in Chromium's <video>; the web app shows
the preview and offers the real output for download. The preview keeps timing, rotation and aspect
(it is written by ``VideoWriter``), is at most ``max_height`` lines, and has AAC (or MP3) audio.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from media.colour import to_8bit
from media.encode import EncodeSettings
from media.hdr import hdr_label
from media.mux import BROWSER_AUDIO
from media.probe import MediaInfo, probe
from media.reader import FrameReader
from media.writer import VideoWriter

log = logging.getLogger(__name__)

__all__ = ["make_browser_preview", "plays_in_browser", "preview_note"]



def plays_in_browser(info: MediaInfo) -> bool:
    """Whether Chromium's <video> plays ``info`` as is: H.264/AV1/VP9 in MP4, or VP8/VP9/AV1 in WebM,
    8-bit 4:2:0, with AAC/MP3/Opus/Vorbis/FLAC audio (Matroska, MOV, 4:4:4, 10-bit: no)."""
    suffix = info.path.suffix.lower()
    v = info.video
    allowed = {".mp4": {"h264", "av1", "vp9"}, ".m4v": {"h264"}, ".webm": {"vp8", "vp9", "av1"}}.get(suffix, set())
    if v.codec not in allowed or v.pix_fmt not in ("yuv420p", "yuvj420p"):
        return False
    return all(a.codec in BROWSER_AUDIO for a in info.audio)


def preview_note(source: MediaInfo) -> str | None:
    """What a browser preview (8-bit H.264, ``make_browser_preview``) of a video made from ``source``
    cannot show: HDR as HDR (a PQ/HLG picture; no tone mapping is done), or more than 8 bits. None when
    it shows everything."""
    label = hdr_label(source.video)
    if label is not None:
        return (f"The player shows an 8-bit H.264 preview: it cannot show this {label} video as HDR (the picture "
                "looks flat and dim). The download is the full HDR output; play it on an HDR display.")
    depth = source.video.bit_depth or 8
    if depth > 8:
        return (f"The player shows an 8-bit H.264 preview of this {depth}-bit video; the download keeps all "
                f"{depth} bits.")
    return None


def make_browser_preview(path: str | Path, dest_dir: str | Path, *, max_height: int = 720) -> Path | None:
    """Write ``dest_dir/<stem>.preview.mp4`` (H.264 yuv420p CRF 23, at most ``max_height`` lines, AAC
    audio, or MP3 copied) and return it; None when ``path`` already plays in Chromium."""
    path, dest_dir = Path(path), Path(dest_dir)
    info = probe(path)
    if plays_in_browser(info):
        return None
    v = info.video
    scale = min(1.0, max_height / v.height)
    width = max(2, round(v.width * scale / 2) * 2)
    height = max(2, round(v.height * scale / 2) * 2)
    dest = dest_dir / f"{path.stem}.preview.mp4"
    settings = EncodeSettings("h264", crf=23, preset="veryfast", pix_fmt="yuv420p")
    log.info("%s does not play in browsers (%s %s in %s); writing a %dx%d preview %s",
             path.name, v.codec, v.pix_fmt, info.container_name, width, height, dest.name)
    with FrameReader(path, info=info) as frames, VideoWriter(dest, info, width, height, settings, browser=True) as out:
        for frame in frames:
            rgb = to_8bit(frame.rgb)  # the preview is 8-bit H.264 whatever the output's depth
            if (width, height) != (v.width, v.height):
                rgb = _resize(rgb, width, height)
            out.write(rgb, frame.pts, frame.duration)
        out.finish()
    return dest


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """HWC uint8 RGB -> HWC uint8 RGB of (height, width), area-averaged (swscale)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
