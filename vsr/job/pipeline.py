"""What the media side of a job costs on this machine, and how the stages add up to the job's time.

A job is one streaming pass (``vsr.job.runner``): a decode thread (decode + conversion to RGB), the
engine, an encode thread (Lanczos resize for presets + conversion + encode), then the file is
finished and verified (every output frame is decoded again). The engine's speed is the calibration
(``vsr.job.estimate``); this module measures the rest:

- ``measure_media`` decodes the first ``SAMPLE_FRAMES`` frames of the job's own input (its decode
  cost), enlarges them 4x with bicubic (whole, or a mosaic of tiles from across the frame, so the
  sample looks like the job's output: upscaled pictures are smooth, and encoders are much faster on
  smooth pictures than on detailed ones), encodes that with the job's encoder settings, decodes it
  again (the verification's cost) and times a Lanczos resize. Costs are per pixel, extrapolated in
  proportion to the job's frame sizes. The sample has at most ``SAMPLE_PIXELS``, so this takes
  about a second for H.264 (a few for HEVC); results are kept for the process, keyed by the file
  and the settings.
- ``StageSeconds`` adds the stages up. When the engine runs on an accelerator, the CPU stages run
  beside it and a frame costs the slower of the two; when it runs on the CPU, every stage shares
  the same cores and the costs add. Verification and the fixed start/finish costs come on top.

``bench/estimates.py`` compares these estimates with real jobs (bench/results/estimates.json).
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from PIL import Image

import media
from media import packets as media_packets
from media.colour import rgb_to_frame, to_8bit
from media.hdr import output_depth
from vsr.job.resize import resize_rgb
from vsr.options import SCALE

logger = logging.getLogger(__name__)

SAMPLE_FRAMES = 10
"""Frames of the input decoded, and of the enlarged sample encoded, per measurement."""
SAMPLE_PIXELS = 1280 * 720
"""The enlarged sample is at most this many pixels (the job's own 4x size when smaller). Encoders
cost more per pixel on large pictures up to about this size (less per-frame overhead is outweighed
by memory traffic), and about the same beyond it, so costs are extrapolated from here in proportion."""
FIXED_SECONDS = 0.2
"""Start and finish of every job: opening the input and output, the engine's stream, flushing the
muxer (MP4's faststart rewrite), fsync, the structure check and the probe of the verification.
bench/estimates.py on a quiet 2-core machine: 0.04-0.1 s for tiny jobs beyond their frames, up to
about 0.8 s for 480p -> 1080p H.264 (those bytes grow with the file); 0.5 s, the earlier value,
made every small job's estimate 0.5 s long (ratios 1.3-1.36 for the tiny diffusion jobs)."""
_CACHE: dict[tuple, "MediaCosts"] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 64


@dataclass(frozen=True)
class Line:
    """Seconds per frame as a line in a pixel count: ``fixed + per_pixel * pixels``."""

    fixed: float
    per_pixel: float

    def at(self, pixels: int) -> float:
        return max(0.0, self.fixed + self.per_pixel * pixels)


ZERO = Line(0.0, 0.0)


@dataclass(frozen=True)
class MediaCosts:
    """Seconds per frame of each media stage, measured on this machine for one input and encoder.

    ``decode``: in input pixels (decode + RGB conversion); ``encode``: in output pixels (conversion
    + encoding, flush included); ``verify``: in output pixels (decoding the finished file);
    ``resize``: in model-output pixels (Lanczos to a preset's size). ``measured`` is False for the
    zero costs of ``MediaCosts.none()`` (an estimate that leaves the media side out).
    """

    decode: Line
    encode: Line
    verify: Line
    resize: Line
    measured: bool = True

    @classmethod
    def none(cls) -> "MediaCosts":
        return cls(ZERO, ZERO, ZERO, ZERO, measured=False)


@dataclass(frozen=True)
class StageSeconds:
    """Seconds per frame of each stage of one job, and how they combine into the job's time.

    ``overlap``: the engine runs on an accelerator, so the CPU stages (decode, encode) run while it
    works; on the CPU they compete for the same cores and add up.
    """

    decode: float
    engine: float
    encode: float
    verify: float
    overlap: bool
    fixed: float = FIXED_SECONDS

    @property
    def streaming(self) -> float:
        """Seconds per frame of the streaming pass (decode -> engine -> encode)."""
        media_side = self.decode + self.encode
        return max(self.engine, media_side) if self.overlap else self.engine + media_side

    @property
    def per_frame(self) -> float:
        """Seconds per frame of the whole job: the streaming pass and the verification."""
        return self.streaming + self.verify

    def total(self, frames: int) -> float:
        """Seconds for a job of ``frames`` frames, start to finish."""
        return self.fixed + frames * self.per_frame

    def to_dict(self) -> dict[str, Any]:
        return {"decode_s": self.decode, "engine_s": self.engine, "encode_s": self.encode, "verify_s": self.verify,
                "overlap": self.overlap, "fixed_s": self.fixed, "per_frame_s": self.per_frame}


def engine_seconds_alone(in_job: float, stages: StageSeconds) -> float:
    """The engine's seconds per frame on its own, from its steady time inside a job planned with
    ``stages`` (what a finished job records for later estimates).

    On an accelerator the CPU stages hardly slow the engine down. On the CPU they run on the same
    cores while the engine works, so its time in the job already holds their work; what is left
    without it is recorded (never less than half the time in the job), so that adding the media
    stages again (``StageSeconds.streaming``) gives the job's real pace instead of counting it twice.
    """
    if stages.overlap:
        return in_job
    return max(in_job / 2, in_job - stages.decode - stages.encode)


def stage_seconds(costs: MediaCosts, engine_seconds: float, engine_device: str, input_pixels: int,
                  model_pixels: int, output_pixels: int, resized: bool) -> StageSeconds:
    """The per-frame stage times of a job from its ``costs`` and the engine's seconds per frame.

    ``engine_device`` is the engine's description's device: anything but ``cpu`` (a GPU, MPS, a
    ZeroGPU Space) runs beside the CPU stages.
    """
    encode = costs.encode.at(output_pixels) + (costs.resize.at(model_pixels) if resized else 0.0)
    return StageSeconds(
        decode=costs.decode.at(input_pixels),
        engine=engine_seconds,
        encode=encode,
        verify=costs.verify.at(output_pixels),
        overlap=not str(engine_device).lower().startswith("cpu"),
        fixed=FIXED_SECONDS if costs.measured else 0.0,
    )


def media_costs(info: Any, settings: media.EncodeSettings) -> MediaCosts:
    """``measure_media``, or, when the measurement itself fails, ``MediaCosts.none()`` with a logged
    warning: the estimate then rests on the engine's calibration alone. A measurement must never fail
    a job that would itself succeed; what is wrong with the input or the settings shows in the job."""
    try:
        return measure_media(info, settings)
    except Exception as exc:  # noqa: BLE001 - any failure of the sample: an estimate without the media side
        logger.warning("could not measure decoding/encoding %s with %s for the estimate (%s: %s); the estimate "
                       "counts the engine only", getattr(info.path, "name", info.path), settings.codec,
                       type(exc).__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
        return MediaCosts.none()


def measure_media(info: Any, settings: media.EncodeSettings) -> MediaCosts:
    """The media costs of a job on ``info``'s video encoded with ``settings`` (see the module doc).

    Kept for the process: the page plans the same upload again whenever a control changes.
    """
    stat = info.path.stat()
    key = (str(info.path.resolve()), stat.st_size, stat.st_mtime_ns, settings)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    started = time.perf_counter()
    frames, decode = _decode_sample(info)
    sample = _sample(frames, SAMPLE_PIXELS)
    _encode_sample([frame[:64, :64] for frame in sample[:2]], settings, info)  # untimed: one-off start-up
    encode, verify = _encode_sample(sample, settings, info)
    pixels = sample[0].shape[0] * sample[0].shape[1]
    costs = MediaCosts(decode=decode, encode=Line(0.0, encode / pixels), verify=Line(0.0, verify / pixels),
                       resize=_resize_cost(sample))
    logger.debug("media costs of %s with %s (measured in %.2f s): %s", info.path.name, settings,
                 time.perf_counter() - started, costs)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = costs
    return costs


def _decode_sample(info: Any) -> tuple[list[np.ndarray], Line]:
    """The input's first frames and its decode cost (the reader's thread, timed whole)."""
    v = info.video
    started = time.perf_counter()
    with media.FrameReader(info.path, queue_size=1, info=info) as reader:
        frames = [to_8bit(frame.rgb) for _, frame in zip(range(SAMPLE_FRAMES), reader)]  # a cost sample only
    seconds = time.perf_counter() - started
    return frames, Line(0.0, seconds / len(frames) / (v.width * v.height))


def _sample(frames: list[np.ndarray], pixels: int) -> list[np.ndarray]:
    """Pictures like the job's output, of about ``pixels`` pixels, made from its input ``frames``.

    The whole frame enlarged ``SCALE`` x with bicubic when that is small enough (then the sample is
    the job's own output size); otherwise a mosaic of 3 x 3 tiles from across the frame, enlarged
    alike: upscaled pictures are smooth, and the mosaic keeps the mix of busy and quiet areas.
    """
    height, width = frames[0].shape[:2]
    if width * height * SCALE * SCALE <= pixels:
        return [_enlarge(rgb) for rgb in frames]
    ratio = math.sqrt(pixels / (SCALE * SCALE) / (width * height))
    tile_w, tile_h = max(1, int(width * ratio / 3)), max(1, int(height * ratio / 3))
    xs = [(width - tile_w) * i // 2 for i in range(3)]
    ys = [(height - tile_h) * i // 2 for i in range(3)]
    mosaic = [np.concatenate([np.concatenate([rgb[y:y + tile_h, x:x + tile_w] for x in xs], axis=1) for y in ys],
                             axis=0) for rgb in frames]
    return [_enlarge(rgb) for rgb in mosaic]


def _enlarge(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((width * SCALE, height * SCALE), Image.Resampling.BICUBIC))


def _encode_sample(sample: list[np.ndarray], settings: media.EncodeSettings, info: Any) -> tuple[float, float]:
    """(encode, decode) seconds per frame of ``sample`` with ``settings``, as the writer encodes."""
    height, width = sample[0].shape[:2]
    pix_fmt = settings.pix_fmt_for(width, height, output_depth(info.video))  # the depth the writer will use
    buffer = io.BytesIO()
    started = time.perf_counter()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream(settings.spec.encoder, rate=info.video.avg_rate, options=settings.codec_options(width))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index, rgb in enumerate(sample):
            frame = rgb_to_frame(rgb, pix_fmt, info.video.colour, "the estimate's sample")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(media_packets.flush(stream, len(sample)))
    encode = time.perf_counter() - started
    buffer.seek(0)
    started = time.perf_counter()
    with av.open(buffer) as back:
        back.streams.video[0].thread_type = "AUTO"
        decoded = sum(1 for _ in back.decode(video=0))
    return encode / len(sample), (time.perf_counter() - started) / max(1, decoded)


def _resize_cost(sample: list[np.ndarray]) -> Line:
    """The Lanczos resize a preset's encode thread does, per source pixel."""
    height, width = sample[0].shape[:2]
    started = time.perf_counter()
    for rgb in sample[:4]:
        resize_rgb(rgb, max(1, width * 3 // 4), max(1, height * 3 // 4))
    return Line(0.0, (time.perf_counter() - started) / min(4, len(sample)) / (width * height))
