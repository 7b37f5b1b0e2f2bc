"""The ``MediaError`` family: every failure of the media layer, with the file, the problem and the fix.

Each class also subclasses the builtin that fits (``ValueError`` for bad input, ``OSError`` for the
file system), so callers that only know builtins still catch them. The CLI and the web app turn them
into one line for people; nothing here prints.
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = [
    "MediaError",
    "MediaFileNotFound",
    "NotAVideo",
    "NoVideoStream",
    "StillImage",
    "ZeroFrames",
    "TruncatedVideo",
    "DecodeError",
    "UnsupportedPixelFormat",
    "UnsupportedSize",
    "SizeLimitExceeded",
    "InvalidTrim",
    "EncoderUnavailable",
    "UnsupportedContainer",
    "TimestampError",
    "OutputNotWritable",
    "DiskFull",
    "WriteAborted",
    "VerificationFailed",
]


class MediaError(Exception):
    """Base class. ``path`` is the file concerned (or None); ``str(err)`` is a complete sentence."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class MediaFileNotFound(MediaError, FileNotFoundError):
    """The input file does not exist."""


class NotAVideo(MediaError, ValueError):
    """The file is not a media file FFmpeg can open (wrong type, damaged header, moov atom missing)."""


class NoVideoStream(MediaError, ValueError):
    """The file opens but holds no video stream (an audio-only file, a subtitle file...)."""


class StillImage(MediaError, ValueError):
    """The file is a still picture (PNG, JPEG, WebP, a one-frame GIF...), whatever its name says, not a video."""


class ZeroFrames(MediaError, ValueError):
    """The video stream holds no frame at all (or none inside the requested trim)."""


class TruncatedVideo(MediaError, ValueError):
    """The file ends (or breaks) before its own header says it should. ``frame_index`` is the first frame lost."""

    def __init__(self, message: str, path: str | Path | None = None, frame_index: int | None = None) -> None:
        super().__init__(message, path)
        self.frame_index = frame_index


class DecodeError(MediaError, ValueError):
    """FFmpeg failed to decode a frame. ``frame_index`` is the frame (0-based, in the reader's range)."""

    def __init__(self, message: str, path: str | Path | None = None, frame_index: int | None = None) -> None:
        super().__init__(message, path)
        self.frame_index = frame_index


class UnsupportedPixelFormat(MediaError, ValueError):
    """A pixel format or colour matrix we cannot convert to/from RGB correctly."""


class UnsupportedSize(MediaError, ValueError):
    """A picture size that cannot be processed (too small, or odd where the pixel format needs even)."""


class SizeLimitExceeded(MediaError, ValueError):
    """The video is larger than the configured limit (pixels per frame)."""


class InvalidTrim(MediaError, ValueError):
    """A start/end trim outside the video or with start >= end."""


class EncoderUnavailable(MediaError, ValueError):
    """The encoder for the chosen codec is not in this FFmpeg build, or rejected the settings."""


class UnsupportedContainer(MediaError, ValueError):
    """The output container cannot hold the chosen video codec (e.g. FFV1 in MP4)."""


class TimestampError(MediaError, ValueError):
    """Frames given to the writer with timestamps that do not increase, or outside the trim."""


class OutputNotWritable(MediaError, PermissionError):
    """The output directory does not exist or cannot be written."""


class DiskFull(MediaError, OSError):
    """The disk (or the quota / file size limit) ran out while writing the output."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        MediaError.__init__(self, message, path)
        self.errno = errno.ENOSPC
        self.strerror = message

    def __str__(self) -> str:
        return str(self.args[0])  # the sentence, without OSError's "[Errno 28]" prefix


class WriteAborted(MediaError, RuntimeError):
    """The writer was used after ``abort()`` (or after a failed ``finish()``)."""


class VerificationFailed(MediaError, ValueError):
    """The finished output does not match what was expected; ``report`` says which checks failed."""

    def __init__(self, message: str, path: str | Path | None = None, report: object | None = None) -> None:
        super().__init__(message, path)
        self.report = report


def reason(exc: BaseException) -> str:
    """What went wrong, in FFmpeg's (or the system's) own words, for a message that names the file
    itself: PyAV's ``[Errno 1094995529] Invalid data found when processing input: '/the/path'`` becomes
    ``Invalid data found when processing input``, with FFmpeg's log line when PyAV caught one
    (``... (moov atom not found)``)."""
    text = getattr(exc, "strerror", None)
    if not isinstance(text, str) or not text.strip():
        text = str(exc).strip() or type(exc).__name__
    log = getattr(exc, "log", None)
    detail = log[2].strip() if isinstance(log, tuple) and len(log) == 3 and isinstance(log[2], str) else ""
    return f"{text} ({detail})" if detail and detail.lower() not in text.lower() else text


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR}


def translate_os_error(exc: BaseException, path: Path, action: str) -> MediaError | None:
    """Map an ``OSError`` (builtin or PyAV's) met while ``action`` on ``path`` to ``DiskFull`` /
    ``OutputNotWritable``; None when it is neither (the caller re-raises the original)."""
    code = getattr(exc, "errno", None)
    if code in _FULL_ERRNOS:
        return DiskFull(
            f"{path}: the disk ran out of space (or hit a quota / file size limit) while {action} "
            f"({reason(exc)}). Free some space on {path.parent} or choose another output directory.",
            path,
        )
    if code in _DENIED_ERRNOS:
        return OutputNotWritable(
            f"{path.parent}: cannot write the output there while {action} ({reason(exc)}). Check that the "
            "directory exists and is writable, or choose another output directory.",
            path,
        )
    return None
