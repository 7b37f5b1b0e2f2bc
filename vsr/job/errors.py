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


class GPUCallTooLong(JobRefused):
    """On a ZeroGPU Space: not even one frame fits in one GPU call (a longer job runs as several
    calls). ``limit_seconds`` is the per-call limit, ``needed_seconds`` the reservation one frame
    would need, ``max_frames`` / ``max_seconds`` what one call can do (0)."""

    def __init__(self, message: str, *, limit_seconds: float, needed_seconds: int, max_frames: int,
                 max_seconds: float) -> None:
        super().__init__(message)
        self.limit_seconds = limit_seconds
        self.needed_seconds = needed_seconds
        self.max_frames = max_frames
        self.max_seconds = max_seconds

    def __reduce__(self) -> tuple:
        return (_gpu_call_too_long, (str(self), self.limit_seconds, self.needed_seconds, self.max_frames,
                                     self.max_seconds))


def _gpu_call_too_long(message: str, limit: float, needed: int, frames: int, seconds: float) -> GPUCallTooLong:
    return GPUCallTooLong(message, limit_seconds=limit, needed_seconds=needed, max_frames=frames, max_seconds=seconds)


class NotEnoughMemory(JobRefused):
    """The job's predicted peak memory exceeds the budget even with the smallest tiles (see
    ``vsr.job.memory``). ``needed_bytes`` / ``budget_bytes`` in bytes; ``largest`` the largest input
    (width, height) of the same shape that fits, or None when even a small one does not."""

    def __init__(self, message: str, *, needed_bytes: int, budget_bytes: int,
                 largest: tuple[int, int] | None) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.budget_bytes = budget_bytes
        self.largest = largest

    def __reduce__(self) -> tuple:
        return (_not_enough_memory, (str(self), self.needed_bytes, self.budget_bytes, self.largest))


def _not_enough_memory(message: str, needed: int, budget: int, largest: tuple[int, int] | None) -> NotEnoughMemory:
    return NotEnoughMemory(message, needed_bytes=needed, budget_bytes=budget, largest=largest)


class JobFailed(JobError, RuntimeError):
    """The job started and failed (the engine or the encoder raised); nothing was left behind."""


class OutOfMemory(JobFailed):
    """The device ran out of memory during the job (``frame`` is the frame index, None while loading
    or planning; ``device`` where; ``needed_bytes`` what the plan predicted, when known). Not a bug:
    the message names the fix (tiles, a memory limit, a lower precision, a smaller input)."""

    def __init__(self, message: str, *, frame: int | None, device: str, needed_bytes: int | None) -> None:
        super().__init__(message)
        self.frame = frame
        self.device = device
        self.needed_bytes = needed_bytes

    def __reduce__(self) -> tuple:
        return (_out_of_memory, (str(self), self.frame, self.device, self.needed_bytes))


def _out_of_memory(message: str, frame: int | None, device: str, needed: int | None) -> OutOfMemory:
    return OutOfMemory(message, frame=frame, device=device, needed_bytes=needed)


class VerificationFailed(JobFailed):
    """The finished output did not pass verification; ``report`` holds every check."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class JobCancelled(JobError):
    """The job was cancelled; every thread and file it opened was closed and its output removed.

    ``checkpoint`` is the folder where the work so far was kept (``done`` of ``total`` frames), so
    the job can be resumed; None when there was nothing to keep."""

    def __init__(self, message: str, *, checkpoint: object = None, done: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.done = done
        self.total = total

    def __reduce__(self) -> tuple:
        return (_job_cancelled, (str(self), self.checkpoint, self.done, self.total))


def _job_cancelled(message: str, checkpoint: object, done: int, total: int) -> JobCancelled:
    return JobCancelled(message, checkpoint=checkpoint, done=done, total=total)


class CheckpointError(JobError, ValueError):
    """A job's checkpoint cannot be used as asked. ``folder`` is the checkpoint's folder."""

    def __init__(self, message: str, folder: object = None) -> None:
        super().__init__(message)
        self.folder = folder

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.folder))


class CheckpointFound(CheckpointError):
    """A stopped job's checkpoint is there, and the job was started again without saying whether to
    continue it or start over."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint was made from another input, other options or another engine."""


class CheckpointUnreadable(CheckpointError):
    """The checkpoint cannot be read (damaged, or written by another version of this program)."""
