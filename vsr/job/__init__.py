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

import importlib
from typing import Any

# Each name is loaded from its module on first use (PEP 562): ``vsr.job.progress`` (the CLI's progress
# lines) and ``vsr.job.errors`` load without torch, so ``vsr --help`` and a mistyped flag answer at once.
_ERRORS = ("CheckpointError", "CheckpointFound", "CheckpointMismatch", "CheckpointUnreadable", "GPUCallTooLong",
           "InputNotFound", "JobCancelled", "JobError", "JobFailed", "JobRefused", "LimitExceeded", "TargetTooLarge",
           "TrimOutOfRange", "VerificationFailed")
_LAZY = {
    **{name: "vsr.job.errors" for name in _ERRORS},
    "JobCheckpoint": "vsr.job.checkpoint",
    "Estimator": "vsr.job.estimate", "estimator_for": "vsr.job.estimate",
    "JobPlan": "vsr.job.planning", "encode_settings": "vsr.job.planning", "plan": "vsr.job.planning",
    "preview_plan": "vsr.job.planning",
    "ProgressEvent": "vsr.job.progress",
    "CallLimit": "vsr.job.runner", "JobPaused": "vsr.job.runner", "JobResult": "vsr.job.runner",
    "finish_job": "vsr.job.runner", "run": "vsr.job.runner", "run_piece": "vsr.job.runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr.job' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
