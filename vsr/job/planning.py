"""``plan(input, options) -> JobPlan``: everything a job will do, decided and checked before any work.

The plan probes the input, applies the trim, decides the output size and what happens to every
audio and subtitle track, loads (or reuses) the engine, and estimates time (from a calibration on
this device, see ``vsr.job.estimate``) and output size. It refuses, with a ``JobRefused`` that names
the limit and the fix, what exceeds the configured limits. ``preview_plan`` derives a short piece
from the middle of the same video for a quick look.

On a Hugging Face ZeroGPU Space (``vsr.environment.on_zero_gpu``) there is no GPU outside the
``spaces.GPU`` function that runs the job, so the plan never loads or runs the diffusion model: its
estimate comes from a calibration cached by an earlier job on the Space, or is a provisional one,
labelled as such (``vsr.job.estimate.provisional``). Each GPU call is limited to
``options.zerogpu_max_seconds``; a job longer than one call runs as a sequence of calls that hand a
checkpoint on (``vsr.job.runner.run_piece``): the plan says how many (``JobPlan.gpu_calls``, each
of at most ``max_frames_per_call`` frames) and the GPU time reserved in all (``gpu_seconds``). Only
a job of which not even one frame fits in one call is refused (``GPUCallTooLong``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import media
from media.colour import bit_depth
from media.hdr import output_depth
from vsr import environment
from vsr.formatting import bytes_text, clock_text, duration_text, fraction_text, rate_text
from vsr.job import memory as memory_model
from vsr.job.estimate import Calibration, Estimator
from vsr.job.pipeline import MediaCosts, StageSeconds, stage_seconds
from vsr.job.errors import GPUCallTooLong, InputNotFound, LimitExceeded, TrimOutOfRange
from vsr.job.sizing import OutputSize, output_size
from vsr.options import AUTO_CODEC, TEMPORAL_ENGINES, UpscaleOptions

logger = logging.getLogger(__name__)

# Rough bits per output pixel per frame at each codec's default quality (CRF_RANGE defaults), for
# upscaled footage (smoother than native footage of that size); each 6 CRF steps halve or double it.
_BITS_PER_PIXEL = {"h264": 0.08, "hevc": 0.05, "av1": 0.04, "prores": 2.4, "ffv1": 4.0}

GPU_LOADING_SECONDS = 60.0
"""Added to every ZeroGPU reservation: loading the model inside the GPU call."""
GPU_MARGIN = 1.5
"""The estimate is multiplied by this in a ZeroGPU reservation (estimates are not exact)."""
GPU_MINIMUM_SECONDS = 60


def gpu_seconds(estimate_seconds: float | None, *, loading_seconds: float = GPU_LOADING_SECONDS,
                margin: float = GPU_MARGIN, minimum: int = GPU_MINIMUM_SECONDS) -> int:
    """Seconds to reserve a ZeroGPU device for a job whose plan estimates ``estimate_seconds``.

    The estimate times ``margin`` plus ``loading_seconds`` for loading the model, at least
    ``minimum``; an unknown estimate gets ``minimum`` plus the loading time.
    """
    if estimate_seconds is None or not math.isfinite(estimate_seconds):
        return int(minimum + loading_seconds)
    return max(minimum, math.ceil(estimate_seconds * margin + loading_seconds))


def frames_per_gpu_call(limit_seconds: float, seconds_per_frame: float, fixed_seconds: float = 0.0) -> int:
    """The most frames one GPU call of at most ``limit_seconds`` can upscale: the largest ``n`` with
    ``gpu_seconds(fixed_seconds + n * seconds_per_frame) <= limit_seconds`` (0 when not even one
    frame fits)."""
    budget = (limit_seconds - GPU_LOADING_SECONDS) / GPU_MARGIN - fixed_seconds
    if gpu_seconds(fixed_seconds) > limit_seconds or budget <= 0:
        return 0
    if seconds_per_frame <= 0:
        return 2**31 - 1
    frames = math.floor(budget / seconds_per_frame) + 1
    while frames > 0 and gpu_seconds(fixed_seconds + frames * seconds_per_frame) > limit_seconds:  # rounding
        frames -= 1
    return frames


@dataclass(frozen=True)
class JobPlan:
    """A checked job: the input, the options, and everything decided from them.

    Times are seconds as ``Fraction`` from the video's first frame (``start``/``end``: the range to
    upscale, ``end`` already clamped to the video's end). ``frames`` is the expected number of output
    frames. ``seconds_per_frame`` is the engine's time per frame (``calibration``); ``media`` what
    decoding, encoding and verifying cost on this machine; ``stages`` both per frame, and
    ``estimate_seconds`` the whole job's time from them (``vsr.job.pipeline``). ``estimate_bytes``
    is a rough output file size.
    """

    input: Path
    options: UpscaleOptions
    info: Any  # media.MediaInfo
    start: Fraction
    end: Fraction
    frames: int
    size: OutputSize
    tracks: tuple[Any, ...]  # media.StreamAction per audio/subtitle stream
    container_suffix: str
    engine: dict[str, Any]
    calibration: Calibration
    seconds_per_frame: float
    media: MediaCosts
    stages: StageSeconds
    estimate_seconds: float
    estimate_bytes: int
    notes: tuple[str, ...] = field(default=())
    gpu_call_limit: float | None = None
    """On a ZeroGPU Space: the longest GPU call (seconds) this job may take; None elsewhere."""
    memory: "memory_model.MemoryPlan | None" = None
    """Predicted peak memory on the job's device, its budget and the tiling chosen (``vsr.job.memory``)."""

    @property
    def gpu_seconds(self) -> int:
        """The GPU time reserved for this job under ZeroGPU, all its calls together (one call: the
        ``gpu_seconds`` of the estimate)."""
        return sum(self.call_seconds(frames) for frames in self.gpu_call_frames)

    @property
    def gpu_call_frames(self) -> tuple[int, ...]:
        """On ZeroGPU: the frames each GPU call of this job upscales, in order (``max_frames_per_call``
        each, the rest in the last); elsewhere one "call" of every frame."""
        most = self.max_frames_per_call
        if most is None or most < 1 or self.frames <= most:
            return (self.frames,)
        full, rest = divmod(self.frames, most)
        return (most,) * full + ((rest,) if rest else ())

    @property
    def gpu_calls(self) -> int | None:
        """On ZeroGPU: how many GPU calls this job takes; None elsewhere."""
        return len(self.gpu_call_frames) if self.gpu_call_limit is not None else None

    def call_seconds(self, frames: int) -> int:
        """The reservation of one GPU call that upscales ``frames`` frames of this job."""
        return gpu_seconds(self.stages.total(frames))

    @property
    def max_frames_per_call(self) -> int | None:
        """On ZeroGPU: the most frames of this video one GPU call can upscale; None elsewhere."""
        if self.gpu_call_limit is None:
            return None
        return frames_per_gpu_call(self.gpu_call_limit, self.stages.per_frame, self.stages.fixed)

    @property
    def temporal(self) -> bool:
        """Whether the engine draws noise and carries context across frames (``TEMPORAL_ENGINES``):
        only then do its seed and scene cuts mean anything."""
        return self.engine.get("engine") in TEMPORAL_ENGINES

    @property
    def duration(self) -> Fraction:
        return self.end - self.start

    @property
    def trimmed(self) -> bool:
        return self.trim_start is not None or self.trim_end is not None

    @property
    def trim_start(self) -> Fraction | None:
        """``start`` for the media reader and writer: None when the range starts at the first frame."""
        return self.start if self.start > 0 else None

    @property
    def trim_end(self) -> Fraction | None:
        """``end`` for the media reader and writer: None when the range runs to the video's end."""
        video_duration = self.info.video.duration
        return None if video_duration is None or self.end >= video_duration else self.end

    @property
    def rate(self) -> Fraction:
        return self.info.video.avg_rate

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (``Fraction`` as ``"num/den"`` strings)."""
        v = self.info.video
        return {
            "input": str(self.input),
            "input_size": [v.width, v.height],
            "display_size": [v.display_width, v.display_height],
            "model_size": [self.size.model_width, self.size.model_height],
            "output_size": [self.size.width, self.size.height],
            "resized": self.size.resized,
            "frame_rate": fraction_text(v.avg_rate),
            "variable_rate": v.variable_rate,
            "start": fraction_text(self.start),
            "end": fraction_text(self.end),
            "duration": fraction_text(self.duration),
            "frames": self.frames,
            "tracks": [dataclasses.asdict(t) for t in self.tracks],
            "container": self.container_suffix,
            "codec": self.options.codec,
            "crf": self.options.effective_crf,
            "engine": self.engine,
            "scene_cuts": self.options.scene_cuts,
            "scene_threshold": self.options.scene_threshold,
            "seconds_per_frame": self.seconds_per_frame,
            "stages": self.stages.to_dict(),
            "estimate_seconds": self.estimate_seconds,
            "estimate_bytes": self.estimate_bytes,
            "calibration": self.calibration.describe(),
            "estimate_provisional": self.calibration.provisional,
            "gpu_call_limit": self.gpu_call_limit,
            "gpu_seconds": self.gpu_seconds if self.gpu_call_limit is not None else None,
            "gpu_calls": self.gpu_calls,
            "gpu_call_frames": list(self.gpu_call_frames) if self.gpu_call_limit is not None else None,
            "memory": self.memory.to_dict() if self.memory is not None else None,
            "notes": list(self.notes),
        }

    def _gpu_text(self) -> str:
        how = f"estimate x {GPU_MARGIN:g} + {GPU_LOADING_SECONDS:g} s to load the model"
        if self.gpu_calls == 1:
            return (f"GPU:      one ZeroGPU call of {self.gpu_seconds} s reserved ({how}; the limit is "
                    f"{self.gpu_call_limit:g} s per call)")
        return (f"GPU:      {self.gpu_calls} ZeroGPU calls one after another, {self.gpu_seconds} s reserved in all "
                f"(at most {self.max_frames_per_call} frames and {self.gpu_call_limit:g} s per call, each {how}; "
                "each call hands a checkpoint to the next)")

    def estimate_text(self) -> str:
        """The time estimate in words: how long, and whether it was measured on this device."""
        source = ("provisional: not yet measured on this device, from the paper's published speed" if self.calibration.provisional
                  else "measured on this device")
        stages = self.stages
        parts = [f"upscaling {stages.engine:.3f} s"]
        if self.media.measured:
            parts.append(f"encoding {stages.encode:.3f} s")
        return f"about {duration_text(self.estimate_seconds)}, {source} ({', '.join(parts)} per frame)"

    def to_text(self) -> str:
        """A few lines for people: what goes in, what comes out, how long it should take."""
        v = self.info.video
        engine = self.engine
        lines = [
            f"Input:    {self.input.name}: {v.width}x{v.height}"
            + (f" (shown as {v.display_width}x{v.display_height})" if (v.display_width, v.display_height)
               != (v.width, v.height) else "")
            + f", {rate_text(v.avg_rate)} fps{' (variable)' if v.variable_rate else ''}, {v.codec}",
            f"Range:    {clock_text(self.start)} to {clock_text(self.end)} ({float(self.duration):.2f} s, "
            f"about {self.frames} frames)" + (" [trimmed]" if self.trimmed else ""),
            f"Output:   {self.size.width}x{self.size.height} "
            + (f"(model at {self.size.model_width}x{self.size.model_height}, resized with Lanczos)"
               if self.size.resized else "(exactly 4x)")
            + f", {self.options.codec}"
            + (f" CRF {self.options.effective_crf}" if self.options.effective_crf is not None else "")
            + f", {self.container_suffix} container",
            f"Engine:   {engine.get('engine')} on {engine.get('device')} ({engine.get('precision')}"
            + (f", {engine.get('steps')} steps" if engine.get("steps") else "")
            + ")",
        ]
        if self.temporal:
            lines.append("Scenes:   " + (f"temporal context reset at detected cuts (threshold "
                                         f"{self.options.scene_threshold:g})" if self.options.scene_cuts
                                         else "no cut detection (one continuous stream)"))
        cut = "; cut to the same range" if self.trimmed else ""
        for track in self.tracks:
            lines.append(f"Track:    {track.to_text()}{cut}")
        if not self.tracks:
            lines.append("Track:    no audio or subtitle tracks")
        lines.append(f"Estimate: {self.estimate_text()}; output about {bytes_text(self.estimate_bytes)} (rough)")
        if self.memory is not None:
            lines.append(f"Memory:   {self.memory.to_text()}")
        if self.gpu_call_limit is not None:
            lines.append(self._gpu_text())
        lines.extend(f"Note:     {note}" for note in self.notes)
        return "\n".join(lines)


def plan(
    input: str | Path,
    options: UpscaleOptions,
    *,
    estimator: Estimator,
    output: str | Path | None = None,
    zero_gpu: bool | None = None,
    piece_only: bool = False,
) -> JobPlan:
    """Probe ``input`` and decide the whole job; raise before any work if it cannot be done.

    Never loads or runs a model itself: the engine's description and speed come from ``estimator``
    (``vsr.job.estimate.estimator_for``; the caller decides whether measuring is worth it and says
    so, see ``Estimator.will_measure``). ``output`` (optional) is where the result will go; its
    suffix picks the container (default: the codec's usual one, ``encode_settings(options).suffix``).
    ``zero_gpu`` (default: ``vsr.environment.on_zero_gpu()``) plans for a ZeroGPU Space: the job runs
    as GPU calls of at most ``options.zerogpu_max_seconds`` each (``JobPlan.gpu_calls``), and at least
    one frame must fit in one call; with ``piece_only`` (the caller runs only ``preview_plan``'s piece
    of it) that check is left to the piece's plan.
    The plan predicts the job's peak memory and picks its tiling (``vsr.job.memory``).
    Raises ``InputNotFound``, ``LimitExceeded``, ``TargetTooLarge``, ``TrimOutOfRange``,
    ``GPUCallTooLong``, ``NotEnoughMemory`` (all ``JobRefused``, a ``ValueError``), ``media.MediaError`` for unreadable
    input, and whatever ``estimator`` raises (``ModelLoadError`` when it measures an engine that
    cannot be loaded).
    """
    path = Path(input)
    if not path.is_file():
        raise InputNotFound(f"{path}: no such file. Check the path.")
    if output is not None and not Path(output).parent.is_dir():
        raise media.OutputNotWritable(
            f"{Path(output).parent}: the output folder does not exist. Create it or choose another output path.",
            output,
        )
    info = media.probe(path)
    _check_input_limits(path, info, options)
    options = resolve_codec(options, info)
    settings = encode_settings(options)
    settings.check_available()
    suffix = Path(output).suffix.lower() if output is not None else settings.suffix
    settings.check_container(suffix)
    zero_gpu = environment.on_zero_gpu() if zero_gpu is None else zero_gpu
    try:
        engine = estimator.engine()
        memory = memory_model.job_memory(options, engine, info.video.width, info.video.height)
        calibration = estimator.calibration(info.video.width, info.video.height)
    except Exception as exc:  # an engine that runs out of memory while loading or timing is a job error
        oom = memory_model.out_of_memory(exc, where=f"planning {path.name} (loading or timing the engine)",
                                         device=memory_model.device_label(options.device))
        if oom is not None:
            raise oom from exc
        raise
    costs = estimator.media(info, settings)
    limit = options.zerogpu_max_seconds if zero_gpu else None
    return _decide(path, info, options, engine, calibration, costs, suffix, limit, check_gpu_call=not piece_only,
                   memory=memory)


def resolve_codec(options: UpscaleOptions, info: Any) -> UpscaleOptions:
    """``options`` with codec ``auto`` made concrete for ``info``'s video: HEVC Main 10 for a source
    deeper than 8 bits or with a PQ/HLG transfer (it keeps the depth and the HDR metadata), else H.264."""
    if options.codec != AUTO_CODEC:
        return options
    return options.replace(codec="hevc" if output_depth(info.video) > 8 else "h264")


def depth_notes(video: Any, options: UpscaleOptions, width: int, height: int) -> list[str]:
    """The plan's words on the source's bit depth and HDR: kept, or lost (h264), and Dolby Vision."""
    if output_depth(video) <= 8 and not video.hdr.dolby_vision:
        return []
    pix_fmt = encode_settings(options).pix_fmt_for(width, height, output_depth(video))
    depth = bit_depth(pix_fmt) or 8
    notes = [f"{options.codec} output in {pix_fmt} ({depth}-bit)"
             + (", the default codec for a source deeper than 8 bits or HDR" if options.codec == "hevc" else "")
             ] if depth > 8 else []  # an 8-bit output: hdr_notes says what is lost
    return notes + list(media.hdr_notes(video, options.codec, pix_fmt))


def encode_settings(options: UpscaleOptions) -> "media.EncodeSettings":
    """The media layer's encoder settings for ``options`` (codec, CRF, preset). Codec ``auto`` before a plan
    made it concrete (``resolve_codec``) gives h264's (both of its choices go into .mp4)."""
    codec = "h264" if options.codec == AUTO_CODEC else options.codec
    return media.EncodeSettings(codec=codec, crf=options.crf, preset=options.preset)


def preview_plan(job: JobPlan, seconds: float = 2.0) -> JobPlan:
    """The same job limited to ``seconds`` from the middle of its range (all of it when shorter)."""
    if not seconds > 0:
        raise ValueError(f"preview length must be positive; got {seconds!r} seconds.")
    length = Fraction(str(seconds))
    if job.duration <= length:
        return job
    middle = job.start + job.duration / 2
    start = max(job.start, middle - length / 2)
    options = job.options.replace(start=start, end=start + length)
    return _decide(job.input, job.info, options, job.engine, job.calibration, job.media, job.container_suffix,
                   job.gpu_call_limit, memory=job.memory)


def _decide(
    path: Path,
    info: Any,
    options: UpscaleOptions,
    engine: dict[str, Any],
    calibration: Calibration,
    costs: MediaCosts,
    suffix: str,
    gpu_call_limit: float | None = None,
    *,
    check_gpu_call: bool = True,
    memory: "memory_model.MemoryPlan | None" = None,
) -> JobPlan:
    v = info.video
    notes: list[str] = []
    duration = v.duration if v.duration is not None else Fraction(v.frame_count or 0) / v.avg_rate
    start = options.start or Fraction(0)
    end = options.end if options.end is not None else duration
    if start >= duration:
        raise TrimOutOfRange(
            f"{path}: start {float(start):g} s is at or past the end of the video ({float(duration):.3f} s). "
            "Give a start time inside the video."
        )
    if end > duration:
        notes.append(f"end {float(end):g} s is past the end of the video; upscaling to its end "
                     f"({float(duration):.3f} s)")
        end = duration
    length = end - start
    if float(length) > options.max_duration:
        raise LimitExceeded(
            f"{path}: {duration_text(float(length))} of video is over the limit of {duration_text(options.max_duration)}. "
            "Trim it with start/end (--start/--end) or raise the limit (STREAM_DIFFVSR_MAX_DURATION)."
        )
    frames = _frame_count(v, start, end, length)
    if frames < 1:
        raise TrimOutOfRange(f"{path}: the range {float(start):g} s to {float(end):g} s holds no frame. Widen it.")
    size = output_size(v.width, v.height, v.display_width, v.display_height, v.rotation, options.height)
    largest = max(size.model_width * size.model_height, size.width * size.height)
    if largest > options.max_output_pixels:
        raise LimitExceeded(
            f"{path}: the output frames would be {size.model_width}x{size.model_height} = {largest} pixels, over the "
            f"limit of {options.max_output_pixels} pixels. Use a smaller input or raise the limit "
            "(STREAM_DIFFVSR_MAX_OUTPUT_PIXELS)."
        )
    if size.resized and v.sample_aspect_ratio != 1:
        notes.append(f"the source's pixel aspect ratio {v.sample_aspect_ratio} becomes square pixels in the output")
    if v.variable_rate:
        notes.append("variable frame rate: every frame keeps its own timestamp")
    if v.interlaced:
        notes.append("the source is interlaced: each frame is deinterlaced (FFmpeg's bwdif) before it is upscaled, "
                     "at the same frame rate")
    if v.has_alpha:
        notes.append("the source's transparency (alpha channel) is dropped: only the colour picture is "
                     "upscaled and the output is opaque")
    notes.extend(depth_notes(v, options, size.width, size.height))
    seconds_per_frame = calibration.seconds_per_frame(v.width, v.height)
    stages = stage_seconds(costs, seconds_per_frame, str(engine.get("device", "cpu")), v.width * v.height,
                           size.model_width * size.model_height, size.width * size.height, size.resized)
    if gpu_call_limit is not None and check_gpu_call:
        _check_gpu_call(path, v, engine, size, calibration, stages, frames, gpu_call_limit)
    tracks = media.plan_stream_actions(info, path.with_name(f"output{suffix}"))
    return JobPlan(
        input=path,
        options=options,
        info=info,
        start=start,
        end=end,
        frames=frames,
        size=size,
        tracks=tracks,
        container_suffix=suffix,
        engine=dict(engine),
        calibration=calibration,
        seconds_per_frame=seconds_per_frame,
        media=costs,
        stages=stages,
        estimate_seconds=stages.total(frames),
        estimate_bytes=_estimate_bytes(info, options, size, frames, length),
        notes=tuple(notes),
        gpu_call_limit=gpu_call_limit,
        memory=memory,
    )


def _check_gpu_call(path: Path, v: Any, engine: dict[str, Any], size: OutputSize, calibration: Calibration,
                    stages: StageSeconds, frames: int, limit: float) -> None:
    """Refuse (``GPUCallTooLong``) a ZeroGPU job of which not even one frame fits in one call of
    ``limit`` seconds (a longer job runs as several calls)."""
    most = frames_per_gpu_call(limit, stages.per_frame, stages.fixed)
    if most >= 1:
        return
    needed = gpu_seconds(stages.total(1))
    steps = f" ({engine.get('steps')} steps)" if engine.get("steps") else ""
    source = ("provisional estimate, not yet measured on this device" if calibration.provisional
              else "measured on this device")
    where = f"{v.width}x{v.height} -> {size.width}x{size.height} with the {engine.get('engine')} engine{steps}"
    raise GPUCallTooLong(
        f"{path}: on this ZeroGPU Space one GPU call may last at most {limit:g} s, but even one frame needs about "
        f"{needed} s ({stages.per_frame:.3f} s per frame + {stages.fixed:g} s to start and finish, x {GPU_MARGIN:g} margin + {GPU_LOADING_SECONDS:g} s to load "
        f"the model; {source}) at {where}. Use a smaller (lower-resolution) input or fewer steps, or run it locally "
        "or on a dedicated GPU (the Docker image or the command line), where there is no per-call limit.",
        limit_seconds=limit, needed_seconds=needed, max_frames=0, max_seconds=0.0,
    )


def _check_input_limits(path: Path, info: Any, options: UpscaleOptions) -> None:
    v = info.video
    if v.width * v.height > options.max_input_pixels:
        raise LimitExceeded(
            f"{path}: the picture is {v.width}x{v.height} = {v.width * v.height} pixels, over the limit of "
            f"{options.max_input_pixels} input pixels. Downscale the video first or raise the limit "
            "(STREAM_DIFFVSR_MAX_INPUT_PIXELS)."
        )


def _frame_count(v: Any, start: Fraction, end: Fraction, length: Fraction) -> int:
    full = v.duration is not None and start == 0 and end >= v.duration
    if full and v.frame_count:
        return int(v.frame_count)
    return max(0, round(length * v.avg_rate))


def _estimate_bytes(info: Any, options: UpscaleOptions, size: OutputSize, frames: int, length: Fraction) -> int:
    bpp = _BITS_PER_PIXEL[options.codec]
    default = options.effective_crf
    if default is not None and options.crf is not None:
        from vsr.options import CRF_RANGE

        spec = CRF_RANGE[options.codec]
        assert spec is not None
        bpp *= 2 ** ((spec[2] - options.crf) / 6)
    video_bits = bpp * size.width * size.height * frames
    audio_bits = sum((a.bit_rate or 128_000) * float(length) for a in info.audio)
    return int((video_bits + audio_bits) / 8)
