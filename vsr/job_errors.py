"""Errors of a job: refusals before any work, failures during it, and cancellation.

Each message names the file or value, the problem and the fix. The CLI maps them to exit codes
(``vsr.cli``), the web app to ``gr.Error``; nothing else translates them.
"""

from __future__ import annotations


class JobError(Exception):
    """Base of every job error."""


class JobRefused(JobError, ValueError):
    """The job cannot be done as asked (limits, a target size above 4x, a trim outside the video)."""


class InputNotFound(JobRefused):
    """The input path does not exist or is not a file."""


class LimitExceeded(JobRefused):
    """The input or output exceeds a configured limit (pixels, duration)."""


class TargetTooLarge(JobRefused):
    """The requested output size needs more than the model's 4x."""


class TrimOutOfRange(JobRefused):
    """``start`` lies at or past the end of the video, or the range holds no frame."""


class JobFailed(JobError, RuntimeError):
    """The job started and failed (the engine or the encoder raised); nothing was left behind."""


class VerificationFailed(JobFailed):
    """The finished output did not pass verification; ``report`` holds every check."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class JobCancelled(JobError):
    """The job was cancelled; every thread and file it opened was closed and its output removed."""
