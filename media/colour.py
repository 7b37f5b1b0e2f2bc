"""Colour tags and the YUV <-> RGB conversions that honour them.

FFmpeg describes a stream's colour with four enums (``AVColorPrimaries``, ``AVColorTransferCharacteristic``,
``AVColorSpace`` = the YUV matrix, ``AVColorRange``). The matrix and the range decide how YUV becomes
RGB; primaries and transfer only travel as tags (we never change gamut or transfer). An untagged
matrix is guessed as players do: BT.601 below 720 lines, BT.709 from 720 lines up; an untagged range
is limited ("tv"), except for the JPEG-style ``yuvj*`` formats which are full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av
import numpy as np

from media.errors import UnsupportedPixelFormat

log = logging.getLogger(__name__)

# AVColorSpace -> name; the swscale matrix used for it (None: swscale cannot do it).
MATRIX_NAMES = {
    0: "rgb", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
    8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
    13: "chroma-derived-c", 14: "ictcp",
}
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020"}
PRIMARIES_NAMES = {
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}
TRANSFER_NAMES = {
    1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10",
    15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}
RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}
UNSPECIFIED = 2  # AVCOL_*_UNSPECIFIED for primaries, transfer and matrix
RANGE_TV, RANGE_PC = 1, 2


@dataclass(frozen=True)
class ColourTags:
    """The four colour enums of a stream, as FFmpeg integers (see the *_NAMES tables for names).

    ``matrix`` and ``range`` are always resolved (never unspecified): an untagged source gets the
    matrix and range that were assumed to read it, so the output is tagged with what it really is.
    ``primaries`` / ``transfer`` may stay 2 (unspecified) and are then left untagged in the output.
    """

    primaries: int
    transfer: int
    matrix: int
    range: int
    matrix_guessed: bool = False

    @property
    def names(self) -> dict[str, str]:
        return {
            "primaries": PRIMARIES_NAMES.get(self.primaries, str(self.primaries)),
            "transfer": TRANSFER_NAMES.get(self.transfer, str(self.transfer)),
            "matrix": MATRIX_NAMES.get(self.matrix, str(self.matrix)),
            "range": RANGE_NAMES.get(self.range, str(self.range)),
        }


def resolve_tags(
    primaries: int, transfer: int, matrix: int, colour_range: int, height: int, pix_fmt: str | None
) -> ColourTags:
    """Fill in the matrix and range of an untagged stream the way players do (see the module doc)."""
    guessed = False
    if matrix in (UNSPECIFIED, 3) or matrix not in MATRIX_NAMES:
        matrix = 1 if height >= 720 else 6
        guessed = True
    if colour_range not in (RANGE_TV, RANGE_PC):
        colour_range = RANGE_PC if (pix_fmt or "").startswith("yuvj") else RANGE_TV
    return ColourTags(primaries, transfer, matrix, colour_range, guessed)


def sws_matrix(tags: ColourTags, what: str) -> str | None:
    """The swscale matrix name for ``tags.matrix``; None for RGB content. ``what`` names the file for errors."""
    if tags.matrix == 0:
        return None
    try:
        return _SWS_MATRIX[tags.matrix]
    except KeyError:
        raise UnsupportedPixelFormat(
            f"{what}: the colour matrix {MATRIX_NAMES.get(tags.matrix, tags.matrix)!r} cannot be converted to "
            "RGB correctly by this build (supported: bt709, bt601/smpte170m, bt470bg, smpte240m, fcc, "
            "bt2020nc). Convert the video to BT.709 or BT.2020 first."
        ) from None


def frame_to_rgb(frame: av.VideoFrame, tags: ColourTags, what: str, *, deep: bool = False) -> np.ndarray:
    """Decode-side conversion: any ``VideoFrame`` -> HWC RGB, coded size: ``uint8`` (0..255), or with
    ``deep`` (a source deeper than 8 bits) ``uint16`` (0..65535, ``rgb48le``), so no level is lost.

    Uses the stream's matrix and range (``tags``), not swscale's BT.601 default. An alpha plane is
    dropped (the caller logs that once).
    """
    target = "rgb48le" if deep else "rgb24"
    if frame.format.name == target:
        return frame.to_ndarray()
    matrix = sws_matrix(tags, what)
    if matrix is None or _is_rgb_format(frame.format):
        return frame.reformat(format=target).to_ndarray()
    return frame.reformat(
        format=target, src_colorspace=matrix, src_color_range=tags.range, interpolation="BICUBIC"
    ).to_ndarray()


def to_8bit(rgb: np.ndarray) -> np.ndarray:
    """A frame for display or analysis only (previews, scene detection): ``uint16`` RGB rounded to
    ``uint8``; a ``uint8`` frame as it is."""
    if rgb.dtype == np.uint8:
        return rgb
    return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str, tags: ColourTags, what: str) -> av.VideoFrame:
    """Encode-side conversion: HWC RGB, ``uint8`` (0..255) or ``uint16`` (0..65535) -> a ``VideoFrame``
    in ``pix_fmt`` with ``tags``' matrix and range applied and set on the frame."""
    source = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=source)
    target = av.VideoFormat(pix_fmt)
    if _is_rgb_format(target):
        out = frame.reformat(format=pix_fmt)
        out.colorspace = 0  # AVCOL_SPC_RGB
    else:
        matrix = sws_matrix(tags, what) or "ITU709"
        out = frame.reformat(
            format=pix_fmt, dst_colorspace=matrix, dst_color_range=tags.range, interpolation="BICUBIC"
        )
        out.colorspace = tags.matrix
        out.color_range = tags.range
    if tags.primaries != UNSPECIFIED:
        out.color_primaries = tags.primaries
    if tags.transfer != UNSPECIFIED:
        out.color_trc = tags.transfer
    return out


def _is_rgb_format(fmt: av.VideoFormat) -> bool:
    return bool(fmt.is_rgb)


def has_alpha(pix_fmt: str | None) -> bool:
    """Whether ``pix_fmt`` carries an alpha plane (yuva*, rgba, argb, gbrap, ya8...)."""
    if not pix_fmt:
        return False
    try:
        fmt = av.VideoFormat(pix_fmt)
    except ValueError:
        return False
    return any(c.is_alpha for c in fmt.components)


def bit_depth(pix_fmt: str | None) -> int | None:
    """Bits per component of ``pix_fmt`` (8, 10, 12, 16...), None when unknown."""
    if not pix_fmt:
        return None
    try:
        fmt = av.VideoFormat(pix_fmt)
    except ValueError:
        return None
    return max((c.bits for c in fmt.components), default=None)
