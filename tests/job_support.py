"""Helpers shared by the job and CLI tests: engine wrappers that record or fail, and leak checks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psutil

import media
from vsr import job
from vsr.model.bicubic import BicubicUpscaler
from vsr.model.protocol import FrameProcessor
from vsr.options import UpscaleOptions


def plan(input: str | Path, options: UpscaleOptions, *, processor: FrameProcessor | None = None,
         **kwargs: object) -> job.JobPlan:
    """``vsr.job.plan`` with the estimator an interface would hand in: ``processor`` (default: the
    shared engine for ``options``) timed on this device, or the cached one on ZeroGPU."""
    zero_gpu = kwargs.get("zero_gpu")
    if zero_gpu is None:
        from vsr import environment

        zero_gpu = environment.on_zero_gpu()
    estimator = job.estimator_for(options, processor, zero_gpu=bool(zero_gpu))
    return job.plan(input, options, estimator=estimator, **kwargs)


class RecordingEngine(BicubicUpscaler):
    """The real bicubic engine that also records every call: ("start", seed) / ("reset",) / ("process", n)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.processed = 0

    def start_stream(self, seed: int | None = None) -> int:
        used = super().start_stream(seed)
        self.calls.append(("start", used))
        self.processed = 0
        return used

    def reset(self) -> None:
        self.calls.append(("reset", self.processed))
        super().reset()

    def process(self, rgb: np.ndarray) -> np.ndarray:
        self.calls.append(("process", self.processed))
        self.processed += 1
        return super().process(rgb)

    def resets(self) -> list[int]:
        """Frame numbers (0 = first of the stream) that came right after a reset."""
        return [call[1] for call in self.calls if call[0] == "reset"]


class FailingEngine(BicubicUpscaler):
    """Bicubic that raises on frame ``fail_at`` of a stream (a model crash mid-job)."""

    def __init__(self, fail_at: int, error: BaseException | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.error = error or RuntimeError("CUDA error: device-side assert triggered (simulated)")
        self.processed = 0

    def start_stream(self, seed: int | None = None) -> int:
        self.processed = 0
        return super().start_stream(seed)

    def process(self, rgb: np.ndarray) -> np.ndarray:
        if self.processed == self.fail_at:
            raise self.error
        self.processed += 1
        return super().process(rgb)


class OutOfMemoryEngine(FailingEngine):
    """Bicubic whose frame ``fail_at`` runs out of memory: ``error`` is raised (default: CUDA's
    ``torch.OutOfMemoryError``), as a model too large for the device would."""

    def __init__(self, fail_at: int, error: BaseException | None = None) -> None:
        import torch

        super().__init__(fail_at, error or torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.6 GiB total capacity) (simulated)"))


class CancellingEngine(BicubicUpscaler):
    """Bicubic that sets ``cancel`` while processing frame ``cancel_at`` (a user pressing Stop)."""

    def __init__(self, cancel: threading.Event, cancel_at: int) -> None:
        super().__init__()
        self.cancel = cancel
        self.cancel_at = cancel_at
        self.processed = 0

    def start_stream(self, seed: int | None = None) -> int:
        self.processed = 0
        return super().start_stream(seed)

    def process(self, rgb: np.ndarray) -> np.ndarray:
        if self.processed == self.cancel_at:
            self.cancel.set()
        self.processed += 1
        return super().process(rgb)


def decode(path: Path) -> list[media.Frame]:
    """Every frame of ``path`` through the media reader."""
    with media.FrameReader(path) as reader:
        return list(reader)


def files_under(folder: Path) -> list[Path]:
    """Every file under ``folder`` (hidden ones included), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def open_files_under(folder: Path) -> list[str]:
    """Paths under ``folder`` this process still has open."""
    root = str(folder.resolve())
    return [f.path for f in psutil.Process().open_files() if f.path.startswith(root)]


# Process-wide daemons that libraries start once and keep (tqdm's monitor, Gradio's analytics worker).
LIBRARY_THREADS = ("tqdm_monitor", "_telemetry_worker")


def job_threads() -> set[str]:
    """Names of live threads that belong to a job (decode, encode, or the media side streams): every
    live thread but the main one and the libraries' own daemons."""
    return {t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
            and not any(name in t.name for name in LIBRARY_THREADS)}


def isolate_environment(monkeypatch, tmp_path: Path, **variables: str) -> None:
    """Clear every STREAM_DIFFVSR_* variable, point the temp and cache dirs into ``tmp_path``, set ``variables``."""
    import os

    for name in list(os.environ):
        if name.startswith("STREAM_DIFFVSR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STREAM_DIFFVSR_TMP_DIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("STREAM_DIFFVSR_CACHE_DIR", str(tmp_path / "cache"))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
