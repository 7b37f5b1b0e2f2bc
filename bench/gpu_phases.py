"""bench/gpu.py's phases: each answers one question (plain path, switches, compile, drift, a whole job)."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.gpu_settings import BEST, CHEAP, SIZES, SMOKE_PHASES, WARM_FRAMES
from bench.gpu_model import clip, make_engine, run_stream, sync
from bench.gpu_runs import Context, OutOfTime, engine_facts, baseline, deviation, measure, release

logger = logging.getLogger("bench.gpu")

def phase_eager(ctx: Context) -> None:
    """The plain path per size and precision, with the component breakdown."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            result = measure(ctx, "eager", f"{label}/{precision}", precision, baseline(precision, ctx.cuda), label,
                             timeline=True)
            if result is not None:
                ctx.speeds[(label, precision)] = result["s_per_frame"]


def phase_auto(ctx: Context) -> None:
    """The product's defaults (``auto``) per size and precision."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            measure(ctx, "auto", f"{label}/{precision}", precision, "auto", label, timeline=True)


def _median_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tick = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - tick) * 1000)
    return round(statistics.median(times), 3)


def phase_copies(ctx: Context) -> None:
    """Host <-> device per frame: the plain pre/post-processing against the switches' versions (at the
    720p and 1080p outputs whatever ``--sizes`` says: no model is involved; the tiny size with --smoke)."""
    from vsr.model.stream import postprocess, preprocess
    from vsr.model.transfers import Uploader, download

    runs, repeats = ctx.phase("copies")["runs"], 5 if ctx.smoke else 30
    uploader = Uploader(ctx.device, pinned=ctx.cuda)
    for label, (h, w) in (ctx.sizes if ctx.smoke else SIZES).items():
        rgb = clip(h, w, 1)[0]
        decoded = torch.rand((1, 3, 4 * h, 4 * w), device=ctx.device) * 2.2 - 1.1
        runs[label] = {
            "upload_plain_ms": _median_ms(lambda: preprocess(rgb).to(ctx.device), ctx.device, repeats),
            "upload_pinned_uint8_ms": _median_ms(lambda: uploader.frame(rgb), ctx.device, repeats),
            "download_plain_ms": _median_ms(lambda: postprocess(decoded), ctx.device, repeats),
            "download_device_uint8_ms": _median_ms(lambda: download(decoded, 4 * h, 4 * w),
                                                   ctx.device, repeats),
        }
    ctx.save()


SIDE_BY_SIDE = ("none", "none,channels-last", "none,device-postprocess", "none,compile")


def phase_side_by_side(ctx: Context, rounds: int | None = None) -> None:
    """Configurations in one run, frame by frame in turn (a load spike on a shared machine hits one frame
    of each, not one configuration): per-frame ratios to the first, medians, per size and precision."""
    rounds = rounds or max(ctx.frames, 1)
    configs = SIDE_BY_SIDE[:-1] if ctx.smoke else SIDE_BY_SIDE  # the compile phase runs dynamo's tracing already
    for label, (h, w) in ctx.sizes.items():
        for precision in ["fp32"] if ctx.smoke else [p for p in ("bf16", "fp32") if p in ctx.precisions()]:
            if ctx.left() < len(SIDE_BY_SIDE) * ctx.guess(label, precision, rounds) + 60:
                ctx.phase("side-by-side")["runs"][f"{label}/{precision}"] = {"skipped": "out of time"}
                continue
            _side_by_side(ctx, label, precision, configs, clip(h, w, rounds + WARM_FRAMES + 1))
            torch._dynamo.reset()
            release()


def _side_by_side(ctx: Context, label: str, precision: str, configs: tuple[str, ...],
                  frames: list[np.ndarray]) -> None:
    engines = {name: make_engine(ctx.master, precision, name, ctx.cache_dir) for name in configs}
    times: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in engines}
    nonfinite = dict.fromkeys(engines, 0)
    for engine in engines.values():
        engine.start_stream(7)
    for i, rgb in enumerate(frames[:-1]):
        for name, engine in engines.items():
            engine.prefetch(frames[i + 1])
            tick = time.perf_counter()
            outputs[name].append(engine.process(rgb))
            times[name].append(time.perf_counter() - tick)
            nonfinite[name] += not bool(torch.isfinite(engine.state.previous_output).all())
    base = times[configs[0]][WARM_FRAMES:]
    ctx.phase("side-by-side")["runs"][f"{label}/{precision}"] = {
        name: {"s_per_frame": round(statistics.median(t[WARM_FRAMES:]), 4),
               "first_two_frames_s": round(t[0] + t[1], 2),
               "speedup_vs_none": round(statistics.median(b / x for b, x in zip(base, t[WARM_FRAMES:])), 3),
               "vs_none_8bit": deviation(outputs[name], outputs[configs[0]]), "nonfinite_frames": nonfinite[name]}
        for name, t in times.items()
    }
    ctx.save()


def phase_each(ctx: Context) -> None:
    """Every cheap switch alone on the plain path, at the main precision."""
    precision = ctx.main_precision
    for label in ctx.sizes:
        for switch in CHEAP:
            if switch == "raft-half" and precision == "fp32":
                continue  # no half precision to run RAFT in
            optimisations = f"{baseline(precision, ctx.cuda)},{switch}"
            measure(ctx, "each", f"{label}/{precision}/{switch}", precision, optimisations, label,
                    timeline=switch != "cuda-graphs")


def phase_best(ctx: Context) -> None:
    """All the cheap switches together (``BEST``) per size and precision."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            measure(ctx, "best", f"{label}/{precision}", precision, BEST, label)


def compile_need(ctx: Context, mode: str) -> float:
    if ctx.smoke or not ctx.cuda:
        return 30.0
    return {"compile": 120.0, "compile-max": 300.0, "aot": 240.0}[mode]


def _compiled_runs(ctx: Context, phase: str, precision: str, optimisations: str, labels: list[str],
                   tag: str = "") -> None:
    """One engine through several sizes: a compile per resolution. ``tag`` names a repeat."""
    runs = ctx.phase(phase)["runs"]
    need = compile_need(ctx, phase) / (3 if tag else 1)
    if ctx.left() < need:
        runs[optimisations + tag] = {"skipped": f"needs about {need:.0f} s, {max(ctx.left(), 0):.0f} s left"}
        return
    engine = None
    torch._dynamo.utils.counters.clear()
    try:
        engine = make_engine(ctx.master, precision, optimisations, ctx.cache_dir)
        for label in labels:
            key = f"{label}/{precision}/{optimisations}{tag}"
            if ctx.left() < need / 2:
                runs[key] = {"skipped": f"{max(ctx.left(), 0):.0f} s left"}
                continue
            h, w = ctx.sizes[label]
            result = run_stream(engine, clip(h, w, ctx.frames + WARM_FRAMES + 1), keep=True)
            result.update(engine_facts(engine), precision=precision, size=label)
            ctx.compare(result, label, precision)
            result.pop("outputs")
            result["compile_s"] = round(result["first_frame_s"] + result["first_controlnet_frame_s"]
                                        - 2 * result["s_per_frame"], 2)
            result["dynamo"] = _dynamo_counts()
            runs[key] = result
            ctx.save()
    except Exception as exc:  # noqa: BLE001
        logger.exception("compiled run %s failed", optimisations)
        runs[optimisations + tag] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    finally:
        del engine
        torch._dynamo.reset()
        release()


def _dynamo_counts() -> dict[str, Any]:
    """Graph breaks (with their reasons) and graphs compiled so far, from dynamo's counters."""
    counters = torch._dynamo.utils.counters
    breaks = dict(counters.get("graph_break", {}))
    return {"graph_breaks": sum(breaks.values()), "break_reasons": [str(k)[:200] for k in list(breaks)[:5]],
            "unique_graphs": int(counters.get("stats", {}).get("unique_graphs", 0))}


def phase_compile(ctx: Context) -> None:
    """torch.compile at every size in one engine, then again in a new one (inductor's cache warm), then
    compile + CUDA graphs."""
    precision, labels = ctx.main_precision, list(ctx.sizes)
    _compiled_runs(ctx, "compile", precision, "auto,compile", labels)
    if ctx.smoke:  # the repeats run the same code; dynamo's tracing alone takes a while on a CPU
        return
    _compiled_runs(ctx, "compile", precision, "auto,compile", labels[:1], tag=" (new engine, warm cache)")
    _compiled_runs(ctx, "compile", precision, "auto,compile,cuda-graphs", labels[:1])


def phase_compile_max(ctx: Context) -> None:
    if ctx.smoke:
        ctx.phase("compile-max")["runs"]["auto,compile-max"] = {"skipped": "smoke: the eager backend has no modes"}
        return
    _compiled_runs(ctx, "compile-max", ctx.main_precision, "auto,compile-max", list(ctx.sizes)[:1])


def phase_aot(ctx: Context) -> None:
    """AOTInductor UNet: built (cold), then loaded from the package cache by a new engine."""
    labels = list(ctx.sizes)[:1]
    _compiled_runs(ctx, "aot", ctx.main_precision, "auto,aot", labels)
    if not ctx.smoke:  # the smoke run builds no package to load
        _compiled_runs(ctx, "aot", ctx.main_precision, "auto,aot", labels, tag=" (new engine, package cached)")


def phase_drift(ctx: Context) -> None:
    """8-bit drift of each faster precision from strict fp32, per frame over ``drift_frames`` frames."""
    label = next(iter(ctx.sizes))
    n = ctx.drift_frames
    runs = ctx.phase("drift")["runs"]
    reference = measure(ctx, "drift", "fp32-strict", "fp32", "none", label, frames=n, keep=True)
    if reference is None:
        return
    ref = reference.pop("outputs")
    others = [("fp32-tf32", "fp32", "tf32")] if ctx.cuda else []
    others += [(p, p, "none") for p in ctx.precisions() if p != "fp32"]
    for key, precision, optimisations in others:
        result = measure(ctx, "drift", key, precision, optimisations, label, frames=n, keep=True)
        if result is None:
            continue
        diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(result.pop("outputs"), ref)]
        runs[key]["vs_fp32_8bit"] = {
            "max_per_frame": [int(d.max()) for d in diffs],
            "mean_per_frame": [round(float(d.mean()), 4) for d in diffs],
        }
    flow_drift(ctx, label)
    ctx.save()


def flow_drift(ctx: Context, label: str, pairs: int = 4) -> None:
    """RAFT in half precision (``raft-half``) against fp32 RAFT on the same frame pairs (end-point error)."""
    runs = ctx.phase("drift")["runs"]
    h, w = ctx.sizes[label]
    frames = clip(h, w, pairs + 1)
    for precision in [p for p in ctx.precisions() if p != "fp32"]:
        if ctx.left() < 10:
            runs[f"raft-{precision}"] = {"skipped": "out of time"}
            continue
        engine = make_engine(ctx.master, precision, "raft-half", ctx.cache_dir)
        errors, magnitudes = [], []
        with torch.inference_mode():
            ups = [engine._inputs(f)[1] for f in frames]
            for a, b in zip(ups[1:], ups[:-1]):
                half, full = engine.accel.compute_flow(a, b), engine._flow(a, b).float()
                errors.append((half - full).norm(dim=-1))
                magnitudes.append(float(full.norm(dim=-1).mean()))
        epe = torch.stack(errors)
        runs[f"raft-{precision}"] = {"pairs": pairs, "epe_mean_px": round(float(epe.mean()), 5),
                                     "epe_max_px": round(float(epe.max()), 4),
                                     "flow_mean_magnitude_px": round(statistics.mean(magnitudes), 4)}
        del engine
        release()


def make_video(path: Path, frames: list[np.ndarray], rate: int = 30) -> Path:
    """An H.264 file of ``frames`` (PyAV)."""
    import av

    height, width, _ = frames[0].shape
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@dataclass(frozen=True)
class _KnownSpeed:
    """A plan's estimator that measures nothing (the benchmark times the job itself)."""

    description: dict[str, Any]

    def engine(self) -> dict[str, Any]:
        return self.description

    def will_measure(self, width: int, height: int) -> bool:
        return False

    def calibration(self, width: int, height: int) -> Any:
        from vsr.job.estimate import Calibration

        return Calibration("bench-gpu", ((width * height, 0.1),), cached=True)

    def media(self, info: Any, settings: Any) -> Any:
        from vsr.job.pipeline import MediaCosts

        return MediaCosts.none()


def phase_job(ctx: Context) -> None:
    """A whole job (decode, upscale, encode, mux, verify) against the model time inside it."""
    runs = ctx.phase("job")["runs"]
    try:
        import av  # noqa: F401
    except ImportError:
        runs["job"] = {"skipped": "PyAV is not importable here"}
        return
    label = next(iter(ctx.sizes))
    precision = ctx.main_precision
    if ctx.left() < ctx.guess(label, precision, ctx.job_frames) + 10:
        runs["job"] = {"skipped": f"{max(ctx.left(), 0):.0f} s left"}
        return
    engine = None
    try:
        engine = make_engine(ctx.master, precision, "auto", ctx.cache_dir)
        runs["job"] = _time_job(ctx, engine, label)
    except Exception as exc:  # noqa: BLE001
        logger.exception("job run failed")
        runs["job"] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    finally:
        del engine
        release()
    ctx.save()


def _time_job(ctx: Context, engine: Any, label: str) -> dict[str, Any]:
    from vsr import job
    from vsr.options import build_options

    h, w = ctx.sizes[label]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-job-") as tmp:
        work = Path(tmp)
        video = make_video(work / "in.mp4", clip(h, w, ctx.job_frames))
        options = build_options({"engine": "stream-diffvsr", "device": ctx.device.type, "seed": 7,
                                 "precision": engine.describe()["precision"], "scene_cuts": "off",
                                 "tmp_dir": work / "tmp", "cache_dir": work / "cache"}, env={})
        plan = job.plan(video, options, estimator=_KnownSpeed(engine.describe()), output=work / "out.mp4")
        run_stream(engine, clip(h, w, WARM_FRAMES + 2))  # compile/autotune/capture outside the timed job
        started = time.perf_counter()
        result = job.run(plan, work / "out.mp4", processor=engine)
        wall = time.perf_counter() - started
    return {"size": label, "frames": result.frames, "optimisations": engine.describe()["optimisations"],
            "job_s": round(wall, 3), "model_s": round(result.model_seconds, 3),
            "overhead_pct": round(100 * (wall / result.model_seconds - 1), 2),
            "fps": round(result.frames / wall, 2), "verified": bool(result.report.ok)}


PHASE_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "eager": phase_eager, "auto": phase_auto, "copies": phase_copies, "side-by-side": phase_side_by_side,
    "each": phase_each, "compile": phase_compile, "best": phase_best,
    "drift": phase_drift, "job": phase_job, "compile-max": phase_compile_max, "aot": phase_aot,
}


def warm_up(ctx: Context) -> float:
    """Three frames, not recorded: CUDA context, cuBLAS/cuDNN handles and lazy kernel loading happen here,
    so the first measured run's first frame is not charged with them."""
    tick = time.perf_counter()
    h, w = next(iter(ctx.sizes.values()))
    engine = make_engine(ctx.master, ctx.main_precision, "none", ctx.cache_dir)
    run_stream(engine, clip(h, w, 4))
    del engine
    release()
    return round(time.perf_counter() - tick, 2)


def run_phases(ctx: Context, names: list[str]) -> None:
    unknown = [n for n in names if n not in PHASE_FUNCTIONS]
    if unknown:
        raise SystemExit(f"bench/gpu.py: unknown phases {unknown}; use {', '.join(SMOKE_PHASES)}")
    for name in names:
        tick = time.perf_counter()
        phase = ctx.phase(name)
        try:
            PHASE_FUNCTIONS[name](ctx)
            phase["status"] = "ok"
        except OutOfTime:
            phase["status"] = "stopped by the hard time limit"
            raise
        except Exception as exc:  # noqa: BLE001 - record and go on with the next phase
            logger.exception("phase %s failed", name)
            phase["status"] = f"error: {type(exc).__name__}: {str(exc)[:600]}"
        finally:
            phase["seconds"] = round(time.perf_counter() - tick, 2)
            ctx.save()


