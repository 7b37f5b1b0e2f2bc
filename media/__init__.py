"""Streaming media layer: probe, decode, encode, mux, verify (PyAV, FFmpeg in process).

``probe`` describes a file; ``FrameReader`` decodes it to RGB frames with exact ``Fraction``
timestamps in a background thread; ``VideoWriter`` encodes frames and stream-copies the source's
audio and subtitles in the same pass, atomically (or writes video-only segments that
``join_segments`` later joins by stream copy, muxing the audio and subtitles then); ``verify``
checks the result;
``make_browser_preview`` makes an H.264/AAC copy of outputs browsers cannot play. No frame ever
goes through an image file.
"""

from media.encode import CODEC_SPECS, EncodeSettings
from media.hdr import ContentLight, HdrInfo, MasteringDisplay, hdr_label, hdr_notes, output_depth
from media.errors import (
    DecodeError,
    DiskFull,
    EncoderUnavailable,
    InvalidTrim,
    MediaError,
    MediaFileNotFound,
    NotAVideo,
    NoVideoStream,
    OutputNotWritable,
    SizeLimitExceeded,
    StillImage,
    TimestampError,
    TruncatedVideo,
    UnsupportedContainer,
    UnsupportedPixelFormat,
    UnsupportedSize,
    VerificationFailed,
    WriteAborted,
    ZeroFrames,
)
from media.mux import StreamAction, plan_stream_actions
from media.naming import unique_output_path
from media.preview import make_browser_preview, plays_in_browser, preview_note
from media.probe import (
    MIN_SIDE,
    AudioStreamInfo,
    MediaInfo,
    OtherStreamInfo,
    SubtitleStreamInfo,
    VideoStreamInfo,
    probe,
)
from media.reader import Frame, FrameReader
from media.segments import Segment, join_segments, timeline_offset
from media.verify import Check, ExpectedOutput, VerifyReport, verify
from media.writer import VideoWriter, WriteReport, rename_durably, write_durably

__all__ = [
    "probe", "MediaInfo", "VideoStreamInfo", "AudioStreamInfo", "SubtitleStreamInfo", "OtherStreamInfo", "MIN_SIDE",
    "FrameReader", "Frame",
    "EncodeSettings", "CODEC_SPECS", "VideoWriter", "WriteReport", "StreamAction", "plan_stream_actions",
    "Segment", "join_segments", "timeline_offset", "rename_durably", "write_durably",
    "verify", "ExpectedOutput", "VerifyReport", "Check",
    "make_browser_preview", "plays_in_browser", "preview_note", "unique_output_path",
    "HdrInfo", "MasteringDisplay", "ContentLight", "hdr_label", "hdr_notes", "output_depth",
    "MediaError", "MediaFileNotFound", "NotAVideo", "NoVideoStream", "StillImage", "ZeroFrames", "TruncatedVideo",
    "DecodeError", "UnsupportedPixelFormat", "UnsupportedSize", "SizeLimitExceeded", "InvalidTrim",
    "EncoderUnavailable", "UnsupportedContainer", "TimestampError", "OutputNotWritable", "DiskFull", "WriteAborted",
    "VerificationFailed",
]
