"""The web app's running state and its jobs, without Gradio: tested without a browser.

- ``ActiveJobs``: one cancel flag per browser session, so the Cancel button reaches its own job.
- ``NewestEvent``: progress from the job's thread to the page, never holding the job back.
- ``ModelStatus``: whether the diffusion model failed to load, and the notice that says why.
- ``job_events``: one job (or one GPU call of it, up to a ``Handover``'s frames) run in a worker
  thread, as a generator of progress and the result or the checkpoint for the next call; under
  ZeroGPU it is the ``spaces.GPU`` function (``gpu_function``), so its arguments are picklable.
- ``WebJobs``: what the page's handlers call: plan (with the visible bicubic fallback), run (job
  folder, GPU calls one after another, progress, cancel, clean-up), resume (``vsr.web.resume``),
  cancel. ``app.py`` makes one per page and maps its ``JobUpdate``s onto components.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from media.ts_chunks import list_chunks
from vsr import environment, job
from vsr.job import checkpoint
from vsr.job.errors import JobCancelled, VerificationFailed
from vsr.job.result_stream import ERROR_FILE, clean_stale
from vsr.model import engines
from vsr.job.progress import status_text
from vsr.model.errors import ModelLoadError
from vsr.options import OptionsError, UpscaleOptions
from vsr.web import folders, resume, texts
from vsr.web.controls import job_options
from vsr.web.preview import before_after

logger = logging.getLogger(__name__)

KEEP_SECONDS = 24 * 3600
"""Uploads, cached results and job folders older than this are deleted."""
SAMPLE_SECONDS = 2.0
"""Length of the "Try a 2-second sample" piece."""
PREVIEW_INTERVAL_S = 0.5
"""The newest before/after picture is sent at most this often."""
STREAM_FOLDER = "stream"
"""The job folder's subfolder of the streamed result's chunks (``vsr.job.result_stream``)."""
STREAM_PAGE_BYTES = 512 * 1024 * 1024
"""The most of a job's streamed result handed to its page. Gradio keeps every streamed chunk in the
server's memory until the visitor leaves, so a long job's stream stops there, and the page says so;
the verified file still replaces it at the end."""


DROPPED_MEMORY_S = 300.0
"""How long a job whose connection closed without a cancel (kept for Resume) stays linked to its page's
session: the closed tab's unload event can come after the job's generator was closed (Gradio notices a
closed heartbeat up to its heartbeat interval later), and then it removes that job as a cancel would."""


class ActiveJobs:
    """One cancel flag per browser session: the Cancel button sets the flag of its own session's job.

    Thread-safe; the web app keeps one instance for the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}
        self._codes: dict[str, str] = {}  # session -> the resume code of its running job
        self._dropped: dict[str, tuple[Path, float]] = {}  # session -> (kept job folder, when it was kept)

    def start(self, session: str, code: str = "") -> threading.Event:
        """Register a new job for ``session`` (its resume ``code``) and return its (clear) cancel flag."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
            self._codes[session] = code
        return flag

    def runs(self, code: str) -> bool:
        """Whether the job of resume ``code`` is running in this process."""
        with self._lock:
            return code in self._codes.values()

    def cancel(self, session: str) -> bool:
        """Ask the running job of ``session`` to stop; False when it has none."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event, dropped: Path | None = None) -> bool:
        """Forget ``session``'s job if ``flag`` is still the registered one. ``dropped`` is its folder when
        its connection closed with a checkpoint left: unless a cancel came, the folder is kept for Resume
        (True) and remembered, so that the page's unload event, if it comes later, still removes it."""
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]
                self._codes.pop(session, None)
            now = time.monotonic()
            self._dropped = {s: kept for s, kept in self._dropped.items() if now - kept[1] < DROPPED_MEMORY_S}
            if dropped is None or flag.is_set():
                return False
            self._dropped[session] = (dropped, now)
            return True

    def left(self, session: str) -> tuple[bool, Path | None]:
        """``session``'s page was closed: cancel its running job (``(True, None)``), or hand back the
        folder of its job that was kept after its connection closed moments ago (``(False, folder)``),
        for the caller to remove; ``(False, None)`` when there is neither."""
        with self._lock:
            flag = self._flags.get(session)
            if flag is not None:
                flag.set()
                return True, None
            folder, since = self._dropped.pop(session, (None, 0.0))
            if folder is None or time.monotonic() - since >= DROPPED_MEMORY_S or folder.name in self._codes.values():
                return False, None
            return False, folder

    def flag(self, session: str) -> threading.Event | None:
        """The cancel flag of ``session``'s running job, or None."""
        with self._lock:
            return self._flags.get(session)

    def running(self) -> int:
        with self._lock:
            return len(self._flags)


class NewestEvent:
    """Hands progress events from the job's thread to the page, keeping only the newest ones.

    The job calls ``put`` for every event and never waits; the page iterates ``updates``, which
    coalesces what arrived while the page was busy, so a slow browser never holds the job back.
    Events are ``vsr.job.progress.ProgressEvent``s (``input_frame`` / ``output_frame`` HWC uint8 RGB).
    """

    def __init__(self, min_interval: float = 0.1) -> None:
        self._cond = threading.Condition()
        self._event: Any = None
        self._frames: Any = None  # newest event that carried both frames
        self._version = 0
        self._closed = False
        self._min_interval = min_interval

    def put(self, event: Any) -> None:
        """Record ``event`` (called from the job's thread)."""
        with self._cond:
            self._event = event
            if getattr(event, "input_frame", None) is not None and getattr(event, "output_frame", None) is not None:
                self._frames = event
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """No more events will come (the job ended, one way or another)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def updates(self, frame_interval: float) -> Iterator[tuple[Any, Any]]:
        """Yield ``(newest_event, frames_event_or_None)`` until ``close``.

        The second item is the newest event with frames, at most once per ``frame_interval`` seconds,
        and always the last one before the end, so the page ends on the final frame.
        """
        seen = 0
        sent_frames: Any = None
        last_frames_at = -math.inf
        last_yield_at = -math.inf
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._version != seen or self._closed)
                pause = self._min_interval - (time.monotonic() - last_yield_at)
                if pause > 0 and not self._closed:
                    self._cond.wait(pause)  # let a few more events arrive; keep only the newest
                closed = self._closed
                fresh = self._version != seen
                unsent = self._frames is not None and self._frames is not sent_frames
                if not fresh and not (closed and unsent):
                    return  # closed, and everything has been handed over
                seen, event, frames = self._version, self._event, self._frames
            now = time.monotonic()
            due = frames is not sent_frames and (closed or now - last_frames_at >= frame_interval)
            if due:
                sent_frames, last_frames_at = frames, now
            last_yield_at = now
            yield event, (frames if due else None)


@dataclass
class ModelStatus:
    """Whether the diffusion model failed to load in this process, and the message that says why."""

    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, message: str) -> None:
        with self.lock:
            self.error = message

    def loaded(self) -> None:
        with self.lock:
            self.error = None

    def notice(self) -> str:
        """Markdown for the notice box ("" when the model is fine or not tried yet)."""
        with self.lock:
            if self.error is None:
                return ""
            return ("### The Stream-DiffVSR model could not be loaded\n\n"
                    f"{self.error}\n\nThe **Bicubic** engine still works; it has been selected for you.")


# ---------------------------------------------------------------------------------------------
# The job, run in a worker thread; under ZeroGPU this generator is the GPU function.


@dataclass(frozen=True)
class Handover:
    """What one GPU call of a job is handed (picklable: ZeroGPU runs the call in another process).

    ``checkpoint_dir``: the job folder's checkpoint, where the segments are; ``checkpoint``: the
    previous call's ``JobCheckpoint`` (plain data and CPU tensors; None: from the beginning);
    ``frames``: stop after this many frames (None: to the end); ``finish``: join and verify at the end
    (off under ZeroGPU: the main process does that without the GPU); ``stream``: the job folder's
    ``stream/``, where the frames are also written as chunks the page plays while the job runs.
    """

    checkpoint_dir: str
    checkpoint: Any = None
    frames: int | None = None
    finish: bool = True
    stream: str | None = None


def threaded(work: Callable[[Callable, threading.Event], Any], name: str) -> Iterator[tuple[str, Any]]:
    """Run ``work(on_progress, cancel)`` in a worker thread; yield ``("progress", (event,
    newest_frames_event))`` while it runs, then ``("outcome", its return value)``. Its error re-raises
    here. Closing this generator stops the work within a frame (``cancel``) and waits for it."""
    cancel = threading.Event()
    newest = NewestEvent()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(newest.put, cancel)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = error
        finally:
            newest.close()

    # copy_context: gr.Progress(track_tqdm=True) then also sees the model download's tqdm bars.
    worker = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)
    worker.start()
    try:
        for update in newest.updates(PREVIEW_INTERVAL_S):
            yield "progress", update
        worker.join()
    finally:
        if worker.is_alive():  # the generator was closed early
            logger.info("%s stopped early; waiting for it to clean up", name)
            cancel.set()
            worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield "outcome", outcome["value"]


def job_events(plan: Any, output: str, session: str, handover: Handover | None = None) -> Iterator[tuple[str, Any]]:
    """Run ``plan`` into ``output`` and yield ``("progress", (event, newest_frames_event))`` while it
    runs, then ``("result", JobResult)``, or ``("paused", JobCheckpoint)`` when this call ends at
    ``handover.frames`` (or, with ``finish`` off, once every frame is done). Errors re-raise here.

    Arguments are picklable (ZeroGPU runs this in a worker process; ``session`` names the visitor in
    its logs). Without ``handover`` the whole job runs in one go with no checkpoint kept. Closing
    this generator (Cancel, or the visitor left) stops the job within a frame and waits for it.
    Under ZeroGPU the engine is released at the end of the call: nothing of the GPU outlives it.
    """
    started = time.monotonic()
    seconds = gpu_duration(plan, output, session, handover) if handover is not None and handover.frames else None

    def work(on_progress: Callable, cancel: threading.Event) -> Any:
        if handover is None:
            return job.run(plan, Path(output), on_progress=on_progress, cancel=cancel, preview_dir=Path(output).parent)
        limit = job.CallLimit(frames=handover.frames, deadline=started + seconds if seconds else None)
        try:
            return job.run_piece(plan, Path(output), on_progress=on_progress, cancel=cancel,
                                 preview_dir=Path(output).parent, checkpoint_dir=handover.checkpoint_dir,
                                 resume=handover.checkpoint, limit=limit, finish=handover.finish,
                                 stream_dir=handover.stream)
        finally:
            if environment.on_zero_gpu():
                engines.clear_processors()  # the model lives only inside the GPU call

    for kind, payload in threaded(work, "upscale-job"):
        if kind == "progress":
            yield kind, payload
        elif isinstance(payload, job.JobPaused):
            yield "paused", payload.checkpoint
        else:
            yield "result", payload


def cluster_events(pool: Any) -> Callable:
    """``job_events`` for a Ray cluster (``STREAM_DIFFVSR_CLUSTER``): the job runs on one of ``pool``'s
    workers (``vsr.job.parallel.WorkerPool``), its progress and pictures come back, closing the events
    (Cancel, the visitor left) stops it on the worker; the result is joined and verified here."""

    def events(plan: Any, output: str, session: str, handover: Handover | None = None) -> Iterator[tuple[str, Any]]:
        out = Path(output)
        pieces = Path(handover.checkpoint_dir) if handover is not None else out.parent / "pieces"

        def work(on_progress: Callable, cancel: threading.Event) -> Any:
            return pool.run(plan, out, pieces, on_progress=on_progress, cancel=cancel, preview_dir=out.parent)

        for kind, payload in threaded(work, "cluster-job"):
            yield ("progress", payload) if kind == "progress" else ("result", payload)

    return events


def gpu_duration(plan: Any, output: str, session: str, handover: Handover | None = None) -> int:
    """ZeroGPU reservation (seconds) of one GPU call: for the frames ``handover`` gives it (at most
    ``plan.max_frames_per_call``), its time estimate with a margin and loading time; for the whole
    plan without ``handover``."""
    if handover is None or handover.frames is None:
        return int(plan.gpu_seconds)
    done = handover.checkpoint.next_index if handover.checkpoint is not None else 0
    return int(plan.call_seconds(max(1, min(handover.frames, plan.frames - done))))


def gpu_function(spaces_module: Any, events: Callable = job_events) -> Callable:
    """``events`` as ``spaces_module``'s GPU function, its duration from the plan (``gpu_duration``).
    ``spaces.GPU`` returns it unchanged outside ZeroGPU."""
    return spaces_module.GPU(duration=gpu_duration)(events)


def finish_events(plan: Any, output: str, folder: str, saved: Any) -> Iterator[tuple[str, Any]]:
    """Join and verify a job whose every frame is done (``JobCheckpoint`` ``saved``), without the
    engine or the GPU: ``("progress", ...)`` then ``("result", JobResult)``."""
    def work(on_progress: Callable, cancel: threading.Event) -> Any:
        return job.finish_job(plan, Path(output), Path(folder), saved, on_progress=on_progress,
                              preview_dir=Path(output).parent)

    for kind, payload in threaded(work, "finish-job"):
        yield ("progress", payload) if kind == "progress" else ("result", payload)


class StreamFeed:
    """The streamed result's chunks in ``folder`` as page updates, each chunk once, in order, with
    what the stream is doing in words (``texts.stream_note``: how much is ready, and how fast the
    upscaler is against real time). The folder is shared by every GPU call of the job."""

    def __init__(self, folder: Path, plan: Any) -> None:
        self.folder = folder
        self.plan = plan
        self.sent = 0  # frames of the chunks handed over
        self.ready = 0.0  # seconds of video in them
        self.bytes = 0  # the size of the chunks handed over
        self.capped = False  # the next chunk would have passed STREAM_PAGE_BYTES: no more are handed over
        self._note: str | None = None
        self._speed: float | None = None

    def updates(self, event: Any) -> Iterator[JobUpdate]:
        """A ``JobUpdate`` per new chunk, then the note when it changed (``event``: the newest progress
        event, for the speed; None: none)."""
        if event is not None and event.stage == "upscaling" and event.fps:
            self._speed = event.fps / float(self.plan.rate)
        for chunk in list_chunks(self.folder):
            if self.capped:
                break
            if chunk.first < self.sent:
                continue
            if chunk.first > self.sent:
                logger.warning("stream chunk %s leaves a gap after frame %d", chunk.path.name, self.sent)
            size = chunk.path.stat().st_size
            if self.bytes + size > STREAM_PAGE_BYTES:
                logger.info("the streamed result stops at %.1f s: %d bytes handed to the page", self.ready, self.bytes)
                self.capped = True
                break
            self.sent, self.ready, self.bytes = chunk.end_index, chunk.start + chunk.duration, self.bytes + size
            yield JobUpdate(chunk=str(chunk.path))
        error = self.folder / ERROR_FILE
        note = texts.stream_note(self.ready, float(self.plan.frames / self.plan.rate), self._speed,
                                 error.read_text(encoding="utf-8") if error.exists() else None,
                                 capped_bytes=STREAM_PAGE_BYTES if self.capped else None)
        if note != self._note:
            self._note = note
            yield JobUpdate(stream_note=note)


# ---------------------------------------------------------------------------------------------
# What the page's handlers call.


@dataclass(frozen=True)
class JobUpdate:
    """One change of the page while a job runs (None: leave that part as it is)."""

    status: str | None = None
    pictures: tuple[np.ndarray, np.ndarray] | None = None  # (before, after) for the slider
    result: Any = None  # the finished JobResult
    report: str | None = None  # its verification report, for the page
    starting: bool = False  # clear the previous job's result
    notice: str | None = None  # the model notice to show, and switch the engine to bicubic
    chunk: str | None = None  # the next chunk of the streamed result (a .ts file), for the page's player
    stream_note: str | None = None  # what the stream is doing, in words (texts.stream_note)
    stream_ended: bool = False  # the job ended: the stream player gives way to the result's


@dataclass(frozen=True)
class Planned:
    plan: Any
    options: UpscaleOptions
    fell_back: bool


class WebJobs:
    """The web app's jobs: planning with a visible fallback, running, cancelling, job folders.

    ``events`` is the job generator (``job_events``, or its ZeroGPU GPU function). One instance per
    page (``app.build_demo``); it holds the page's only state (``model``, ``active``).
    """

    def __init__(self, settings: UpscaleOptions, *, events: Callable = job_events,
                 zero_gpu: bool | None = None) -> None:
        self.settings = settings
        self.events = events
        self.zero_gpu = environment.on_zero_gpu() if zero_gpu is None else zero_gpu
        self.model = ModelStatus()
        self.active = ActiveJobs()
        self.pool: Any = None
        self.concurrency = 1  # jobs at once: one on this process's device, or one per worker of the cluster
        if settings.cluster and not self.zero_gpu:
            from vsr.job.parallel import WorkerPool

            self.pool = WorkerPool(settings.cluster)
            self.concurrency = self.pool.workers  # connects now: a wrong address stops the app at start
            self.events = cluster_events(self.pool)

    def plan(self, video: str, values: tuple, sample: bool = False) -> Planned:
        """Plan the job; when the diffusion model cannot load, record why and plan with bicubic instead.

        The fallback is never silent: the page shows the notice and switches the engine control to
        bicubic. With ``sample`` only a piece will run (``preview_plan``), so what the whole video
        would need on ZeroGPU is not checked here (the piece's plan checks).
        """
        options = job_options(self.settings, values)
        try:
            planned = self._plan(video, options, sample)
        except ModelLoadError as error:
            if options.engine == "bicubic":
                raise
            self.model.failed(texts.model_error_text(error))
            options = options.replace(engine="bicubic")
            return Planned(self._plan(video, options, sample), options, True)
        if options.engine != "bicubic":
            self.model.loaded()
        return Planned(planned, options, False)

    def _plan(self, video: str, options: UpscaleOptions, sample: bool) -> Any:
        estimator = job.estimator_for(options, zero_gpu=self.zero_gpu)
        return job.plan(Path(video), options, estimator=estimator, zero_gpu=self.zero_gpu, piece_only=sample)

    def cancel(self, session: str) -> bool:
        return self.active.cancel(session)

    def left(self, session: str) -> bool:
        """The visitor of ``session`` closed the page: stop their job, or remove the job that was kept for
        Resume when its connection closed just before (a left visitor's job is not resumable)."""
        cancelled, dropped = self.active.left(session)
        if dropped is not None:
            logger.info("the visitor of job %s left: its checkpoint is removed", dropped.name)
            folders.remove_job_dir(dropped)
        return cancelled or dropped is not None

    def run(self, video: str | None, values: tuple, sample: bool, session: str,
            code: str | None = None) -> Iterator[JobUpdate]:
        """Run one job for the visitor, yielding what the page should show; errors propagate.

        ``code``: the resume code the page already keeps for this job (``new_code``); the job folder
        gets that name (a new one when it is missing or taken) and the first status line shows it.
        """
        if not video:
            raise OptionsError("No video yet: upload one (or pick an example) first, then press Upscale.")
        yield JobUpdate(status=texts.STARTING, starting=True)  # planning can take a while (the model's first load)
        planned = self.plan(video, values, sample)
        if planned.fell_back:
            yield JobUpdate(notice=self.model.notice())
            raise ModelLoadError(f"{self.model.error} Nothing was started; press the button again to upscale "
                                 "with Bicubic.")
        plan = job.preview_plan(planned.plan, SAMPLE_SECONDS) if sample else planned.plan
        folders.prune_job_dirs(planned.options.output_dir, KEEP_SECONDS)
        job_dir = folders.new_job_dir(planned.options.output_dir, code)
        output = job_dir / folders.output_filename(Path(video).name, planned.options, plan.container_suffix)
        resume.write_record(job_dir, resume.JobRecord(
            job_dir.name, str(Path(video)), Path(video).name, checkpoint.file_fingerprint(Path(video)),
            tuple(values), sample, output.name))
        yield from self._execute(plan, planned.options, job_dir, output, session, None)

    def resume(self, video: str | None, code: str | None, session: str) -> Iterator[JobUpdate]:
        """Go on with the interrupted job of resume ``code`` (a server restart, a dropped connection),
        from its checkpoint, with the settings it was started with; ``video`` is needed only when the
        server no longer has the upload. Raises ``ResumeRefused`` saying why it cannot."""
        root = self.settings.output_dir
        job_dir, record, saved = resume.find(root, code)
        if self.active.runs(job_dir.name):
            raise resume.ResumeRefused(f"The job {job_dir.name} is running; follow it on the page that started it.")
        source = resume.input_for(record, video)
        planned = self.plan(str(source), record.values, record.sample)
        if planned.fell_back:
            raise ModelLoadError(f"{self.model.error} The job was started with Stream-DiffVSR; it can go on only "
                                 "with it.")
        plan = job.preview_plan(planned.plan, SAMPLE_SECONDS) if record.sample else planned.plan
        checkpoint.check(saved, plan, resume.checkpoint_dir(job_dir))
        yield from self._execute(plan, planned.options, job_dir, job_dir / record.output, session, saved)

    def interrupted(self, code: str | None) -> str:
        """The page's notice about ``code``'s interrupted job, "" when there is none (or it runs here)."""
        if code and self.active.runs(code):
            return ""
        return resume.interrupted(self.settings.output_dir, code)

    @staticmethod
    def new_code() -> str:
        """A resume code for the next job (the page keeps it in the browser before the job starts)."""
        return folders.new_job_name()

    def _execute(self, plan: Any, options: UpscaleOptions, job_dir: Path, output: Path, session: str,
                 saved: Any) -> Iterator[JobUpdate]:
        """Run (or go on with) the job in ``job_dir``; keep the folder when it finished, or when it
        stopped without a cancel and a checkpoint is left (it can be resumed), else remove it."""
        flag = self.active.start(session, job_dir.name)
        keep = closed = False
        if saved is not None:  # chunks made after the checkpoint are made again
            clean_stale(job_dir / STREAM_FOLDER, saved.next_index)
        try:
            first = resume.started_text(job_dir.name) if saved is None else resume.resumed_text(saved, job_dir.name)
            yield JobUpdate(status=first, starting=True)
            result = yield from self._follow(plan, output, session, flag, resume.checkpoint_dir(job_dir), saved,
                                             job_dir / STREAM_FOLDER)
            keep = True
            yield JobUpdate(stream_ended=True)
            yield JobUpdate(status=texts.done_text(result, plan), result=result,
                            report=texts.report_markdown(result, plan))
        except JobCancelled:
            logger.info("job on %s cancelled; removing %s", plan.input.name, job_dir)
            folders.remove_job_dir(job_dir)  # before the page says that nothing was kept
            yield JobUpdate(stream_ended=True)
            yield JobUpdate(status="Cancelled. Nothing was kept.")
        except VerificationFailed:
            keep = True  # its message tells the operator where the file is, for inspection
            raise
        except ModelLoadError as error:
            # On ZeroGPU the model first loads here, inside the GPU call (plans there never load it):
            # the page's notice then says why and offers bicubic, as when a plan fails to load it.
            if options.engine != "bicubic":
                self.model.failed(texts.model_error_text(error))
            raise
        except GeneratorExit:
            closed = True  # the server is stopping or the connection dropped: not the visitor's cancel
            raise
        finally:
            dropped = job_dir if closed and checkpoint.exists(resume.checkpoint_dir(job_dir)) else None
            resumable = self.active.finish(session, flag, dropped)
            if resumable:
                logger.info("job %s stopped without a cancel; its checkpoint is kept for Resume", job_dir.name)
            elif not keep:
                if job_dir.exists():  # a cancelled job's folder is gone already
                    folders.remove_job_dir(job_dir)
            else:  # the page holds the chunks it played; the verified file replaces them
                shutil.rmtree(job_dir / STREAM_FOLDER, ignore_errors=True)

    def _follow(self, plan: Any, output: Path, session: str, flag: threading.Event, folder: Path,
                saved: Any, stream: Path | None = None) -> Iterator[JobUpdate]:
        """The job's progress as updates, call after call; returns its result.

        Elsewhere one call runs the whole job. Under ZeroGPU each GPU call upscales at most
        ``plan.max_frames_per_call`` frames and hands its checkpoint (``"paused"``) to the next; the
        last one's checkpoint is joined and verified here, without the GPU. Closing the events stops
        the job (its thread, or ZeroGPU's worker process, which cannot see ``flag``) and waits for
        it, before the job folder is cleaned up: on Cancel, and when the visitor leaves. The chunks of
        the streamed result (``stream``) are handed to the page as they appear, call after call."""
        call = 0
        feed = StreamFeed(stream, plan) if stream is not None else None
        while True:
            call += 1
            if flag.is_set():
                break
            if saved is not None and saved.complete:
                return (yield from self._updates(finish_events(plan, str(output), str(folder), saved), flag, None,
                                                 feed))
            handover = Handover(str(folder), saved, plan.max_frames_per_call if self.zero_gpu else None,
                                finish=not self.zero_gpu, stream=str(stream) if stream is not None else None)
            calls = f"GPU call {call} of {max(call, plan.gpu_calls or 1)}" if self.zero_gpu else None
            outcome = yield from self._updates(self.events(plan, str(output), session, handover), flag, calls, feed)
            if outcome is None:
                break
            if not isinstance(outcome, job.JobCheckpoint):
                return outcome
            saved = outcome
        raise JobCancelled("The job was cancelled; its partial output and temporary files were removed.")

    def _updates(self, events: Iterator[tuple[str, Any]], flag: threading.Event,
                 calls: str | None, feed: StreamFeed | None = None) -> Iterator[JobUpdate]:
        """One call's events as updates; returns its result or checkpoint (None: cancelled)."""
        outcome = None
        with contextlib.closing(events):
            for kind, payload in events:
                if flag.is_set():
                    return None
                if kind in ("result", "paused"):
                    outcome = payload  # the last item: let the call end by itself
                    continue
                event, frames = payload
                pictures = before_after(frames.input_frame, frames.output_frame) if frames is not None else None
                status = status_text(event.stage, event.done, event.total, event.fps, event.eta_seconds,
                                     event.message)
                yield JobUpdate(status=f"{calls} · {status}" if calls else status, pictures=pictures)
                if feed is not None:
                    yield from feed.updates(event)
        if feed is not None and outcome is not None:
            yield from feed.updates(None)  # the chunks the call wrote last
        return outcome
