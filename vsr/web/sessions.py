"""The web app's running state and its jobs, without Gradio: tested without a browser.

- ``ActiveJobs``: one cancel flag per browser session, so the Cancel button reaches its own job.
- ``NewestEvent``: progress from the job's thread to the page, never holding the job back.
- ``ModelStatus``: whether the diffusion model failed to load, and the notice that says why.
- ``job_events``: one job run in a worker thread, as a generator of progress and the result; under
  ZeroGPU it is the ``spaces.GPU`` function (``gpu_function``), so its arguments are picklable.
- ``WebJobs``: what the page's handlers call: plan (with the visible bicubic fallback), run (job
  folder, progress, cancel, clean-up), cancel. ``app.py`` makes one per page and maps its
  ``JobUpdate``s onto components.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsr import environment, job
from vsr.job.errors import JobCancelled, VerificationFailed
from vsr.job.progress import status_text
from vsr.model.errors import ModelLoadError
from vsr.options import UpscaleOptions
from vsr.web import folders, texts
from vsr.web.controls import job_options
from vsr.web.preview import before_after

logger = logging.getLogger(__name__)

KEEP_SECONDS = 24 * 3600
"""Uploads, cached results and job folders older than this are deleted."""
SAMPLE_SECONDS = 2.0
"""Length of the "Try a 2-second sample" piece."""
PREVIEW_INTERVAL_S = 0.5
"""The newest before/after picture is sent at most this often."""


class ActiveJobs:
    """One cancel flag per browser session: the Cancel button sets the flag of its own session's job.

    Thread-safe; the web app keeps one instance for the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event:
        """Register a new job for ``session`` and return its (clear) cancel flag."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

    def cancel(self, session: str) -> bool:
        """Ask the running job of ``session`` to stop; False when it has none."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event) -> None:
        """Forget ``session``'s job if ``flag`` is still the registered one."""
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]

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


def job_events(plan: Any, output: str, session: str) -> Iterator[tuple[str, Any]]:
    """Run ``plan`` into ``output`` and yield ``("progress", (event, newest_frames_event))`` while it
    runs, then ``("result", JobResult)``. Errors of the job re-raise here.

    Arguments are picklable (ZeroGPU runs this in a worker process; ``session`` names the visitor in
    its logs). Closing this generator (Cancel, or the visitor left) stops the job within a frame and
    waits for it.
    """
    cancel = threading.Event()
    newest = NewestEvent()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = job.run(plan, Path(output), on_progress=newest.put, cancel=cancel,
                                        preview_dir=Path(output).parent)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = error
        finally:
            newest.close()

    # copy_context: the job's thread sees the caller's context variables (Gradio's request context).
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="upscale-job", daemon=True)
    worker.start()
    try:
        for update in newest.updates(PREVIEW_INTERVAL_S):
            yield "progress", update
        worker.join()
    finally:
        if worker.is_alive():  # the generator was closed early
            logger.info("job of session %s stopped early; waiting for it to clean up", session)
            cancel.set()
            worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield "result", outcome["result"]


def gpu_duration(plan: Any, output: str, session: str) -> int:
    """ZeroGPU reservation (seconds) for ``plan``: its time estimate with a margin and loading time
    (``JobPlan.gpu_seconds``; the plan already refused a job whose reservation is over the limit)."""
    return int(plan.gpu_seconds)


def gpu_function(spaces_module: Any, events: Callable = job_events) -> Callable:
    """``events`` as ``spaces_module``'s GPU function, its duration from the plan (``gpu_duration``).
    ``spaces.GPU`` returns it unchanged outside ZeroGPU."""
    return spaces_module.GPU(duration=gpu_duration)(events)


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

    def plan(self, video: str, values: tuple, sample: bool = False) -> Planned:
        """Plan the job; when the diffusion model cannot load, record why and plan with bicubic instead.

        The fallback is never silent: the page shows the notice and switches the engine control to
        bicubic. With ``sample`` only a piece will run (``preview_plan``), so a whole video too long
        for one ZeroGPU call is not refused here (the piece's plan checks).
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

    def run(self, video: str | None, values: tuple, sample: bool, session: str) -> Iterator[JobUpdate]:
        """Run one job for the visitor, yielding what the page should show; errors propagate."""
        if not video:
            from vsr.options import OptionsError

            raise OptionsError("No video yet: upload one (or pick an example) first, then press Upscale.")
        yield JobUpdate(status=texts.STARTING, starting=True)  # planning can take a while (the model's first load)
        planned = self.plan(video, values, sample)
        if planned.fell_back:
            yield JobUpdate(notice=self.model.notice())
            raise ModelLoadError(f"{self.model.error} Nothing was started; press the button again to upscale "
                                 "with Bicubic.")
        plan = job.preview_plan(planned.plan, SAMPLE_SECONDS) if sample else planned.plan
        folders.prune_job_dirs(planned.options.output_dir, KEEP_SECONDS)
        job_dir = folders.new_job_dir(planned.options.output_dir)
        output = job_dir / folders.output_filename(Path(video).name, planned.options, plan.container_suffix)
        flag = self.active.start(session)
        keep = False
        try:
            yield JobUpdate(status="Starting…")
            result = yield from self._follow(plan, output, session, flag)
            keep = True
            yield JobUpdate(status=texts.done_text(result, plan), result=result,
                            report=texts.report_markdown(result, plan))
        except JobCancelled:
            logger.info("job on %s cancelled; removing %s", Path(video).name, job_dir)
            yield JobUpdate(status="Cancelled. Nothing was kept.")
        except VerificationFailed:
            keep = True  # its message tells the operator where the file is, for inspection
            raise
        except ModelLoadError as error:
            # On ZeroGPU the model first loads here, inside the GPU call (plans there never load it):
            # the page's notice then says why and offers bicubic, as when a plan fails to load it.
            if planned.options.engine != "bicubic":
                self.model.failed(texts.model_error_text(error))
            raise
        finally:
            self.active.finish(session, flag)
            if not keep:
                folders.remove_job_dir(job_dir)

    def _follow(self, plan: Any, output: Path, session: str, flag: threading.Event) -> Iterator[JobUpdate]:
        """The job's progress as updates; returns its result. Closing the events stops the job (its
        thread, or ZeroGPU's worker process, which cannot see ``flag``) and waits for it, before the
        job folder is cleaned up: on Cancel, and when the visitor leaves."""
        with contextlib.closing(self.events(plan, str(output), session)) as events:
            for kind, payload in events:
                if flag.is_set():
                    break
                if kind == "result":
                    return payload
                event, frames = payload
                pictures = before_after(frames.input_frame, frames.output_frame) if frames is not None else None
                status = status_text(event.stage, event.done, event.total, event.fps, event.eta_seconds,
                                     event.message)
                yield JobUpdate(status=status, pictures=pictures)
        raise JobCancelled("The job was cancelled; its partial output and temporary files were removed.")
