"""The display size of a Matroska/WebM video track, written where FFmpeg's muxer cannot be asked to.

Matroska keeps the sample aspect ratio only as the track's DisplayWidth / DisplayHeight (and
DisplayUnit). FFmpeg's Matroska muxer writes them from the stream's own ``sample_aspect_ratio``
(``AVStream``), which PyAV cannot set: PyAV sets the codec context's, which MP4/MOV's ``pasp`` box and
the H.264/HEVC bitstream carry, but FFV1, ProRes and AV1 (SVT-AV1) keep no aspect in their
bitstream, so their Matroska/WebM outputs showed square pixels.

So ``VideoWriter`` names the video track with ``PLACEHOLDER_NAME`` (a Name element of known size)
and, once the muxer has closed the file, ``write_display_size`` rewrites that one TrackEntry in
place: the Name goes, the Video element gets DisplayWidth/DisplayHeight (see ``display_size``), and
an EBML Void fills what is left, so the TrackEntry keeps its length and no other byte of the file
moves (cluster and cue positions stay right). The Tracks element's CRC-32, if any, is recomputed.
"""

from __future__ import annotations

import logging
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from media.errors import MediaError

log = logging.getLogger(__name__)

__all__ = ["HDR_PLACEHOLDER_NAME", "PLACEHOLDER_NAME", "colour_children", "display_size", "doc_type",
           "write_display_size", "write_header"]

# The video track's Name while the muxer writes the file; removed by ``write_display_size``. Long
# enough for the display elements that replace it (at most 3 + 11 + 11 + 4 bytes).
PLACEHOLDER_NAME = "media.matroska: display size goes here"
HDR_PLACEHOLDER_NAME = PLACEHOLDER_NAME + " (and the HDR metadata)" + "." * 100
"""The longer placeholder when the HDR static metadata goes into the header too (``colour_children``:
at most 3 + 5 + 5 + 3 + 10 * 11 bytes, besides the display size)."""

_EBML, _DOC_TYPE = 0x1A45DFA3, 0x4282
_SEGMENT, _TRACKS, _CLUSTER, _TRACK_ENTRY, _CRC32, _VOID = 0x18538067, 0x1654AE6B, 0x1F43B675, 0xAE, 0xBF, 0xEC
_NAME, _VIDEO, _PIXEL_HEIGHT = 0x536E, 0xE0, 0xBA
_DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT = 0x54B0, 0x54BA, 0x54B2
_DISPLAY_IDS = {_DISPLAY_WIDTH, _DISPLAY_HEIGHT, _DISPLAY_UNIT}
_COLOUR, _MAX_CLL, _MAX_FALL, _MASTERING = 0x55B0, 0x55BC, 0x55BD, 0x55D0
_MASTERING_IDS = range(0x55D1, 0x55DB)  # R x, R y, G x, G y, B x, B y, white x, white y, max, min luminance
_UNIT_DAR = 3  # DisplayUnit 3: DisplayWidth/DisplayHeight are the display aspect ratio
_HEAD_BYTES = 1 << 20  # the Tracks element sits in the file's first bytes, before any cluster


@dataclass(frozen=True)
class _Element:
    id: int
    start: int  # first byte of the ID
    data: int  # first byte of the payload
    end: int  # one past the payload


class _Layout(ValueError):
    """The file is not laid out as FFmpeg's Matroska muxer writes it (names what was missing)."""


def display_size(width: int, height: int, sar: Fraction, *, webm: bool) -> tuple[int, int, int | None]:
    """(DisplayWidth, DisplayHeight, DisplayUnit or None) for a ``width`` x ``height`` picture with
    sample aspect ratio ``sar``. Matroska: the exact display aspect ratio with DisplayUnit 3, as
    FFmpeg writes it. WebM (whose players take only pixels): the display size in whole pixels,
    stretching the side that gets longer, so the aspect is within half a pixel."""
    dar = Fraction(width * sar, height)
    if not webm:
        if max(dar.numerator, dar.denominator) >= 2**31:
            dar = dar.limit_denominator(2**20)
        return dar.numerator, dar.denominator, _UNIT_DAR
    if sar >= 1:
        return max(1, math.floor(width * sar + Fraction(1, 2))), height, None
    return width, max(1, math.floor(height / sar + Fraction(1, 2))), None


def write_display_size(path: Path, width: int, height: int, unit: int | None) -> None:
    """Give the video track of the Matroska/WebM file ``path`` (written with ``PLACEHOLDER_NAME`` as
    its Name) this display size, in place. Raises ``MediaError`` if the file is not laid out as
    expected (nothing is changed then)."""
    write_header(path, (width, height, unit))


def colour_children(hdr: Any) -> bytes:
    """Matroska Colour children for ``hdr`` (a ``media.hdr.HdrInfo``): MaxCLL, MaxFALL and the
    MasteringMetadata (chromaticities and luminances as 8-byte floats)."""
    out = b""
    if hdr.content_light is not None:
        out += _uint(_MAX_CLL, hdr.content_light.max_cll) + _uint(_MAX_FALL, hdr.content_light.max_fall)
    m = hdr.mastering
    if m is not None:
        values = [*m.red, *m.green, *m.blue, *m.white, m.max_luminance, m.min_luminance]
        out += _element(_MASTERING, b"".join(_element(eid, struct.pack(">d", float(v)))
                                             for eid, v in zip(_MASTERING_IDS, values)))
    return out


def write_header(path: Path, display: tuple[int, int, int | None] | None, colour: bytes = b"") -> None:
    """Rewrite the video track of ``path`` (written with a placeholder Name, ``PLACEHOLDER_NAME`` or
    the longer ``HDR_PLACEHOLDER_NAME``) in place: ``display`` (DisplayWidth, DisplayHeight,
    DisplayUnit) when given, ``colour`` (``colour_children``) into its Colour element. Raises
    ``MediaError`` if the file is not laid out as expected (nothing is changed then)."""
    children = _display_children(*display) if display is not None else b""
    try:
        with open(path, "r+b") as fh:
            head = bytearray(fh.read(_HEAD_BYTES))
            tracks = _find_tracks(head)
            entry = _placeholder_entry(head, tracks)
            head[entry.data:entry.end] = _rewritten_entry(head, entry, children, colour)
            _update_crc(head, tracks)
            fh.seek(tracks.start)
            fh.write(head[tracks.start:tracks.end])
    except _Layout as exc:
        raise MediaError(
            f"{path}: the display aspect ratio could not be written into the Matroska header"
            f"{' (nor the HDR metadata)' if colour else ''} ({exc}). Write an .mp4 or .mov file instead, or report "
            "this.",
            path,
        ) from None
    log.debug("%s: video header written (display %s, %d colour bytes)", path, display, len(colour))


def doc_type(head: bytes) -> str | None:
    """The DocType of the EBML header that opens ``head`` (``"matroska"``, ``"webm"``), or None."""
    buf = bytearray(head)
    try:
        ebml = next(_children(buf, 0, len(buf)), None)
        if ebml is None or ebml.id != _EBML:
            return None
        for child in _children(buf, ebml.data, min(ebml.end, len(buf))):
            if child.id == _DOC_TYPE:
                return bytes(buf[child.data:child.end]).rstrip(b"\0").decode("ascii", "replace")
    except _Layout:
        return None
    return None


# -- EBML -------------------------------------------------------------------------------------------

def _vint(buf: bytearray, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-size integer at ``pos`` (an ID keeps its marker bit)."""
    if pos >= len(buf):
        raise _Layout("the header ends early")
    first = buf[pos]
    length = 8 - first.bit_length() + 1
    if length > 8 or pos + length > len(buf):
        raise _Layout(f"a bad element header at byte {pos}")
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in buf[pos + 1:pos + length]:
        value = (value << 8) | byte
    return value, length


def _children(buf: bytearray, start: int, end: int) -> Iterator[_Element]:
    pos = start
    while pos < end:
        eid, id_len = _vint(buf, pos, keep_marker=True)
        size, size_len = _vint(buf, pos + id_len, keep_marker=False)
        data = pos + id_len + size_len
        unknown = size == (1 << (7 * size_len)) - 1
        element = _Element(eid, pos, data, len(buf) if unknown else data + size)
        yield element
        pos = element.end


def _size(value: int, length: int | None = None) -> bytes:
    """``value`` as an EBML size of ``length`` bytes (default: the fewest)."""
    length = length or next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def _element(eid: int, payload: bytes, size_length: int | None = None) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + _size(len(payload), size_length) + payload


def _uint(eid: int, value: int) -> bytes:
    return _element(eid, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


# -- the rewrite ------------------------------------------------------------------------------------

def _find_tracks(head: bytearray) -> _Element:
    segment = next((e for e in _children(head, 0, len(head)) if e.id == _SEGMENT), None)
    if segment is None:
        raise _Layout("no Segment")
    for element in _children(head, segment.data, min(segment.end, len(head))):
        if element.id == _TRACKS:
            if element.end > len(head):
                raise _Layout("the Tracks element is too long")
            return element
        if element.id == _CLUSTER:
            break
    raise _Layout("no Tracks before the first Cluster")


def _placeholder_entry(head: bytearray, tracks: _Element) -> _Element:
    name = PLACEHOLDER_NAME.encode()
    for entry in _children(head, tracks.data, tracks.end):
        if entry.id == _TRACK_ENTRY and any(
            c.id == _NAME and head[c.data:c.end].startswith(name) for c in _children(head, entry.data, entry.end)
        ):
            return entry
    raise _Layout("no video track with the placeholder name")


def _display_children(width: int, height: int, unit: int | None) -> bytes:
    unit_element = _uint(_DISPLAY_UNIT, unit) if unit is not None else b""
    return _uint(_DISPLAY_WIDTH, width) + _uint(_DISPLAY_HEIGHT, height) + unit_element


def _rewritten_entry(head: bytearray, entry: _Element, display: bytes, colour: bytes = b"") -> bytes:
    """The TrackEntry's payload without the placeholder Name, with ``display`` in its Video element
    and a Void making up the difference: exactly as long as before."""
    children = [c for c in _children(head, entry.data, entry.end) if c.id != _NAME]
    video = next((c for c in children if c.id == _VIDEO), None)
    if video is None:
        raise _Layout("the track has no Video element")
    video_payload = _video_payload(head, video, display, colour)
    kept = sum(c.end - c.start for c in children if c is not video)
    slack = (entry.end - entry.data) - kept - len(_element(_VIDEO, video_payload))
    size_length = None
    if slack == 1:  # too little for a Void: spend it on a longer size field of the Video element
        size_length = len(_size(len(video_payload))) + 1
        slack = 0
    if slack < 0:
        raise _Layout("no room for the display size")
    out = b"".join(_element(_VIDEO, video_payload, size_length) if c is video else bytes(head[c.start:c.end])
                   for c in children)
    return out + _void(slack)


def _video_payload(head: bytearray, video: _Element, display: bytes, colour: bytes = b"") -> bytes:
    out = b""
    for child in _children(head, video.data, video.end):
        if child.id in _DISPLAY_IDS:
            continue
        if child.id == _COLOUR and colour:
            kept = b"".join(bytes(head[c.start:c.end]) for c in _children(head, child.data, child.end)
                            if c.id not in (_MAX_CLL, _MAX_FALL, _MASTERING))
            out += _element(_COLOUR, kept + colour)
            colour = b""
            continue
        out += bytes(head[child.start:child.end])
        if child.id == _PIXEL_HEIGHT:
            out += display
            display = b""
    return out + display + (_element(_COLOUR, colour) if colour else b"")


def _void(length: int) -> bytes:
    """An EBML Void element exactly ``length`` bytes long (0, or at least 2)."""
    if length == 0:
        return b""
    size_length = 1 if length <= 128 else 2
    return _element(_VOID, bytes(length - 1 - size_length), size_length)


def _update_crc(head: bytearray, tracks: _Element) -> None:
    """Recompute the CRC-32 element that opens ``tracks`` (Matroska; WebM has none)."""
    first = next(_children(head, tracks.data, tracks.end), None)
    if first is not None and first.id == _CRC32 and first.end - first.data == 4:
        head[first.data:first.end] = zlib.crc32(head[first.end:tracks.end]).to_bytes(4, "little")
