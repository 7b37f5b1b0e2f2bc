"""Container names for people: ``MP4`` or ``WebM``, not FFmpeg's demuxer name ``mov,mp4,m4a,3gp,3g2,mj2``.

FFmpeg reads MP4 and QuickTime with one demuxer (and Matroska and WebM with another), so the
demuxer's name cannot say which a file is; the file's own header does: the ``ftyp`` box's major
brand, the EBML DocType.
"""

from __future__ import annotations

from pathlib import Path

from media.matroska import doc_type

__all__ = ["container_name"]

# FFmpeg demuxer -> the name people know it by.
_NAMES = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV", "matroska,webm": "Matroska/WebM", "avi": "AVI", "mpegts": "MPEG-TS",
    "mpeg": "MPEG-PS", "flv": "FLV", "ogg": "Ogg", "asf": "ASF (WMV)", "mxf": "MXF", "gif": "GIF", "apng": "APNG",
    "ivf": "IVF", "nut": "NUT", "dv": "DV", "yuv4mpegpipe": "Y4M", "h264": "raw H.264", "hevc": "raw HEVC",
}
# ftyp major brand -> name (anything else that FFmpeg reads as MP4/MOV is an MP4 file).
_BRANDS = {b"qt  ": "QuickTime (MOV)", b"M4V ": "MP4 (M4V)", b"M4VH": "MP4 (M4V)", b"M4A ": "MP4 audio (M4A)",
           b"3gp4": "3GP", b"3gp5": "3GP", b"3gp6": "3GP", b"3g2a": "3G2", b"mjp2": "Motion JPEG 2000"}
_DOC_TYPES = {"matroska": "Matroska", "webm": "WebM"}
_HEAD = 4096


def container_name(path: Path, demuxer: str, long_name: str | None = None) -> str:
    """What ``path`` (read by FFmpeg's ``demuxer``) is called by people; FFmpeg's ``long_name`` for
    containers not in the table."""
    if demuxer in ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"):
        try:
            with open(path, "rb") as fh:
                head = fh.read(_HEAD)
        except OSError:
            head = b""
        if demuxer == "matroska,webm":
            return _DOC_TYPES.get(doc_type(head) or "", _NAMES[demuxer])
        if head[4:8] == b"ftyp":
            return _BRANDS.get(head[8:12], "MP4")
        return "QuickTime (MOV)" if head[4:8] in (b"moov", b"mdat", b"wide", b"free") else _NAMES[demuxer]
    return _NAMES.get(demuxer) or long_name or demuxer
