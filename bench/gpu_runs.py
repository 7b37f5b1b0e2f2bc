"""bench/gpu.py's shared context and one measured run (a fresh engine, timed frame by frame)."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.gpu_settings import PRECISIONS, WARM_FRAMES
from bench.gpu_model import Master, Timeline, clip, make_engine, run_stream

logger = logging.getLogger("bench.gpu")

class OutOfTime(BaseException):
    """The hard time limit fired (a BaseException, so no phase's error handling swallows it)."""


@dataclass
class Context:
    """Everything the phases share; ``results`` is what lands in gpu.json."""

    device: torch.device
    master: Master
    sizes: dict[str, tuple[int, int]]
    frames: int
    drift_frames: int
    job_frames: int
    deadline: float
    cache_dir: Path
    smoke: bool
    results: dict[str, Any]
    save: Callable[[], None]
    speeds: dict[tuple[str, str], float] = field(default_factory=dict)
    only: tuple[str, ...] = PRECISIONS
    references: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main_precision(self) -> str:
        """The precision of the per-switch and compile phases: auto's (fp16) on CUDA, fp32 on a CPU."""
        return "fp16" if self.cuda else "fp32"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if (self.cuda or p != "fp16") and p in self.only]

    def guess(self, label: str, precision: str, frames: int) -> float:
        """Seconds a run of ``frames`` frames should take, from the eager figures so far."""
        speed = self.speeds.get((label, precision))
        if speed is None:
            h, w = self.sizes[label]
            speed = (0.35 if self.cuda else 3e-4) * (h * w) / (180 * 320) * (3 if precision == "fp32" else 1)
        return 2.0 + 1.3 * speed * (frames + WARM_FRAMES)

    def phase(self, name: str) -> dict[str, Any]:
        return self.results["phases"].setdefault(name, {"runs": {}})

    def compare(self, result: dict[str, Any], label: str, precision: str, *, reference: bool = False) -> None:
        """Add the 8-bit deviation of ``result``'s outputs from the plain path's at this size and
        precision (``vs_eager_8bit``), or keep them as that reference."""
        if reference:
            self.references[(label, precision)] = result["outputs"]
        elif (label, precision) in self.references:
            result["vs_eager_8bit"] = deviation(result["outputs"], self.references[(label, precision)])


def deviation(outputs: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, float]:
    """8-bit |difference| over the frames both have: the largest and the mean."""
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(outputs, reference)]
    return {"frames": len(diffs), "max": int(max(d.max() for d in diffs)),
            "mean": round(float(np.mean([d.mean() for d in diffs])), 4)}


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(ctx: Context, phase: str, key: str, precision: str, optimisations: str, label: str, *,
            frames: int | None = None, timeline: bool = False, keep: bool = False,
            need: float | None = None) -> dict[str, Any] | None:
    """One run in a fresh engine, recorded under ``phase``/``key``; None when skipped or failed."""
    runs = ctx.phase(phase)["runs"]
    frames = frames or ctx.frames + WARM_FRAMES
    need = need if need is not None else ctx.guess(label, precision, frames)
    if ctx.left() < need:
        runs[key] = {"skipped": f"needs about {need:.0f} s, {max(ctx.left(), 0):.0f} s left"}
        return None
    engine = None
    try:
        engine = make_engine(ctx.master, precision, optimisations, ctx.cache_dir)
        recorder = Timeline(ctx.cuda) if timeline else None
        if recorder is not None:
            recorder.install(engine)
        h, w = ctx.sizes[label]
        result = run_stream(engine, clip(h, w, frames + 1), timeline=recorder, keep=True)
        result.update(engine_facts(engine), precision=precision, size=label, lr=f"{w}x{h}", hr=f"{4 * w}x{4 * h}")
        ctx.compare(result, label, precision, reference=phase == "eager")
    except Exception as exc:  # noqa: BLE001 - one failed configuration must not end the benchmark
        logger.exception("run %s/%s failed", phase, key)
        runs[key] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}", "optimisations": optimisations}
        return None
    finally:
        del engine
        release()
    if not keep:
        result.pop("outputs")
    runs[key] = {k: v for k, v in result.items() if k != "outputs"}
    logger.info("%s %s: %.4f s/frame, first frame %.2f s", phase, key, result["s_per_frame"], result["first_frame_s"])
    ctx.save()
    return result


def engine_facts(engine: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"optimisations": engine.accel.describe()}
    graphs = engine.accel.graphs
    if graphs is not None:
        facts["cuda_graphs"] = {"captured": graphs.captured, "failed": graphs.failed}
    if engine.accel.unet_aot is not None:
        facts["aot_compile_s"] = {k: round(v, 2) for k, v in engine.accel.unet_aot.compile_seconds.items()}
    return facts


def baseline(precision: str, cuda: bool) -> str:
    """The plain path's switches: none (fp32 on CUDA with TF32, as upstream runs it)."""
    return "tf32" if precision == "fp32" and cuda else "none"


