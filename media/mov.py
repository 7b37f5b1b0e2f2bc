"""HDR10 static metadata of a MOV/MP4 video track, written where FFmpeg's muxer cannot be asked to.

FFmpeg's MOV muxer writes the ``mdcv`` (mastering display colour volume) and ``clli`` (content light
level) boxes only from the stream's own side data, which PyAV cannot set. HEVC and AV1 carry them in
their bitstream anyway; ProRes has no place for them there. So for ProRes in MOV ``VideoWriter``
writes the file with its ``moov`` box last (no faststart: ProRes files are for editing, not for
streaming) and ``write_hdr_boxes`` then appends ``mdcv`` and ``clli`` to the video sample entry and
rewrites that one trailing ``moov`` with the box sizes on the way up corrected; no media byte moves,
so no chunk offset changes.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from media.errors import MediaError

log = logging.getLogger(__name__)

__all__ = ["hdr_boxes", "write_hdr_boxes"]

_CONTAINERS = (b"trak", b"mdia", b"minf", b"stbl")  # boxes of boxes on the way to the sample description
_VISUAL_ENTRY_FIELDS = 78  # a VisualSampleEntry's fixed fields after its 8-byte header
_STSD_FIELDS = 8  # version/flags and entry_count


@dataclass(frozen=True)
class _Box:
    type: bytes
    start: int  # first byte of the header, relative to the buffer
    data: int  # first byte of the payload
    end: int


class _Layout(ValueError):
    """The file is not laid out as expected (names what was missing)."""


def hdr_boxes(hdr: Any) -> bytes:
    """``mdcv`` + ``clli`` boxes for ``hdr`` (a ``media.hdr.HdrInfo``): primaries in G, B, R order and
    white point in 0.00002 units, luminance in 0.0001 cd/m2 (as HEVC's SEI); empty without metadata."""
    out = b""
    m = hdr.mastering
    if m is not None:
        xy = [round(v * 50000) for point in (m.green, m.blue, m.red, m.white) for v in point]
        payload = struct.pack(">8H2I", *xy, round(m.max_luminance * 10000), round(m.min_luminance * 10000))
        out += _box(b"mdcv", payload)
    if hdr.content_light is not None:
        out += _box(b"clli", struct.pack(">2H", min(hdr.content_light.max_cll, 65535),
                                         min(hdr.content_light.max_fall, 65535)))
    return out


def write_hdr_boxes(path: Path, boxes: bytes) -> None:
    """Append ``boxes`` (``hdr_boxes``) to the video sample entry of ``path``, whose ``moov`` must be its
    last top-level box. Raises ``MediaError`` when the file is not laid out so (nothing is changed then)."""
    try:
        with open(path, "r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            moov = _last_moov(fh, size)
            fh.seek(moov[0])
            buf = fh.read(moov[1] - moov[0])
            new = _with_boxes(buf, boxes)
            fh.seek(moov[0])
            fh.write(new)
            fh.truncate()
    except _Layout as exc:
        raise MediaError(f"{path}: the HDR metadata could not be written into the MOV header ({exc}). Write an "
                         ".mkv file instead, or report this.", path) from None
    log.debug("%s: %d bytes of HDR boxes written into the video sample entry", path, len(boxes))


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _boxes(buf: bytes, start: int, end: int) -> list[_Box]:
    out, pos = [], start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        data = pos + 8
        if size == 1:
            if pos + 16 > end:
                raise _Layout("a box header ends early")
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            data = pos + 16
        elif size == 0:
            size = end - pos
        if size < data - pos or pos + size > end:
            raise _Layout(f"a bad {kind!r} box at byte {pos}")
        out.append(_Box(kind, pos, data, pos + size))
        pos += size
    return out


def _last_moov(fh: Any, size: int) -> tuple[int, int]:
    pos, last = 0, None
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(16)
        length, kind = struct.unpack_from(">I4s", head)
        if length == 1:
            length = struct.unpack_from(">Q", head, 8)[0]
        elif length == 0:
            length = size - pos
        if length < 8:
            raise _Layout(f"a bad top-level box at byte {pos}")
        last = (kind, pos, pos + length)
        pos += length
    if last is None or last[0] != b"moov" or last[2] != size:
        raise _Layout("the moov box is not the last one")
    return last[1], last[2]


def _with_boxes(moov: bytes, boxes: bytes) -> bytes:
    """The ``moov`` box with ``boxes`` appended to its video track's first sample entry."""
    chain = [_boxes(moov, 0, len(moov))[0]]
    trak = next((t for t in _boxes(moov, chain[0].data, chain[0].end) if t.type == b"trak" and _is_video(moov, t)),
                None)
    if trak is None:
        raise _Layout("no video track")
    chain.append(trak)
    for kind in _CONTAINERS[1:]:
        child = next((b for b in _boxes(moov, chain[-1].data, chain[-1].end) if b.type == kind), None)
        if child is None:
            raise _Layout(f"no {kind.decode()} box")
        chain.append(child)
    stsd = next((b for b in _boxes(moov, chain[-1].data, chain[-1].end) if b.type == b"stsd"), None)
    if stsd is None:
        raise _Layout("no stsd box")
    entry = _boxes(moov, stsd.data + _STSD_FIELDS, stsd.end)[0]
    chain += [stsd, entry]
    kept = [b for b in _boxes(moov, entry.data + _VISUAL_ENTRY_FIELDS, entry.end) if b.type not in (b"mdcv", b"clli")]
    body = moov[entry.data:entry.data + _VISUAL_ENTRY_FIELDS] + b"".join(moov[b.start:b.end] for b in kept) + boxes
    new = moov[:entry.data] + body + moov[entry.end:]
    grow = len(new) - len(moov)
    for box in chain:  # every box around the entry grows by as much (32-bit sizes as FFmpeg writes them)
        if box.data - box.start != 8:
            raise _Layout(f"a 64-bit {box.type!r} box")
        new = new[:box.start] + struct.pack(">I", box.end - box.start + grow) + new[box.start + 4:]
    return new


def _is_video(buf: bytes, trak: _Box) -> bool:
    mdia = next((b for b in _boxes(buf, trak.data, trak.end) if b.type == b"mdia"), None)
    hdlr = next((b for b in _boxes(buf, mdia.data, mdia.end) if b.type == b"hdlr"), None) if mdia else None
    return hdlr is not None and buf[hdlr.data + 8:hdlr.data + 12] == b"vide"
