"""The product's main job: one streaming pass from a video in to a verified, upscaled video out.

``plan`` (in ``vsr.job.planning``) decides and checks everything first; ``run`` then does one pass::

    media.FrameReader (decode thread) -> bounded queue -> scene check -> engine.process (this thread)
        -> bounded queue -> EncodeThread (resize + media.VideoWriter) -> finish/mux -> media.verify

Memory is flat in video length (two bounded queues, no frame kept). The engine's temporal context
runs across the whole range and is reset only where ``SceneCutDetector`` sees a hard cut (when scene
cuts are on). A cancel request (``threading.Event``) or any error stops the pass within one frame,
closes every file and thread, removes the half-written output and the job's temporary directory,
then raises (``JobCancelled``, ``JobFailed`` or the original ``MediaError``).

A finished job records the engine's steady-state speed it measured (the median time of every frame
that was not a stream's first frame, less the media threads' share on the CPU:
``vsr.job.pipeline.engine_seconds_alone``) in the calibration cache (``vsr.job.estimate.record``),
under the engine's key and the plan's, so later plans on this device estimate from a real run.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

import media
from vsr.job import estimate, pipeline
from vsr.job.encode_thread import EncodeThread
from vsr.job.errors import JobCancelled, JobError, JobFailed, JobRefused, VerificationFailed
from vsr.job.planning import JobPlan, encode_settings
from vsr.job.progress import ProgressCallback, ProgressEvent, RateMeter
from vsr.job.scenes import SceneCutDetector
from vsr.model import engines
from vsr.model.engines import engine_lock
from vsr.model.protocol import FrameProcessor

logger = logging.getLogger(__name__)


READ_QUEUE = 8
ENCODE_QUEUE = 4


@dataclass(frozen=True)
class JobResult:
    """A finished job. ``seconds`` is wall time of ``run``; ``model_seconds`` the part spent in the
    engine. ``scene_cuts`` lists the frame indices (0 = first frame of the range) where the temporal
    context was reset. ``report`` is the media ``VerifyReport`` (passed), ``write`` the writer's
    ``WriteReport`` (what happened to each stream)."""

    output: Path
    preview: Path | None
    report: Any
    write: Any
    frames: int
    seconds: float
    model_seconds: float
    seed: int
    scene_cuts: tuple[int, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# The streaming pass.


def run(
    job: JobPlan,
    output: str | Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    processor: FrameProcessor | None = None,
    preview_dir: str | Path | None = None,
) -> JobResult:
    """Upscale ``job`` into ``output`` in one streaming pass and verify the result.

    ``on_progress`` receives ``ProgressEvent``s (stages loading, upscaling, finishing, verifying,
    done). ``cancel.set()`` from any thread stops the job within one frame and raises
    ``JobCancelled``. ``processor`` overrides ``get_processor(job.options)``. With ``preview_dir``
    a browser-playable copy is made there when ``output`` itself does not play in browsers
    (``JobResult.preview``). On any failure nothing is left under ``output`` and the job's temporary
    directory is removed; engine failures raise ``JobFailed`` (the cause chained), media failures
    their ``MediaError``, a failed verification ``VerificationFailed`` (the output is removed).
    """
    output = Path(output)
    options = job.options
    emit = on_progress or (lambda event: None)
    started = time.perf_counter()
    _check_output(job, output)
    emit(ProgressEvent("loading", 0, job.frames, message=f"loading the {options.engine} engine"))
    if processor is None:
        processor = engines.get_processor(options)
    lock = engine_lock(processor)
    if not lock.acquire(blocking=False):
        logger.info("waiting for another job to finish with the same engine")
        lock.acquire()
    try:
        # The job's scratch directory. The writer keeps its partial file next to ``output`` instead
        # (the final rename must stay on one file system to be atomic), so today nothing else needs
        # scratch space; the directory is still made and always removed, as the settings promise.
        options.tmp_dir.mkdir(parents=True, exist_ok=True)
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=options.tmp_dir))
    except BaseException:
        lock.release()
        raise
    try:
        if cancel is not None and cancel.is_set():
            raise JobCancelled("The job was cancelled before it started; nothing was written.")
        seed = processor.start_stream(options.seed)
        logger.info("job %s -> %s: seed %d, %s", job.input, output, seed, processor.describe())
        write_report, frames, cuts, model_seconds, steady = _stream(job, output, processor, emit, cancel)
        emit(ProgressEvent("verifying", frames, frames, message="verifying the output"))
        report = media.verify(job.info, output, _expected(job, frames))
        if not report.ok:
            output.unlink(missing_ok=True)
            raise VerificationFailed(
                f"{output}: the finished video failed verification ({_failed_checks(report)}), so it was removed. "
                "Please report this with the output of `vsr probe` on the input.",
                report,
            )
        preview = media.make_browser_preview(output, Path(preview_dir)) if preview_dir is not None else None
    except BaseException as exc:
        # Threads and the partial output were already cleaned up inside _stream; this only reports.
        logger.info("job %s -> %s stopped: %s", job.input, output, type(exc).__name__)
        raise
    finally:
        lock.release()
        shutil.rmtree(job_dir, ignore_errors=True)
    _record_speed(job, processor, steady)
    seconds = time.perf_counter() - started
    emit(ProgressEvent("done", frames, frames, message=f"done in {seconds:.1f} s"))
    logger.info("job done: %d frames in %.1f s (model %.1f s), scene cuts at %s", frames, seconds, model_seconds, cuts)
    return JobResult(output, preview, report, write_report, frames, seconds, model_seconds, seed, tuple(cuts))


def _stream(
    job: JobPlan,
    output: Path,
    processor: FrameProcessor,
    emit: ProgressCallback,
    cancel: threading.Event | None,
) -> tuple[Any, int, list[int], float, list[float]]:
    """Decode -> upscale -> encode; returns (write report, frames, scene cut indices, model seconds,
    engine seconds of each frame that was not the first of its stream)."""
    options = job.options
    size = job.size
    detector = SceneCutDetector(options.scene_threshold, job.rate) if options.scene_cuts else None
    cuts: list[int] = []
    meter = RateMeter()
    model_seconds = 0.0
    steady: list[float] = []
    done = 0
    engine = str(processor.describe().get("engine", options.engine))
    with media.FrameReader(job.input, job.trim_start, job.trim_end, READ_QUEUE, info=job.info) as reader:
        writer = media.VideoWriter(
            output, job.info, size.width, size.height, encode_settings(options), start=job.trim_start, end=job.trim_end
        )
        with writer:
            encoder = EncodeThread(writer, size.width, size.height, ENCODE_QUEUE)
            try:
                for frame in reader:
                    _check_cancel(cancel)
                    cut = detector is not None and detector.is_cut(frame.rgb)
                    if cut:
                        processor.reset()
                        cuts.append(frame.index)
                        logger.info("scene cut at frame %d (%.3f s): temporal context reset", frame.index,
                                    float(frame.pts - job.info.video.start_time))
                    tick = time.perf_counter()
                    try:
                        upscaled = processor.process(frame.rgb)
                    except Exception as exc:
                        raise JobFailed(
                            f"{job.input}: the {engine} engine failed on frame {frame.index} "
                            f"({float(frame.pts - job.info.video.start_time):.3f} s): {type(exc).__name__}: {exc}. "
                            "Nothing was written; see the log for the traceback."
                        ) from exc
                    took = time.perf_counter() - tick
                    model_seconds += took
                    if done > 0 and not cut:  # a stream's first frame takes a different, cheaper path
                        steady.append(took)
                    _check_frame(upscaled, size, engine, frame.index)
                    encoder.put(upscaled, frame.pts, cancel, duration=frame.duration)
                    done += 1
                    meter.tick()
                    emit(ProgressEvent(
                        "upscaling", done, max(job.frames, done), meter.fps, meter.eta(job.frames - done),
                        frame.rgb, upscaled,
                        message=f"scene cut at frame {frame.index}: temporal context reset" if cut else "",
                        scene_cut=frame.index if cut else None,
                    ))
                _check_cancel(cancel)
                held = processor.flush()
                if held:
                    raise JobFailed(f"The {engine} engine returned {len(held)} held-back frames at the end; this job "
                                    "supports only engines that return one frame per input frame.")
                emit(ProgressEvent("finishing", done, done, meter.fps, 0.0, message="writing the last frames"))
                encoder.finish()
            except BaseException:
                encoder.stop()
                writer.abort()
                raise
            _check_cancel(cancel, writer)
            write_report = writer.finish()
    return write_report, done, cuts, model_seconds, steady


def _record_speed(job: JobPlan, processor: FrameProcessor, steady: list[float]) -> None:
    """Record the finished job's steady-state seconds per frame for later plans (see module doc).

    Under the engine's own calibration key and the plan's (which differs on a ZeroGPU Space, whose
    plans cannot load the engine). A failure to write the cache is logged, never fails the job.
    """
    in_job = statistics.median(steady) if len(steady) >= estimate.MIN_RECORDED_FRAMES else 0.0
    seconds = pipeline.engine_seconds_alone(in_job, job.stages)
    if seconds > 0:
        keys = [estimate.cache_key(processor), job.calibration.key]
        estimate.record(job.options.cache_dir, keys, job.info.video.width, job.info.video.height, seconds)


def _check_cancel(cancel: threading.Event | None, writer: Any = None) -> None:
    if cancel is not None and cancel.is_set():
        if writer is not None:
            writer.abort()
        raise JobCancelled("The job was cancelled; its partial output and temporary files were removed.")


def _check_frame(upscaled: np.ndarray, size: Any, engine: str, index: int) -> None:
    expected = (size.model_height, size.model_width, 3)
    if not isinstance(upscaled, np.ndarray) or upscaled.shape != expected or upscaled.dtype != np.uint8:
        got = (upscaled.shape, upscaled.dtype) if isinstance(upscaled, np.ndarray) else type(upscaled).__name__
        raise JobFailed(f"The {engine} engine returned {got} for frame {index}; expected a uint8 array of shape "
                        f"{expected}. This is a bug in the engine.")


def _check_output(job: JobPlan, output: Path) -> None:
    if output.resolve() == job.input.resolve():
        raise JobRefused(f"{output}: the output would overwrite the input. Choose another output file name.")
    if output.suffix.lower() != job.container_suffix:
        raise JobRefused(
            f"{output}: the plan was made for a {job.container_suffix} file (its audio and subtitle handling "
            f"depends on the container). Plan again with output={output} or name the output *{job.container_suffix}."
        )


def _expected(job: JobPlan, frames: int) -> Any:
    return media.ExpectedOutput(
        frames=frames, width=job.size.width, height=job.size.height, start=job.trim_start, end=job.trim_end
    )


def _failed_checks(report: Any) -> str:
    return "; ".join(f"{c.name}: {c.message}" for c in report.failed) or "see the report"


def frame_time(job: JobPlan, pts: Fraction) -> Fraction:
    """Seconds from the video's first frame for a source ``pts``."""
    return pts - job.info.video.start_time
