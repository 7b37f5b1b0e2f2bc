"""The product's main job: one streaming pass from a video in to a verified, upscaled video out.

``plan`` (in ``vsr.job.planning``) decides and checks everything first; ``run`` then does one pass::

    media.FrameReader (decode thread) -> bounded queue -> scene check -> engine.process (this thread)
        -> bounded queue -> EncodeThread (resize + video-only segments, ``SegmentedVideo``)
        -> media.join_segments (stream copy + audio/subtitles; media.verify, then the atomic rename)

Engines with a ``prefetch`` method are given the next frame one call early (a one-frame look-ahead
from the read queue), so they can start its optical flow while the current frame denoises.
Memory is flat in video length (two bounded queues, no frame kept). The engine's temporal context
runs across the whole range and is reset only where ``SceneCutDetector`` sees a hard cut (when scene
cuts are on). A cancel request (``threading.Event``) or any error stops the pass within one frame,
closes every file and thread, removes the half-written output and the job's temporary directory,
then raises (``JobCancelled``, ``JobFailed`` or the original ``MediaError``).

Checkpoints (``checkpoint_dir``, ``vsr.job.checkpoint``): every ``options.checkpoint_seconds`` of
work the encode thread closes the current segment and saves, atomically, what the job needs to go
on (the engine's stream state, the noise generator, the scene detector, the counters), so a job
killed at any moment resumes from its last checkpoint (``resume=``) and gives the same frames as an
uninterrupted one. A cancel stops at a frame boundary and keeps a checkpoint of everything done
(``JobCancelled.checkpoint``). ``run_piece`` runs a job in pieces (one per ZeroGPU call, each up to
a ``CallLimit``) that hand over a ``JobCheckpoint``; ``finish_job`` joins and verifies without an
engine.

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
from vsr.job import checkpoint, estimate, pipeline
from vsr.job import memory as memory_model
from vsr.job.checkpoint import JobCheckpoint
from vsr.job.encode_thread import EncodeThread
from vsr.job.errors import CheckpointMismatch, JobCancelled, JobFailed, JobRefused, VerificationFailed
from vsr.job.planning import JobPlan, encode_settings
from vsr.job.progress import ProgressCallback, ProgressEvent, RateMeter
from vsr.job.parts import KnownCuts, Part
from vsr.job.scenes import SceneCutDetector
from vsr.job.result_stream import streamed
from vsr.job.segments import SegmentedVideo, media_segments
from vsr.model import engines
from vsr.model.engines import engine_lock
from vsr.model.errors import NonFiniteOutput
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


@dataclass(frozen=True)
class CallLimit:
    """Where one piece of a job must stop (one ZeroGPU call): after ``frames`` frames, and before
    ``deadline`` (``time.monotonic()``), judged from the last frame's time. None: no such limit."""

    frames: int | None = None
    deadline: float | None = None


@dataclass(frozen=True)
class JobPaused:
    """A piece of a job ended at its ``CallLimit`` (or every frame is done and ``finish`` was off):
    ``checkpoint`` (plain data and CPU tensors) continues it, in this or another process."""

    checkpoint: JobCheckpoint

    @property
    def complete(self) -> bool:
        return self.checkpoint.complete


FINISH_ALLOWANCE_S = 5.0
"""Seconds kept free at the end of a limited piece for closing the segment and saving the checkpoint."""


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
    checkpoint_dir: str | Path | None = None,
    resume: JobCheckpoint | None = None,
) -> JobResult:
    """Upscale ``job`` into ``output`` in one streaming pass and verify the result.

    ``on_progress`` receives ``ProgressEvent``s (stages loading, upscaling, finishing, verifying,
    done). ``cancel.set()`` from any thread stops the job within one frame and raises
    ``JobCancelled``. ``processor`` overrides ``get_processor(job.options)``. With ``preview_dir``
    a browser-playable copy is made there when ``output`` itself does not play in browsers
    (``JobResult.preview``). On any failure nothing is left under ``output`` and the job's temporary
    directory is removed; engine failures raise ``JobFailed`` (the cause chained), media failures
    their ``MediaError``, a failed verification ``VerificationFailed`` (the output is removed).

    ``checkpoint_dir``: keep a checkpoint there (``vsr.job.checkpoint``) every
    ``options.checkpoint_seconds`` of work and when cancelled, so the job can be resumed after
    Ctrl-C, a crash or a power cut (``JobCancelled.checkpoint`` names it; it is removed once the
    output is finished). ``resume``: that folder's checkpoint (``checkpoint.load``), to go on from;
    one of another input or other options raises ``CheckpointMismatch``.
    """
    outcome = run_piece(job, output, on_progress=on_progress, cancel=cancel, processor=processor,
                        preview_dir=preview_dir, checkpoint_dir=checkpoint_dir, resume=resume)
    assert isinstance(outcome, JobResult)
    return outcome


def run_piece(
    job: JobPlan,
    output: str | Path,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    processor: FrameProcessor | None = None,
    preview_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: JobCheckpoint | None = None,
    limit: CallLimit | None = None,
    finish: bool = True,
    part: Part | None = None,
    stream_dir: str | Path | None = None,
) -> JobResult | JobPaused:
    """``run``, for a piece of the job: stop at ``limit`` (``JobPaused``, its checkpoint saved in
    ``checkpoint_dir``) or, with ``finish`` off, once every frame is upscaled (``JobPaused`` with a
    complete checkpoint; ``finish_job`` then joins and verifies, with no engine and no GPU).
    ``part`` (``vsr.job.parts``, a job spread over several workers): upscale only that part's frames,
    from its warm-up frame (not encoded) to its end (``JobPaused``; ``finish`` must be off), with the
    noise of those frames and the scene cuts of the whole video, on the whole job's time line.
    ``stream_dir``: also stream the frames there as they are made (``vsr.job.result_stream``: short
    MPEG-TS chunks a player plays while the job runs; the stream goes on across pieces)."""
    output = Path(output)
    emit = on_progress or (lambda event: None)
    started = time.perf_counter()
    _check_output(job, output)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume is not None:
        if folder is None:
            raise ValueError("resume needs the checkpoint's folder (checkpoint_dir), where its segments are.")
        checkpoint.check(resume, job, folder)
    if resume is not None and resume.complete:
        if not finish:
            return JobPaused(resume)
        assert folder is not None, "a complete checkpoint is resumed from its folder"
        return finish_job(job, output, folder, resume, on_progress=on_progress, preview_dir=preview_dir)
    where = f"resuming at {resume.where()}" if resume is not None else f"loading the {job.options.engine} engine"
    emit(ProgressEvent("loading", resume.next_index if resume else 0, job.frames, message=where))
    if processor is None:
        processor = _load(job)
    work, temporary = _work_folder(job, folder)
    try:
        latest, steady = _locked_stream(job, processor, work, folder is not None, resume, emit, cancel, limit, started,
                                        Path(stream_dir) if stream_dir is not None else None, part=part)
        _record_speed(job, processor, steady)
        if cancel is not None and cancel.is_set():
            raise _cancelled(latest, None if temporary else work, f"at {latest.where()}")
        if not latest.complete or not finish:
            return JobPaused(latest)
        return finish_job(job, output, work, latest, on_progress=on_progress, preview_dir=preview_dir,
                          keep_folder=temporary)
    except BaseException:
        if not temporary and not checkpoint.exists(work):
            checkpoint.remove(work)  # nothing committed yet: nothing to keep
        raise
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def _load(job: JobPlan) -> FrameProcessor:
    """The shared engine for the job's options; running out of memory while loading is explained."""
    options = job.options
    try:
        return engines.get_processor(options)
    except Exception as exc:
        oom = memory_model.out_of_memory(exc, where="loading the model",
                                         device=memory_model.device_label(options.device), plan=job.memory)
        if oom is not None:
            raise oom from exc
        raise


def _work_folder(job: JobPlan, folder: Path | None) -> tuple[Path, bool]:
    """Where the segments go: the checkpoint folder, or else a scratch folder of the job under
    ``options.tmp_dir`` (removed whatever happens). Returns (folder, whether it is scratch).
    ``options.tmp_dir`` is made either way, as the settings promise."""
    job.options.tmp_dir.mkdir(parents=True, exist_ok=True)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        return folder, False
    return Path(tempfile.mkdtemp(prefix="job-", dir=job.options.tmp_dir)), True


def _locked_stream(job: JobPlan, processor: FrameProcessor, work: Path, persist: bool, resume: JobCheckpoint | None,
                   emit: ProgressCallback, cancel: threading.Event | None, limit: CallLimit | None,
                   started: float, stream_dir: Path | None = None, part: Part | None = None) -> tuple[JobCheckpoint, list[float]]:
    """Own the engine (its lock) for the streaming pass; see ``_stream``."""
    lock = engine_lock(processor)
    if not lock.acquire(blocking=False):
        logger.info("waiting for another job to finish with the same engine")
        lock.acquire()
    try:
        if cancel is not None and cancel.is_set():
            raise _cancelled(resume, work if persist else None, "before it started")
        _set_tiling(processor, job)
        wanted = resume.seed if resume is not None else job.options.seed
        seed = processor.start_stream(wanted) if part is None else processor.start_stream(wanted, frame=part.warm)
        description = processor.describe()
        if resume is not None:
            reason = checkpoint.engine_refusal(resume, description)
            if reason is not None:
                raise CheckpointMismatch(f"{work}: the checkpoint cannot continue this job: {reason}. Run it as it "
                                         "was started, or start over (--overwrite on the command line).", work)
            processor.load_stream(resume.stream)
            checkpoint.clean_strays(work, resume)
        else:
            checkpoint.clean_strays(work, None)
        base = resume if resume is not None else checkpoint.new(job, description, seed)
        if part is not None and resume is None and part.warm_pts is not None:  # from its warm-up frame
            base = checkpoint.changed(base, next_index=part.warm, next_pts=part.warm_pts, offset=part.offset)
        logger.info("job %s: seed %d, %s%s", job.input, seed, description,
                    f", resuming at {base.where()}" if resume is not None else "")
        return _stream(job, processor, work, base, persist, emit, cancel, limit, started, stream_dir, part=part)
    except BaseException as exc:
        logger.info("job %s stopped: %s", job.input, type(exc).__name__)
        raise
    finally:
        _set_tiling(processor, None)
        lock.release()


@dataclass
class _Tally:
    """The running job's counters, from the checkpoint it continues."""

    done: int
    cuts: list[int]
    model_seconds: float
    steady: list[float]
    seconds_before: float  # wall time of the job before this piece
    piece: list[float] = field(default_factory=list)  # steady frame times of this piece only
    frames: int = 0  # frames of this piece

    @classmethod
    def of(cls, base: JobCheckpoint) -> "_Tally":
        return cls(base.next_index, list(base.scene_cuts), base.model_seconds, list(base.steady), base.seconds)


def _stream(job: JobPlan, processor: FrameProcessor, work: Path, base: JobCheckpoint, persist: bool,
            emit: ProgressCallback, cancel: threading.Event | None, limit: CallLimit | None,
            started: float, stream_dir: Path | None = None, part: Part | None = None) -> tuple[JobCheckpoint, list[float]]:
    """Decode -> upscale -> encode into segments, from ``base`` on; returns the last checkpoint and
    the steady-state frame times of this piece. A cancel request (or the piece's limit) stops at the
    next frame with a checkpoint; any error keeps only the checkpoints already committed."""
    detector: Any = SceneCutDetector(job.options.scene_threshold, job.rate) if job.options.scene_cuts else None
    if part is not None and part.cuts is not None and detector is not None:  # the cuts the driver found
        detector = KnownCuts(part.cuts, base.next_index)
    if detector is not None and base.scenes is not None:
        detector.load_state(base.scenes)
    tally = _Tally.of(base)
    video = streamed(SegmentedVideo(work, job, base, persist=persist), stream_dir, job, base)
    start = frame_time(job, base.next_pts) if base.next_pts is not None else job.trim_start
    with media.FrameReader(job.input, start, job.trim_end, READ_QUEUE, info=job.info) as reader:
        encoder = EncodeThread(video, job.size.width, job.size.height, ENCODE_QUEUE)
        try:
            stopped = _frames(job, processor, reader, encoder, video, detector, tally, emit, cancel, limit, started,
                              keep=part.first if part is not None else 0)
            next_pts = stopped.pts if stopped is not None else None
            if next_pts is None:
                _check_held(processor)
                emit(ProgressEvent("finishing", tally.done, tally.done, message="writing the last frames"))
            changes = _changes(processor, detector, tally, next_pts, started)
            encoder.call(lambda: video.commit(**changes))
            encoder.finish()
            latest = video.wait()
        except BaseException:
            encoder.stop()
            video.abort()
            raise
    return latest, tally.piece


def _frames(job: JobPlan, processor: FrameProcessor, reader: Any, encoder: EncodeThread, video: SegmentedVideo,
            detector: SceneCutDetector | None, tally: _Tally, emit: ProgressCallback,
            cancel: threading.Event | None, limit: CallLimit | None, started: float, keep: int = 0) -> Any:
    """Upscale the reader's frames; returns the frame it stopped before (cancel, limit), or None at the end.
    Frames before index ``keep`` (a part's warm-up) are upscaled but not encoded."""
    engine = str(processor.describe().get("engine", job.options.engine))
    interval = job.options.checkpoint_seconds if video.persist else 0.0
    meter = RateMeter()
    last_commit = time.monotonic()
    took = 0.0
    for frame, upcoming in _with_next(reader):
        if _stop_here(cancel, limit, tally, took):
            return frame
        index = tally.done
        if interval > 0 and tally.frames > 0 and time.monotonic() - last_commit >= interval:
            changes = _changes(processor, detector, tally, frame.pts, started)
            encoder.call(lambda changes=changes: video.commit(**changes))
            last_commit = time.monotonic()
        cut = detector is not None and detector.is_cut(frame.rgb)
        if cut:
            processor.reset()
            tally.cuts.append(index)
            logger.info("scene cut at frame %d (%.3f s): temporal context reset", index,
                        float(frame_time(job, frame.pts)))
        upscaled, took = _upscale(job, processor, engine, frame, index, upcoming)
        tally.model_seconds += took
        if index > 0 and not cut:  # a stream's first frame takes a different, cheaper path
            tally.steady.append(took)
            tally.piece.append(took)
        _check_frame(upscaled, job.size, engine, index, frame.rgb.dtype)
        if index >= keep:  # a part's warm-up frames are not kept
            encoder.put(upscaled, frame.pts, duration=frame.duration)
        tally.done += 1
        tally.frames += 1
        meter.tick()
        emit(ProgressEvent(
            "upscaling", tally.done, max(job.frames, tally.done), meter.fps, meter.eta(job.frames - tally.done),
            frame.rgb, upscaled,
            message=f"scene cut at frame {index}: temporal context reset" if cut else "",
            scene_cut=index if cut else None,
        ))
    return None


def _upscale(job: JobPlan, processor: FrameProcessor, engine: str, frame: Any, index: int,
             upcoming: Any) -> tuple[Any, float]:
    """Frame ``index`` through the engine (``upcoming``, the frame after it, handed to its
    ``prefetch`` first); returns it and the seconds it took. Failures name the frame."""
    prefetch = getattr(processor, "prefetch", None)  # optional: the next frame, given one frame early
    tick = time.perf_counter()
    try:
        if prefetch is not None and upcoming is not None:
            prefetch(upcoming.rgb)
        upscaled = processor.process(frame.rgb)
    except Exception as exc:
        at = f"frame {index} ({float(frame_time(job, frame.pts)):.3f} s)"
        where = f"upscaling {at} of {job.input}"
        oom = memory_model.out_of_memory(exc, where=where, device=_device(processor), frame=index, plan=job.memory)
        if oom is not None:
            raise oom from exc
        if isinstance(exc, NonFiniteOutput):  # a numerical limit with a fix, not a bug: no traceback talk
            raise JobFailed(f"{job.input}: {at}: {exc} Nothing was written.") from exc
        raise JobFailed(
            f"{job.input}: the {engine} engine failed on {at}: {type(exc).__name__}: {exc}. "
            "Nothing was written; see the log for the traceback."
        ) from exc
    return upscaled, time.perf_counter() - tick


def _stop_here(cancel: threading.Event | None, limit: CallLimit | None, tally: _Tally, took: float) -> bool:
    """Whether to stop before the next frame: cancelled, or this piece's limit reached (frames, or
    no time left for one more frame and the checkpoint; judged only after a frame of this piece)."""
    if cancel is not None and cancel.is_set():
        return True
    if limit is None or tally.frames == 0:
        return False
    if limit.frames is not None and tally.frames >= limit.frames:
        return True
    return limit.deadline is not None and time.monotonic() + 2 * took + FINISH_ALLOWANCE_S > limit.deadline


def _changes(processor: FrameProcessor, detector: SceneCutDetector | None, tally: _Tally, next_pts: Any,
             started: float) -> dict[str, Any]:
    """The checkpoint's fields at this frame, snapshotted now (the engine's state copied to the CPU)."""
    return {
        "next_index": tally.done, "next_pts": next_pts, "stream": processor.save_stream(),
        "scenes": detector.save_state() if detector is not None else None, "scene_cuts": tuple(tally.cuts),
        "model_seconds": tally.model_seconds, "steady": tuple(tally.steady),
        "seconds": tally.seconds_before + time.perf_counter() - started,
    }


def _check_held(processor: FrameProcessor) -> None:
    held = processor.flush()
    if held:
        engine = processor.describe().get("engine")
        raise JobFailed(f"The {engine} engine returned {len(held)} held-back frames at the end; this job "
                        "supports only engines that return one frame per input frame.")


def _cancelled(latest: JobCheckpoint | None, folder: Path | None, when: str) -> JobCancelled:
    """``JobCancelled``, naming the checkpoint kept in ``folder`` when there is one to keep."""
    if folder is not None and latest is not None and latest.next_index > 0 and checkpoint.exists(folder):
        return JobCancelled(f"The job was cancelled {when}; the work so far is kept in {folder}.",
                            checkpoint=folder, done=latest.next_index, total=max(latest.total, latest.next_index))
    if folder is not None:
        checkpoint.remove(folder)
    return JobCancelled(f"The job was cancelled {when}; its partial output and temporary files were removed.")


def finish_job(job: JobPlan, output: str | Path, folder: Path, latest: JobCheckpoint, *,
               on_progress: ProgressCallback | None = None, preview_dir: str | Path | None = None,
               keep_folder: bool = False) -> JobResult:
    """Join the segments of a complete checkpoint into ``output``, verify it, make the preview, and
    remove the checkpoint folder (unless ``keep_folder``: a scratch folder its owner removes). Needs
    no engine: on ZeroGPU it runs after the last GPU call."""
    output = Path(output)
    emit = on_progress or (lambda event: None)
    started = time.perf_counter()
    frames = latest.next_index
    emit(ProgressEvent("finishing", frames, frames, message="joining the segments, adding the audio and subtitles"))
    try:  # verified before it takes the output's name: a failed check never shows there
        write_report = media.join_segments(
            output, job.info, media_segments(folder, latest), encode_settings(job.options),
            latest.offset or Fraction(0), job.trim_start, job.trim_end, expected=_expected(job, frames),
            on_verify=lambda: emit(ProgressEvent("verifying", frames, frames, message="verifying the output")))
    except media.VerificationFailed as exc:
        if not keep_folder:
            checkpoint.remove(folder)
        raise VerificationFailed(
            f"{output}: the finished video failed verification ({_failed_checks(exc.report)}), so it was not saved. "
            "Please report this with the output of `vsr probe` on the input.",
            exc.report,
        ) from exc
    report = write_report.verification
    preview = media.make_browser_preview(output, Path(preview_dir)) if preview_dir is not None else None
    if not keep_folder:
        checkpoint.remove(folder)
    seconds = latest.seconds + time.perf_counter() - started
    emit(ProgressEvent("done", frames, frames, message=f"done in {seconds:.1f} s"))
    logger.info("job done: %d frames in %.1f s (model %.1f s), scene cuts at %s", frames, seconds,
                latest.model_seconds, list(latest.scene_cuts))
    return JobResult(output, preview, report, write_report, frames, seconds, latest.model_seconds, latest.seed,
                     tuple(latest.scene_cuts))


def _set_tiling(processor: FrameProcessor, job: JobPlan | None) -> None:
    """Hand the plan's tiling (fixed for the whole video) to an engine that tiles; None restores whole frames."""
    set_tiling = getattr(processor, "set_tiling", None)
    if set_tiling is not None:
        set_tiling(job.memory.tiling if job is not None and job.memory is not None else None)


def _device(processor: FrameProcessor) -> str:
    return str(processor.describe().get("device", "cpu"))


def _with_next(frames: Any) -> Any:
    """(frame, the frame after it or None) for each frame: a one-frame look-ahead for ``prefetch``."""
    iterator = iter(frames)
    current = next(iterator, None)
    while current is not None:
        upcoming = next(iterator, None)
        yield current, upcoming
        current = upcoming


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


def _check_frame(upscaled: np.ndarray, size: Any, engine: str, index: int, dtype: Any = np.uint8) -> None:
    """The engine's frame has the model's size and the input's dtype (uint16 for a deep source: never 8 bits)."""
    expected = (size.model_height, size.model_width, 3)
    if not isinstance(upscaled, np.ndarray) or upscaled.shape != expected or upscaled.dtype != dtype:
        got = (upscaled.shape, upscaled.dtype) if isinstance(upscaled, np.ndarray) else type(upscaled).__name__
        raise JobFailed(f"The {engine} engine returned {got} for frame {index}; expected a {np.dtype(dtype)} array "
                        f"of shape {expected}. This is a bug in the engine.")


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
