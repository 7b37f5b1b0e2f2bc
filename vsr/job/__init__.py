"""One video job: plan it (cheap, pure), estimate it, run it as one streaming pass.

- ``planning``: ``plan(input, options, estimator=...) -> JobPlan``, ``preview_plan``, ZeroGPU reservations;
- ``estimate``: the time estimate (calibrations cached per device) and the ``Estimator`` a caller hands in;
- ``runner``: ``run(plan, output, ...) -> JobResult``, decode -> upscale -> encode -> verify; ``run_piece``
  (one piece of a job, up to a ``CallLimit``, e.g. one ZeroGPU call) and ``finish_job`` (join, verify);
- ``checkpoint``, ``segments``: what a stopped job needs to resume (``JobCheckpoint``), kept atomically;
- ``sizing``, ``scenes``, ``progress``, ``encode_thread``, ``resize``: the parts of a run;
- ``frames``: the same job over folders of still frames (``vsr frames``);
- ``errors``: ``JobError`` and its subclasses (refused before any work, failed, cancelled).

This layer uses ``media`` and ``vsr.model``; it never imports an interface (``vsr.cli``, ``vsr.web``, the app).
"""

from vsr.job.checkpoint import JobCheckpoint
from vsr.job.errors import (
    CheckpointError,
    CheckpointFound,
    CheckpointMismatch,
    CheckpointUnreadable,
    GPUCallTooLong,
    InputNotFound,
    JobCancelled,
    JobError,
    JobFailed,
    JobRefused,
    LimitExceeded,
    TargetTooLarge,
    TrimOutOfRange,
    VerificationFailed,
)
from vsr.job.estimate import Estimator, estimator_for
from vsr.job.planning import JobPlan, encode_settings, plan, preview_plan
from vsr.job.progress import ProgressEvent
from vsr.job.runner import CallLimit, JobPaused, JobResult, finish_job, run, run_piece

__all__ = [
    "CallLimit",
    "CheckpointError",
    "CheckpointFound",
    "CheckpointMismatch",
    "CheckpointUnreadable",
    "Estimator",
    "GPUCallTooLong",
    "InputNotFound",
    "JobCancelled",
    "JobError",
    "JobCheckpoint",
    "JobFailed",
    "JobPaused",
    "JobPlan",
    "JobRefused",
    "JobResult",
    "LimitExceeded",
    "ProgressEvent",
    "TargetTooLarge",
    "TrimOutOfRange",
    "VerificationFailed",
    "encode_settings",
    "estimator_for",
    "finish_job",
    "plan",
    "preview_plan",
    "run",
    "run_piece",
]
