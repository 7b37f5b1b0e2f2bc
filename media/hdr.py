"""High bit depth and HDR: what a source carries beyond 8-bit SDR, and how the output keeps it.

- Depth: a source deeper than 8 bits is read as HWC ``uint16`` RGB (0..65535, ``rgb48le``) instead of
  ``uint8`` (``media.reader``), and ``output_depth`` says how deep the output should be: the source's
  depth, or 10 bits for an 8-bit source with a PQ/HLG transfer (8-bit PQ bands visibly).
- HDR10 static metadata (``HdrInfo``): the mastering display colour volume (SMPTE ST 2086) and the
  content light level (MaxCLL/MaxFALL), read from the first decoded frame's side data, where FFmpeg
  puts them whether they came from the bitstream (HEVC SEI, AV1 metadata OBUs) or the container
  (Matroska's Colour element, MP4/MOV ``mdcv``/``clli``). Written back through the encoder's own
  options (libx265 ``master-display``/``max-cll``, SVT-AV1 ``mastering-display``/``content-light``)
  and, for codecs whose bitstream has no place for it (ProRes, FFV1), into the Matroska header
  (``media.matroska.write_mastering``).
- Dolby Vision: its dynamic metadata (the RPU) cannot survive a re-encode; the output is the base
  layer (HDR10 or HLG), and ``hdr_notes`` says so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

__all__ = ["ContentLight", "HdrInfo", "MasteringDisplay", "PQ", "HLG", "hdr_from_frame", "hdr_label", "hdr_notes",
           "is_hdr", "output_depth", "svtav1_params", "x265_params"]

PQ, HLG = 16, 18  # AVColorTransferCharacteristic: smpte2084, arib-std-b67
_BT2020 = 9
_MDCV = struct.Struct("<20i2i")  # AVMasteringDisplayMetadata: 10 AVRationals (R, G, B, white, min, max), 2 flags
_CLL = struct.Struct("<2I")  # AVContentLightMetadata: MaxCLL, MaxFALL


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086: CIE 1931 xy of the mastering display's primaries and white point, and its
    luminance range in cd/m2."""

    red: tuple[Fraction, Fraction]
    green: tuple[Fraction, Fraction]
    blue: tuple[Fraction, Fraction]
    white: tuple[Fraction, Fraction]
    min_luminance: Fraction
    max_luminance: Fraction


@dataclass(frozen=True)
class ContentLight:
    """CTA-861.3: the brightest pixel (MaxCLL) and brightest frame average (MaxFALL), cd/m2."""

    max_cll: int
    max_fall: int


@dataclass(frozen=True)
class HdrInfo:
    """The HDR metadata of a video stream beyond its colour tags (all absent for SDR)."""

    mastering: MasteringDisplay | None = None
    content_light: ContentLight | None = None
    dolby_vision: bool = False


def _q(num: int, den: int) -> Fraction:
    return Fraction(num, den) if den else Fraction(0)


def hdr_from_frame(frame: av.VideoFrame) -> HdrInfo:
    """The HDR metadata in a decoded frame's side data."""
    mastering = light = None
    dolby = False
    for side in frame.side_data:
        name = getattr(side.type, "name", str(side.type))
        data = bytes(side)
        if name == "MASTERING_DISPLAY_METADATA" and len(data) >= _MDCV.size:
            v = _MDCV.unpack_from(data)
            q = [_q(v[i], v[i + 1]) for i in range(0, 20, 2)]
            if v[20]:  # has_primaries
                mastering = MasteringDisplay((q[0], q[1]), (q[2], q[3]), (q[4], q[5]), (q[6], q[7]),
                                             q[8] if v[21] else Fraction(0), q[9] if v[21] else Fraction(0))
        elif name == "CONTENT_LIGHT_LEVEL" and len(data) >= _CLL.size:
            light = ContentLight(*_CLL.unpack_from(data))
        elif name in ("DOVI_METADATA", "DOVI_RPU_BUFFER"):
            dolby = True
    return HdrInfo(mastering, light, dolby)


def is_hdr(video: Any) -> bool:
    """Whether ``video`` (a ``VideoStreamInfo``) is coded with a PQ or HLG transfer."""
    return video.colour.transfer in (PQ, HLG)


def output_depth(video: Any) -> int:
    """Bits per component the output should keep for the source ``video``: its own depth when deeper
    than 8 bits, 10 for an 8-bit PQ/HLG source, else 8."""
    depth = video.bit_depth or 8
    if depth > 8:
        return depth
    return 10 if is_hdr(video) else 8


def hdr_label(video: Any) -> str | None:
    """"HDR10 (PQ, BT.2020, 10-bit)", "HLG (BT.2020, 10-bit)", "PQ (...)" without static metadata, or
    None for an SDR source."""
    if not is_hdr(video):
        return None
    parts = ["BT.2020"] if video.colour.primaries == _BT2020 else [str(video.color_primaries)]
    parts.append(f"{video.bit_depth or 8}-bit")
    if video.colour.transfer == HLG:
        return f"HLG ({', '.join(parts)})"
    kind = "HDR10" if video.hdr.mastering is not None or video.hdr.content_light is not None else "PQ"
    return f"{kind} ({', '.join(['PQ', *parts])})"


def hdr_notes(video: Any, codec: str, pix_fmt: str) -> tuple[str, ...]:
    """What happens to the source's depth and HDR in an output of ``codec`` in ``pix_fmt``, for the plan.
    Empty for an 8-bit SDR source."""
    from media.colour import bit_depth

    label = hdr_label(video)
    depth = video.bit_depth or 8
    out_depth = bit_depth(pix_fmt) or 8
    notes: list[str] = []
    if out_depth < output_depth(video):
        what = label or f"{depth}-bit"
        notes.append(f"{what}: the {codec} output is {out_depth}-bit, so the source's extra precision is rounded "
                     f"away{' and PQ/HLG pictures band visibly' if label else ''}; choose hevc (the default for "
                     f"such a source), av1, prores or ffv1 to keep {max(10, min(depth, 16))} bits.")
    elif label is not None:
        notes.append(f"{label}: kept")
    elif depth > 8:
        notes.append(f"{depth}-bit: kept ({codec}, {pix_fmt})")
    if video.hdr.dolby_vision:
        base = "HLG" if video.colour.transfer == HLG else "HDR10"
        notes.insert(0, f"Dolby Vision: its dynamic metadata cannot survive a re-encode; the output is its {base} "
                        "base layer.")
    return tuple(notes)


def _x265_mastering(m: MasteringDisplay) -> str:
    def xy(point: tuple[Fraction, Fraction]) -> str:
        return f"({round(point[0] * 50000)},{round(point[1] * 50000)})"

    return (f"G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
            f"L({round(m.max_luminance * 10000)},{round(m.min_luminance * 10000)})")


def x265_params(hdr: HdrInfo) -> list[str]:
    """libx265 ``x265-params`` entries that write ``hdr``'s static metadata as SEI."""
    params = []
    if hdr.mastering is not None:
        params.append(f"master-display={_x265_mastering(hdr.mastering)}")
    if hdr.content_light is not None:
        params.append(f"max-cll={hdr.content_light.max_cll},{hdr.content_light.max_fall}")
    return params


def svtav1_params(hdr: HdrInfo) -> list[str]:
    """SVT-AV1 ``svtav1-params`` entries that write ``hdr``'s static metadata as metadata OBUs."""
    params = []
    if hdr.mastering is not None:
        m = hdr.mastering

        def xy(point: tuple[Fraction, Fraction]) -> str:
            return f"({float(point[0]):.5f},{float(point[1]):.5f})"

        params.append(f"mastering-display=G{xy(m.green)}B{xy(m.blue)}R{xy(m.red)}WP{xy(m.white)}"
                      f"L({float(m.max_luminance):.4f},{float(m.min_luminance):.5f})")
    if hdr.content_light is not None:
        params.append(f"content-light={hdr.content_light.max_cll},{hdr.content_light.max_fall}")
    if params:
        params.insert(0, "enable-hdr=1")
    return params

