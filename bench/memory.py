"""Memory benchmark: peak memory per frame, untiled and tiled, per flow pair, and the memory model's error.

Every case runs in a fresh child process (peak RSS is per process; CUDA peak too when on a GPU):

- ``frame``: one steady-state frame (a frame after the first: optical flow, warp, ControlNet, encoder
  features, temporal decoder) of the full-size stand-in (bench/standin.py, ``--precision``, default
  auto: bf16 on a CPU with native bf16, else fp32), one denoising step, at LR 160x90, 320x180 and
  640x360, untiled and tiled (``--tile``, default 64). The stream state is primed as after one frame
  (the previous output is the bicubic upscale) so no first frame has to run. Reported: peak RSS of
  the process (loading included), the frame's own peak (VmHWM reset before it), the memory model's
  prediction of both, and the time. The flow's correlation is the engine's own choice
  (``vsr.model.flow.choose_correlation``: all pairs up to 1280x720, on demand above).
- ``flow``: one RAFT pair at HR 1280x720, 2560x1440 and 5120x2880, all pairs and on demand; a case
  whose predicted peak exceeds ``--max-case-gb`` is not run (its prediction is reported).
- ``calibrate`` (``--calibrate``): the coefficients of vsr/job/peak_memory.py: each component's peak
  (VmHWM reset through /proc/self/clear_refs before its call, minus RSS before it) at two sizes,
  with glibc's mmap threshold at 64 KiB so freed tensors leave RSS; slopes and intercepts printed.
- ``cli``: ``vsr upscale`` of a generated 640x360 clip with the tiny fixture model, end to end.

Linear growth: the frame peaks at the three sizes are fitted with a line in output pixels (slope,
intercept, worst relative residual). Results: bench/results/memory.json; a markdown table is printed.

Run: ``.venv/bin/python bench/memory.py`` (``--only frame,flow,cli``, ``--budget SECONDS``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # run as a script: keep bench/ off the path (its module names are generic)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
FRAME_SIZES = ((160, 90), (320, 180), (640, 360))
FLOW_SIZES = ((1280, 720), (2560, 1440), (5120, 2880))
CALIBRATION_SIZES = ((80, 48), (160, 96))
GOALS = {"tiled_gb": 4.0, "untiled_gb": 8.0, "model_error": 0.30}
GB = 1e9


# ---------------------------------------------------------------------------------------------
# Measuring a process's memory (Linux).



def _fixture() -> Path:
    """The golden tiny fixture in the repository (tests/fixtures/stream-diffvsr-tiny), its RAFT weights made."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fixture_files

    return fixture_files.fixture_dir()

def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm() -> int:
    """Peak resident memory since start or since the last ``reset_hwm`` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_hwm() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: '5' into /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def cuda_peak() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


# ---------------------------------------------------------------------------------------------
# Inputs.


def clip(width: int, height: int, frames: int) -> list[np.ndarray]:
    """A smooth colour texture panning 2 px per frame (HWC uint8)."""
    y, x = np.mgrid[0:height, 0:width + 2 * frames].astype(np.float32)
    texture = np.stack([127 + 90 * np.sin(x / 9 + c) * np.cos(y / 7 - c) for c in range(3)], axis=2)
    texture = texture.clip(0, 255).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, 2 * i:2 * i + width]) for i in range(frames)]


def make_video(path: Path, width: int, height: int, frames: int) -> Path:
    """The same texture as an H.264 file (video only, 30 fps)."""
    import av

    rate = Fraction(30)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i, rgb in enumerate(clip(width, height, frames)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def flow_rule(hr_width: int, hr_height: int) -> str:
    """The correlation the engine picks at this output size (``vsr.model.flow.choose_correlation``)."""
    from vsr.model.flow import choose_correlation

    return choose_correlation(hr_height, hr_width)


# ---------------------------------------------------------------------------------------------
# Child processes: one case each.


def _threads() -> None:
    import torch

    torch.set_num_threads(2)


def load_standin(precision: str, device: str = "cpu"):
    """The full-size stand-in as an engine (1 denoising step) on ``device``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from standin import ensure

    from vsr.model import load_engine

    folder = ensure()
    return folder, load_engine("stream-diffvsr", model_id=str(folder), flow_weights=folder / "raft_large.safetensors",
                               device=device, precision=precision, steps=1, seed=1)


def prime(engine, lr: np.ndarray, all_pairs: bool) -> None:
    """Stream state as after one frame: the previous output is the bicubic upscale of ``lr``.

    With all-pairs flow, one RAFT call first, so its pyramid is allocated as it is between frames."""
    import torch
    import torch.nn.functional as F

    from vsr.model.stream import StreamState, pad_to_multiple, preprocess

    padded = pad_to_multiple(lr)  # the engine pads sides to multiples of 4 (90 -> 92)
    up = F.interpolate(preprocess(padded), scale_factor=4, mode="bicubic", align_corners=False)
    engine.state = StreamState(previous_output=up.clone(), previous_upscaled=up, size=padded.shape[:2], frames=1,
                               since_reset=1)
    if all_pairs:
        with torch.inference_mode():
            engine.raft(up, up, num_flow_updates=1)


def frame_child(args: argparse.Namespace) -> dict:
    import torch

    from vsr.job.model_sizes import model_sizes
    from vsr.job.peak_memory import FLOW_ON_DEMAND, predict_frame
    from vsr.model.devices import NAMES
    from vsr.model.tiling import Tiling

    _threads()
    width, height = args.width, args.height
    baseline = rss()
    folder, engine = load_standin(args.precision, args.device)
    loaded, load_peak = rss(), hwm()
    method = flow_rule(4 * width, 4 * height)  # the engine's own choice (flow_correlation "auto")
    tiling = Tiling(args.tile, args.tile) if args.tile else Tiling()
    engine.set_tiling(tiling)
    first, second = clip(width, height, 2)
    prime(engine, first, method != FLOW_ON_DEMAND)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    reset_hwm()
    before = rss()
    started = time.perf_counter()
    with torch.inference_mode():
        engine.process(second)
    seconds = time.perf_counter() - started
    frame_peak = hwm()
    element = torch.finfo(engine.dtype).bits // 8
    predicted = predict_frame(model_sizes(str(folder), folder / "raft_large.safetensors"), width, height,
                              element=element, tiling=tiling, flow=method, device=str(engine.device))
    return {"lr": [width, height], "hr": [4 * width, 4 * height], "tiling": tiling.describe(),
            "precision": NAMES[engine.dtype], "flow": method, "seconds": seconds,
            "baseline": baseline, "after_load": loaded, "load_peak": load_peak, "before_frame": before,
            "frame_peak": frame_peak, "process_peak": max(load_peak, frame_peak),
            "cuda_peak": cuda_peak(), "predicted_frame_peak": predicted.frame_peak,
            "predicted_load_peak": predicted.load, "predicted_peak": predicted.peak,
            "predicted_phases": predicted.phases}


def flow_child(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from vsr.job.peak_memory import flow_bytes
    from vsr.model.flow import compute_flow, load_raft
    from vsr.model.stream import preprocess

    _threads()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from standin import ensure

    raft = load_raft(ensure() / "raft_large.safetensors")
    images = [F.interpolate(preprocess(f), scale_factor=4, mode="bicubic", align_corners=False)
              for f in clip(args.width // 4, args.height // 4, 2)]
    reset_hwm()
    before = rss()
    started = time.perf_counter()
    with torch.inference_mode():
        compute_flow(raft, images[1], images[0], correlation=args.method)
    seconds = time.perf_counter() - started
    peak, resident = flow_bytes(args.width, args.height, args.method)
    return {"hr": [args.width, args.height], "method": args.method, "seconds": seconds,
            "measured": hwm() - before, "predicted": peak, "cuda_peak": cuda_peak()}


def calibrate_child(args: argparse.Namespace) -> dict:
    """Each component's transient peak at one size (run with a low glibc mmap threshold)."""
    import torch
    import torch.nn.functional as F

    from vsr.model.stream import preprocess

    _threads()
    baseline = rss()
    folder, engine = load_standin(args.precision)
    result = {"baseline": baseline, "after_load": rss(), "load_peak": hwm(), "lr": [args.width, args.height]}
    first, second = clip(args.width, args.height, 2)
    lr = preprocess(second).to(engine.dtype)
    up = [F.interpolate(preprocess(f), scale_factor=4, mode="bicubic", align_corners=False) for f in (first, second)]
    warped = up[0].to(engine.dtype)
    with torch.inference_mode():
        cond = engine.artg.condition(warped)
        sample = torch.cat([torch.randn(1, 4, args.height, args.width).to(engine.dtype), lr], dim=1)
        features = engine.vae.encoder_features(warped)
        latents = torch.randn(1, 4, args.height, args.width).to(engine.dtype)
        calls = {
            "condition": lambda: engine.artg.condition(warped),
            "denoise": lambda: engine.noise_prediction(sample, engine.timesteps[0], cond),
            "encode": lambda: engine.vae.encoder_features(warped),
            "decode": lambda: engine.vae.decode(latents, features),
        }
        for name, call in calls.items():
            call()  # once untimed: lazily made kernels and weight layouts are not per-pixel memory
            reset_hwm()
            before = rss()
            out = call()
            result[name] = hwm() - before
            del out
    return result


def run_child(kind: str, extra: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict:
    """Run one case in a fresh interpreter; its JSON result (or the reason it did not finish)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--out", str(out), *extra]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        wall = time.perf_counter() - started
    try:
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1:] or [""]
            return {"error": f"exit {proc.returncode}: {last[0][:300]}"}
        return {**json.loads(out.read_text()), "wall_s": wall}
    finally:
        out.unlink(missing_ok=True)


def frames(args: argparse.Namespace) -> list[dict]:
    rows = []
    for width, height in FRAME_SIZES:
        for tile in (0, args.tile):
            extra = ["--width", str(width), "--height", str(height), "--precision", args.precision,
                     "--tile", str(tile), "--device", args.device]
            row = run_child("frame", extra)
            row.setdefault("lr", [width, height])
            row["tiled"] = bool(tile)
            rows.append(row)
            print(f"frame {width}x{height} {'tiled' if tile else 'untiled'}: {_short(row)}", file=sys.stderr,
                  flush=True)
    return rows


def flows(args: argparse.Namespace) -> list[dict]:
    from vsr.job.peak_memory import flow_bytes

    rows = [r for r in getattr(args, "previous_flow", []) if r.get("method") not in args.flow_methods.split(",")]
    for width, height in FLOW_SIZES:
        for method in args.flow_methods.split(","):
            predicted = flow_bytes(width, height, method)[0]
            if predicted > args.max_case_gb * GB:
                rows.append({"hr": [width, height], "method": method, "predicted": predicted,
                             "skipped": f"predicted {predicted / GB:.1f} GB > --max-case-gb {args.max_case_gb:g}"})
                continue
            extra = ["--width", str(width), "--height", str(height), "--method", method]
            row = run_child("flow", extra)
            row.setdefault("hr", [width, height])
            row.setdefault("method", method)
            rows.append(row)
            print(f"flow {width}x{height} {method}: {_short(row)}", file=sys.stderr, flush=True)
    return rows


def calibrate(args: argparse.Namespace) -> dict:
    """Per-component slopes and intercepts, and the coefficients they give (see vsr/job/peak_memory.py)."""
    from vsr.job.model_sizes import ModelSizes, model_sizes

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    points = [run_child("calibrate", ["--width", str(w), "--height", str(h), "--precision", args.precision], env)
              for w, h in CALIBRATION_SIZES]
    if any("error" in p for p in points):
        return {"points": points}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from standin import FOLDER

    sizes: ModelSizes = model_sizes(str(FOLDER), FOLDER / "raft_large.safetensors")
    element = 2 if "bf16" in args.precision or args.precision == "auto" else 4
    px = [p["lr"][0] * p["lr"][1] for p in points]
    hr = [16 * x for x in px]
    fits = {
        "unet": _line(px, [p["denoise"] for p in points], sizes.skip_channels * element),
        "condition": _line(hr, [p["condition"] for p in points], sizes.condition_width * element),
        "encoder": _line(hr, [p["encode"] - sizes.feature_channels * h * element for p, h in zip(points, hr)],
                         sizes.vae_encoder[0][0] * element),
        "decoder": _line(hr, [p["decode"] - 3 * h * element for p, h in zip(points, hr)],
                         sizes.vae_decoder_width * element),
    }
    weights = (sizes.unet_params + sizes.controlnet_params + sizes.vae_params) * element + sizes.raft_params * 4
    largest = max(sizes.unet_params, sizes.controlnet_params, sizes.text_params) * 4
    load = [(p["load_peak"] - p["baseline"] - weights - sizes.text_params * 4) / largest for p in points]
    return {"points": points, "element": element, "fits": fits, "load": load,
            "baseline_cpu": min(p["baseline"] for p in points),
            "unet_fixed": fits["unet"]["intercept"] / ((sizes.unet_params + sizes.controlnet_params) * element)}


def _line(x: list[float], y: list[float], unit: float) -> dict:
    """Slope (in coefficient units: bytes per pixel / ``unit``) and intercept (bytes) through two points."""
    slope = (y[1] - y[0]) / (x[1] - x[0])
    return {"coefficient": slope / unit, "intercept": y[0] - slope * x[0], "y": y}


def cli_case(args: argparse.Namespace, work: Path) -> dict:
    """``vsr upscale`` of a generated 640x360 clip end to end: with the tiny fixture model (RAFT at
    2560x1440 with on-demand correlation dominates its time), and with the bicubic engine, whose peak
    minus the bare process is what decoding and encoding take (the memory model's MEDIA_BYTES_PER_PIXEL)."""
    clip_path = make_video(work / "clip640.mp4", 640, 360, args.cli_frames)
    rows = {"bare_process_rss": _bare_cli_rss()}
    for engine in ("stream-diffvsr", "bicubic"):
        fixture = _fixture()
        extra = (["--model-id", str(fixture / "model"), "--flow-weights", str(fixture / "raft_large.safetensors")]
                 if engine == "stream-diffvsr" else [])
        rows[engine] = _cli_run(work, clip_path, ["--engine", engine, *extra])
    hr = 640 * 360 * 16
    bicubic = rows["bicubic"]
    if bicubic["exit_code"] == 0:
        rows["media_bytes_per_output_pixel"] = (bicubic["peak_rss"] - rows["bare_process_rss"]) / hr
    return {"input": "640x360", "frames": args.cli_frames, **rows}


def _cli_run(work: Path, clip_path: Path, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(work / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(work / "cache"))
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "cli", "--out", str(work / "cli.json"), "--",
            "upscale", str(clip_path), "-o", str(work / "out.mp4"), "--overwrite", "--device", "cpu", "--seed", "1",
            *extra]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    data = json.loads((work / "cli.json").read_text()) if (work / "cli.json").is_file() else {}
    plan = next((line for line in proc.stdout.splitlines() if line.startswith("Memory:")), "")
    return {"exit_code": data.get("code", proc.returncode), "seconds": seconds, "peak_rss": data.get("peak_rss"),
            "plan_memory_line": plan.strip(),
            "error_line": (proc.stderr.strip().splitlines() or [""])[-1] if data.get("code") else ""}


def cli_child(args: argparse.Namespace) -> dict:
    """``vsr.cli.main`` in this fresh process; its exit code and the process's peak RSS."""
    _threads()
    from vsr.cli import main as cli_main

    code = cli_main(args.rest)
    return {"code": code, "peak_rss": hwm()}


def bare_child(args: argparse.Namespace) -> dict:
    """RSS of a process that imported what the CLI imports for a bicubic job, before any work."""
    _threads()
    import media  # noqa: F401
    import vsr.job  # noqa: F401
    from vsr.model.bicubic import BicubicUpscaler  # noqa: F401

    return {"rss": rss()}


def _bare_cli_rss() -> int:
    return int(run_child("bare", [])["rss"])


def _short(row: dict) -> str:
    if "error" in row or "skipped" in row:
        return row.get("error") or row["skipped"]
    keys = ("process_peak", "frame_peak", "predicted_peak", "measured", "predicted", "seconds")
    return ", ".join(f"{k} {row[k] / GB:.2f} GB" if k != "seconds" else f"{row[k]:.1f} s" for k in keys if k in row)


# ---------------------------------------------------------------------------------------------
# Summary.


def linear_fit(rows: list[dict], key: str = "process_peak") -> dict | None:
    """Least-squares line of ``key`` in output pixels over ``rows``; None with fewer than 3 points."""
    points = [(r["hr"][0] * r["hr"][1], r[key]) for r in rows if key in r]
    if len(points) < 3:
        return None
    x, y = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.abs(slope * x + intercept - y) / y
    return {"bytes_per_output_pixel": float(slope), "intercept_gb": float(intercept / GB),
            "worst_relative_residual": float(residual.max()), "points": len(points)}


def summarise(results: dict) -> dict:
    frames_done = [r for r in results.get("frame", []) if "process_peak" in r]
    summary: dict = {"model_error": [], "linear": {}}
    for r in frames_done:
        summary["model_error"].append({
            "lr": r["lr"], "tiled": r["tiled"],
            "process": (r["predicted_peak"] - r["process_peak"]) / r["process_peak"],
            "frame": (r["predicted_frame_peak"] - r["frame_peak"]) / r["frame_peak"]})
    for tiled in (False, True):
        fit = linear_fit([r for r in frames_done if r["tiled"] == tiled], "frame_peak")
        summary["linear"]["tiled" if tiled else "untiled"] = fit
    flow_rows = [r for r in results.get("flow", []) if "measured" in r and r["method"] == "on-demand"]
    if len(flow_rows) >= 2:
        x = np.array([r["hr"][0] * r["hr"][1] for r in flow_rows], dtype=float)
        y = np.array([r["measured"] for r in flow_rows], dtype=float)
        slope, intercept = np.polyfit(x, y, 1)
        summary["on_demand_flow"] = {"bytes_per_hr_pixel": float(slope), "intercept_mb": float(intercept / 1e6),
                                     "worst_relative_residual": float((np.abs(slope * x + intercept - y) / y).max()),
                                     "points": len(flow_rows)}
    big = {r["tiled"]: r["process_peak"] / GB for r in frames_done if tuple(r["lr"]) == (640, 360)}
    summary["goals"] = {
        "640x360 tiled <= 4 GB": None if True not in big else big[True] <= GOALS["tiled_gb"],
        "640x360 untiled <= 8 GB": None if False not in big else big[False] <= GOALS["untiled_gb"],
        "model within 30 %": (all(abs(e["process"]) <= GOALS["model_error"] for e in summary["model_error"])
                              if summary["model_error"] else None),
    }
    return summary


def table(results: dict) -> str:
    rows = ["| LR -> HR | tiling | precision | flow | peak RSS (GB) | predicted (GB) | error | frame peak (GB) "
            "| predicted frame (GB) | s/frame (1 step) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.get("frame", []):
        lr = f"{r['lr'][0]}x{r['lr'][1]} -> {4 * r['lr'][0]}x{4 * r['lr'][1]}"
        if "process_peak" not in r:
            rows.append(f"| {lr} | {'tiled' if r.get('tiled') else 'whole'} | {r.get('error') or r.get('skipped')} "
                        "|||||||")
            continue
        error = (r["predicted_peak"] - r["process_peak"]) / r["process_peak"]
        rows.append(f"| {lr} | {r['tiling']} | {r['precision']} | {r['flow']} | {r['process_peak'] / GB:.2f} | "
                    f"{r['predicted_peak'] / GB:.2f} | {error:+.0%} | {r['frame_peak'] / GB:.2f} | "
                    f"{r['predicted_frame_peak'] / GB:.2f} | {r['seconds']:.0f} |")
    rows += ["", "| flow pair at HR | correlation | measured (GB) | predicted (GB) | s |", "|---|---|---|---|---|"]
    for r in results.get("flow", []):
        hr = f"{r['hr'][0]}x{r['hr'][1]}"
        if "measured" not in r:
            predicted = f"{r['predicted'] / GB:.1f}" if "predicted" in r else "-"
            rows.append(f"| {hr} | {r['method']} | not run: {r.get('skipped') or r.get('error')} | {predicted} | - |")
            continue
        rows.append(f"| {hr} | {r['method']} | {r['measured'] / GB:.2f} | {r['predicted'] / GB:.2f} | "
                    f"{r['seconds']:.0f} |")
    return "\n".join(rows)


CHILDREN = {"frame": frame_child, "flow": flow_child, "calibrate": calibrate_child, "cli": cli_child,
            "bare": bare_child}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="frame,flow,cli", help="comma-separated: frame, flow, cli, calibrate")
    parser.add_argument("--precision", default="auto", help="of the frame cases (auto: what the product picks)")
    parser.add_argument("--device", default="cpu", help="of the frame cases: cpu, or cuda (peaks from torch.cuda)")
    parser.add_argument("--tile", type=int, default=64, help="latent tile side of the tiled frame cases")
    parser.add_argument("--max-case-gb", type=float, default=12.0, help="flow cases predicted above this are not run")
    parser.add_argument("--cli-frames", type=int, default=3)
    parser.add_argument("--flow-methods", default="all-pairs,on-demand", help="correlations of the flow cases")
    parser.add_argument("--merge", action="store_true", help="keep the other parts of an existing results file")
    parser.add_argument("--child")
    parser.add_argument("--out")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--method")
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        Path(args.out).write_text(json.dumps(CHILDREN[args.child](args)))
        return 0
    results: dict = json.loads(RESULTS.read_text()) if args.merge and RESULTS.is_file() else {}
    results["machine"] = {**machine.describe(), "threads": 2}
    parts = args.only.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for part in parts:
            started = time.perf_counter()
            if part == "frame":
                results["frame"] = frames(args)
            elif part == "flow":
                args.previous_flow = results.get("flow", [])
                results["flow"] = flows(args)
            elif part == "calibrate":
                results["calibration"] = calibrate(args)
            elif part == "cli":
                results["cli"] = cli_case(args, Path(tmp))
            else:
                raise SystemExit(f"unknown part {part!r}; use frame, flow, cli or calibrate")
            results.setdefault("wall_s", {})[part] = time.perf_counter() - started
            results["summary"] = summarise(results)
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))
    print(f"Measured on {machine.label(results['machine'])}.\n")
    print(table(results))
    print(json.dumps({k: results[k] for k in ("summary", "cli", "calibration") if k in results}, indent=1,
                     default=str)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
