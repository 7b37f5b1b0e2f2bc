"""``EncodeSettings``: which video codec, quality and pixel format the writer uses, checked up front.

| codec  | encoder    | default quality        | default pix_fmt | containers      |
|--------|------------|------------------------|-----------------|-----------------|
| h264   | libx264    | CRF 18, preset medium  | yuv420p         | .mp4 .mov .mkv  |
| hevc   | libx265    | CRF 20, preset medium  | yuv420p         | .mp4 .mov .mkv  |
| av1    | libsvtav1  | CRF 28, preset 8       | yuv420p         | .mp4 .mkv .webm |
| prores | prores_ks  | profile HQ             | yuv422p10le     | .mov .mkv       |
| ffv1   | ffv1       | lossless               | bgr0 (RGB)      | .mkv            |

A source deeper than 8 bits (or an 8-bit PQ/HLG one, ``media.hdr.output_depth``) keeps its depth
where the codec can: hevc ``yuv420p10le`` (Main 10), av1 ``yuv420p10le``, prores ``yuv422p10le``,
ffv1 ``gbrp10le``/``gbrp12le``/``gbrp16le`` (the source's depth); h264 stays 8-bit ``yuv420p``.

Odd picture sizes: 4:2:0 and 4:2:2 formats need an even width (and 4:2:0 an even height). When
the size is odd and no ``pix_fmt`` was asked for, the writer switches to the codec's 4:4:4 format
(``yuv444p`` / ``yuv444p10le``), so the picture keeps exactly the intended size: no padding, no
cropping. Such files play in VLC, mpv and FFmpeg-based players; browsers do not play 4:4:4 H.264,
so ``make_browser_preview`` makes a preview for them. An explicit 4:2:0 ``pix_fmt`` with an odd
size is an error naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

from media.errors import EncoderUnavailable, UnsupportedContainer, UnsupportedSize
from media.hdr import HdrInfo, svtav1_params, x265_params

__all__ = ["EncodeSettings", "CODEC_SPECS", "CodecSpec"]


X265_NO_CUTREE_UP_TO = 48
"""libx265 as PyAV 18.1's wheel bundles it corrupts its heap and aborts the process on pictures 33 to 48
pixels wide (its lookahead's CU-tree at three 16-pixel columns; measured: every even width 34-48 at
heights 32-96 in MP4, MKV and MOV, widths 16-32 and 50-128 fine). Its CU-tree is turned off up to this
width (a small loss of compression at sizes where it does not matter)."""

@dataclass(frozen=True)
class CodecSpec:
    encoder: str
    default_crf: int | None
    crf_range: tuple[int, int] | None
    default_preset: str | None
    pix_fmt: str
    pix_fmt_444: str | None
    containers: tuple[str, ...]
    default_suffix: str
    deep_pix_fmt: str | None = None  # for a source deeper than 8 bits (None: the codec stays 8-bit)
    deep_pix_fmt_444: str | None = None


CODEC_SPECS: dict[str, CodecSpec] = {
    "h264": CodecSpec("libx264", 18, (0, 51), "medium", "yuv420p", "yuv444p", (".mp4", ".mov", ".mkv", ".m4v"), ".mp4"),
    "hevc": CodecSpec("libx265", 20, (0, 51), "medium", "yuv420p", "yuv444p", (".mp4", ".mov", ".mkv", ".m4v"), ".mp4",
                      "yuv420p10le", "yuv444p10le"),
    "av1": CodecSpec("libsvtav1", 28, (0, 63), "8", "yuv420p", None, (".mp4", ".mkv", ".webm"), ".mp4",
                     "yuv420p10le", None),
    "prores": CodecSpec("prores_ks", None, None, None, "yuv422p10le", "yuv444p10le", (".mov", ".mkv"), ".mov",
                        "yuv422p10le", "yuv444p10le"),
    "ffv1": CodecSpec("ffv1", None, None, None, "bgr0", "bgr0", (".mkv",), ".mkv", "gbrp16le", "gbrp16le"),
}


@dataclass(frozen=True)
class EncodeSettings:
    """How the upscaled video is encoded. ``crf`` / ``preset`` / ``pix_fmt`` default per codec (see the
    module table); ``bitrate`` (bits/s) replaces CRF with a target bitrate (h264/hevc/av1/prores)."""

    codec: str = "h264"
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    bitrate: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODEC_SPECS:
            raise EncoderUnavailable(f"Unknown codec {self.codec!r}; choose one of {', '.join(CODEC_SPECS)}.")
        spec = self.spec
        if self.crf is not None:
            if spec.crf_range is None:
                raise EncoderUnavailable(f"The {self.codec} encoder has no CRF; leave crf unset (got {self.crf}).")
            lo, hi = spec.crf_range
            if not lo <= self.crf <= hi:
                raise EncoderUnavailable(f"crf={self.crf} is outside {lo}..{hi} for {self.codec}; pick a value inside.")
        if self.crf is not None and self.bitrate is not None:
            raise EncoderUnavailable(
                "Give either crf or bitrate, not both (crf is constant quality, bitrate a target)."
            )
        if self.bitrate is not None and (self.bitrate <= 0 or self.codec == "ffv1"):
            raise EncoderUnavailable(f"bitrate={self.bitrate} cannot be used with {self.codec}; use a positive value "
                                     "with h264, hevc, av1 or prores (ffv1 is lossless).")
        if self.preset is not None and spec.default_preset is None:
            raise EncoderUnavailable(f"The {self.codec} encoder has no speed presets; leave preset unset "
                                     f"(got {self.preset!r}).")
        if self.pix_fmt is not None:
            try:
                av.VideoFormat(self.pix_fmt)
            except ValueError:
                raise EncoderUnavailable(f"Unknown pixel format {self.pix_fmt!r}; try yuv420p or yuv444p.") from None

    @property
    def spec(self) -> CodecSpec:
        return CODEC_SPECS[self.codec]

    @property
    def suffix(self) -> str:
        """The default output suffix for this codec (.mp4, .mov, .mkv)."""
        return self.spec.default_suffix

    def check_available(self) -> None:
        """Raise ``EncoderUnavailable`` when this FFmpeg build lacks the encoder."""
        try:
            av.codec.Codec(self.spec.encoder, "w")
        except av.codec.codec.UnknownCodecError:
            raise EncoderUnavailable(
                f"The {self.codec} encoder ({self.spec.encoder}) is not in this FFmpeg build (PyAV {av.__version__}). "
                f"Choose another codec: {', '.join(c for c in CODEC_SPECS if c != self.codec)}."
            ) from None

    def check_container(self, dest: str | Path) -> None:
        """Raise ``UnsupportedContainer`` unless ``dest`` (a path, or just its suffix such as ``".mp4"``)
        can hold this codec."""
        named = not (isinstance(dest, str) and dest.startswith("."))
        suffix = Path(dest).suffix if named else str(dest)
        if suffix.lower() not in self.spec.containers:
            where = f"{dest}: a" if named else "A"
            raise UnsupportedContainer(
                f"{where} {suffix or 'suffix-less'} file cannot hold {self.codec} video here; use "
                f"{' or '.join(self.spec.containers)} (or choose another codec).",
                dest if named else None,
            )

    def default_pix_fmt(self, depth: int = 8) -> tuple[str, str | None]:
        """(4:2:0-or-codec format, 4:4:4 format) used without an explicit ``pix_fmt`` for a source of
        ``depth`` bits: deeper than 8 keeps 10 bits (HEVC Main 10, AV1 10-bit, ProRes), FFV1 the very depth."""
        spec = self.spec
        if depth <= 8 or spec.deep_pix_fmt is None:
            return spec.pix_fmt, spec.pix_fmt_444
        if self.codec == "ffv1":
            fmt = f"gbrp{depth}le" if depth in (9, 10, 12, 14, 16) else "gbrp16le"
            return fmt, fmt
        return spec.deep_pix_fmt, spec.deep_pix_fmt_444

    def pix_fmt_for(self, width: int, height: int, depth: int = 8) -> str:
        """The pixel format to encode a ``width`` x ``height`` picture (see the odd-size rule above) from a
        source of ``depth`` bits (``media.hdr.output_depth``)."""
        if width < 2 or height < 2:
            raise UnsupportedSize(f"Cannot encode a {width}x{height} picture; it must be at least 2x2 pixels.")
        default, default_444 = self.default_pix_fmt(depth)
        wanted = self.pix_fmt or default
        allowed = [f.name for f in av.codec.Codec(self.spec.encoder, "w").video_formats or ()]
        if allowed and wanted not in allowed:
            raise EncoderUnavailable(
                f"The {self.codec} encoder ({self.spec.encoder}) cannot encode pix_fmt {wanted!r}; choose one of "
                f"{', '.join(allowed)}."
            )
        fmt = av.VideoFormat(wanted)
        odd = (width % 2 and fmt.chroma_width(width) * 2 != width) or (
            height % 2 and fmt.chroma_height(height) * 2 != height
        )
        if not odd:
            return wanted
        if self.pix_fmt is None and default_444 is not None and default_444 in allowed:
            return default_444
        fix = f"pick pix_fmt={default_444!r}" if default_444 else "pick another codec"
        raise UnsupportedSize(
            f"A {width}x{height} picture has an odd side, which {wanted} cannot store (its colour planes are "
            f"subsampled). Choose an even output size or {fix}."
        )

    def codec_options(self, width: int | None = None, hdr: HdrInfo | None = None) -> dict[str, str]:
        """Encoder private options (FFmpeg ``-x264-params`` style) for these settings, for pictures
        ``width`` pixels wide when known, writing ``hdr``'s static metadata into the bitstream (HEVC, AV1)."""
        spec = self.spec
        opts: dict[str, str] = {}
        if spec.crf_range is not None and self.bitrate is None:
            opts["crf"] = str(self.crf if self.crf is not None else spec.default_crf)
        if spec.default_preset is not None:
            opts["preset"] = str(self.preset or spec.default_preset)
        if self.codec == "hevc":
            narrow = width is not None and width <= X265_NO_CUTREE_UP_TO
            opts["x265-params"] = ":".join(["log-level=error", *(["cutree=0"] if narrow else []),
                                            *(x265_params(hdr) if hdr else [])])
        if self.codec == "av1":
            opts["svtav1-params"] = ":".join(["progress=0", *(svtav1_params(hdr) if hdr else [])])
        if self.codec == "prores" and self.bitrate is None:
            opts["profile"] = "3"  # HQ (4444 formats use the 4444 profile automatically)
        if self.codec == "ffv1":
            opts.update({"level": "3", "slicecrc": "1"})
        return opts
