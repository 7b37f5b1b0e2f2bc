"""Tiny 10-bit HDR test clips made with PyAV + libx265 (HDR10 with its static metadata, or HLG).

``make_hdr_video(path, ...)`` writes a HEVC Main 10 (``yuv420p10le``) clip tagged BT.2020 / BT.2020
non-constant matrix / limited range with a PQ (``smpte2084``) or HLG (``arib-std-b67``) transfer;
for PQ the mastering display colour volume and content light level go into the bitstream through
libx265's ``master-display`` / ``max-cll``. The picture is a smooth 16-bit gradient with far more
than 256 levels (``gradient``), so a test can tell 10 bits from 8.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["MASTER_DISPLAY", "MAX_CLL", "distinct_levels", "gradient", "make_hdr_video"]

# libx265 units: chromaticity in 0.00002, luminance in 0.0001 cd/m2 (P3 primaries, D65, 1000 / 0.0001 nits).
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
MAX_CLL = (1000, 400)  # MaxCLL, MaxFALL in cd/m2


def gradient(width: int, height: int, index: int = 0) -> np.ndarray:
    """HWC uint16 RGB (0..65535): a diagonal ramp over the whole picture, every pixel another level
    (shifted a little per frame), neutral grey so every channel has the same many levels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    ramp = (x * height + y + 7 * index) % (width * height)
    value = (4096 + ramp * (60000 - 4096) // max(width * height - 1, 1)).astype(np.uint16)
    return np.repeat(value[..., None], 3, axis=2)


def distinct_levels(rgb: np.ndarray) -> int:
    """How many different values the green channel of ``rgb`` holds."""
    return int(np.unique(rgb[..., 1]).size)


def make_hdr_video(path: str | Path, width: int = 64, height: int = 48, frames: int = 4, *,
                   transfer: str = "pq", rate: Fraction = Fraction(24)) -> Path:
    """Write the clip (container from ``path``'s suffix: .mkv, .mp4, .mov). ``transfer``: "pq" (HDR10
    with mastering display and content light level) or "hlg"."""
    path = Path(path)
    params = "log-level=error"
    if transfer == "pq":
        params += f":master-display={MASTER_DISPLAY}:max-cll={MAX_CLL[0]},{MAX_CLL[1]}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx265", rate=rate, options={"crf": "12", "preset": "ultrafast",
                                                               "x265-params": params})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        ctx = stream.codec_context
        ctx.color_primaries, ctx.colorspace, ctx.color_range = 9, 9, 1
        ctx.color_trc = 16 if transfer == "pq" else 18
        if path.suffix.lower() in (".mp4", ".mov"):
            ctx.codec_tag = "hvc1"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(gradient(width, height, i), format="rgb48le")
            frame = frame.reformat(format="yuv420p10le", dst_colorspace="BT2020", dst_color_range=1)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
