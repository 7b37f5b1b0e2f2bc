"""How far a segment that starts mid-video drifts from one continuous run, by warm-up K; and what 2 workers gain.

Quality (``quality``): one continuous run of a clip (seed S) against segmented runs that start at frame
``start`` after K warm-up frames (``start_stream(seed, frame=start-K)``, the warm-up outputs thrown
away; K in 0, 1, 2, 4, 8, 16): for every kept frame, its distance from the segment's start and its
difference from the continuous run's frame (8-bit mean and max, PSNR), next to the difference between
two continuous runs with different seeds (the model's own spread: what no viewer can call wrong).
Engines: the tiny fixture model (tests/fixtures) and the full-size stand-in (bench/standin.py: the
published architecture, random weights), on small frames; or the published weights (--model-id).

Speed (``speed``): the same clip through ``vsr.job.parallel`` on a local Ray with 1 and with 2 workers
(bicubic and the fixture model): wall time, efficiency (speed-up / workers), the time spent on warm-up
frames and on joining; and on paper for N GPUs.

Results: bench/results/segments.json (with the CPU, its flags and the date: bench/machine.py).

    .venv/bin/python bench/segments.py                       # fixture + stand-in quality, speed
    .venv/bin/python bench/segments.py --model-id Jamichsu/Stream-DiffVSR --device cuda --size 320x180 --frames 48
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # after the project: bench/media.py is not the media package

import machine  # noqa: E402  bench/machine.py
from model import clip  # noqa: E402  bench/model.py: a smooth texture panning 1-2 px per frame

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "segments.json"
FIXTURE = ROOT / "tests" / "fixtures" / "stream-diffvsr-tiny"
WARMUPS = (0, 1, 2, 4, 8, 16)
SEED, OTHER_SEED = 7, 8


def load(model: str, device: str) -> Any:
    from vsr.model import load_engine

    if model == "fixture":
        return load_engine("stream-diffvsr", model_id=str(FIXTURE / "model"),
                           flow_weights=FIXTURE / "raft_large.safetensors", device=device, precision="fp32")
    if model == "standin":
        import standin

        folder = standin.FOLDER if standin.FOLDER.is_dir() else standin.build()
        return load_engine("stream-diffvsr", model_id=str(folder), flow_weights=folder.parent / "raft_large.safetensors",
                           device=device, precision="fp32")
    return load_engine("stream-diffvsr", model_id=model, device=device, precision="auto")


def stream(engine: Any, frames: list[np.ndarray], seed: int, first: int = 0) -> list[np.ndarray]:
    engine.start_stream(seed, frame=first)
    return [engine.process(f) for f in frames[first:]]


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    return {"mean": round(float(diff.mean()), 3), "max": int(diff.max()),
            "psnr": round(10 * math.log10(255 ** 2 / mse), 2) if mse > 0 else None}


def quality(model: str, device: str, size: tuple[int, int], frames: int, start: int) -> dict[str, Any]:
    """The continuous run against segments from ``start`` with each warm-up K (see module doc)."""
    width, height = size
    engine = load(model, device)
    video = clip(height, width, frames)
    tick = time.perf_counter()
    whole = stream(engine, video, SEED)
    seconds_per_frame = (time.perf_counter() - tick) / frames
    other = stream(engine, video, OTHER_SEED)
    spread = [compare(a, b) for a, b in zip(whole[start:], other[start:])]
    by_k: dict[str, Any] = {}
    for k in WARMUPS:
        if k > start:
            continue
        part = stream(engine, video, SEED, first=start - k)[k:]
        by_k[str(k)] = [{"distance": d, **compare(whole[start + d], out)} for d, out in enumerate(part)]
    return {"model": model, "device": device, "size": f"{width}x{height}", "frames": frames, "segment_start": start,
            "seconds_per_frame": round(seconds_per_frame, 3), "other_seed": spread, "warmup": by_k,
            "summary": summarise(by_k, spread)}


def summarise(by_k: dict[str, Any], spread: list[dict[str, Any]]) -> dict[str, Any]:
    """Per K: the first frame's and the worst frame's mean difference, and the seed spread's mean."""
    seeds = float(np.mean([s["mean"] for s in spread]))
    out: dict[str, Any] = {"other_seed_mean": round(seeds, 3)}
    for k, rows in by_k.items():
        out[k] = {"first_mean": rows[0]["mean"], "worst_mean": max(r["mean"] for r in rows),
                  "last_mean": rows[-1]["mean"], "worst_max": max(r["max"] for r in rows),
                  "first_psnr": rows[0]["psnr"], "share_of_seed_spread": round(rows[0]["mean"] / seeds, 3)
                  if seeds else None}
    return out


def speed(engine: str, frames: int, size: tuple[int, int], warmup: int) -> dict[str, Any]:
    """``vsr.job.parallel`` with 1 and 2 local workers on one clip: times, efficiency, warm-up, join."""
    import av

    from vsr.job import estimator_for, plan
    from vsr.job.cluster import connect
    from vsr.job.parallel import plan_parallel, run_parallel
    from vsr.options import build_options

    width, height = size
    out: dict[str, Any] = {"engine": engine, "frames": frames, "size": f"{width}x{height}", "warmup": warmup}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mkv"
        with av.open(str(src), "w") as container:
            stream_ = container.add_stream("ffv1", rate=25)
            stream_.width, stream_.height, stream_.pix_fmt = width, height, "bgr0"
            for picture in clip(height, width, frames):
                container.mux(stream_.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            container.mux(stream_.encode(None))
        values = {"engine": engine, "seed": SEED, "codec": "ffv1", "device": "cpu", "precision": "fp32",
                  "tmp_dir": Path(tmp) / "t", "cache_dir": Path(tmp) / "c", "checkpoint_seconds": 0}
        if engine == "stream-diffvsr":
            values.update(model_id=str(FIXTURE / "model"), flow_weights=str(FIXTURE / "raft_large.safetensors"))
        bicubic = build_options({**values, "engine": "bicubic"}, env={})
        import dataclasses

        job = dataclasses.replace(plan(src, bicubic, estimator=estimator_for(bicubic)),
                                  options=build_options(values, env={}))
        for workers in (1, 2):
            cluster = connect(None, workers, cpus_here=2, gpus_here=0)
            try:
                parts = plan_parallel(job, workers, warmup=warmup)
                run_parallel(parts, cluster, Path(tmp) / f"warm{workers}.mkv", Path(tmp) / f"w{workers}")  # loads
                tick = time.perf_counter()
                result = run_parallel(parts, cluster, Path(tmp) / f"out{workers}.mkv", Path(tmp) / f"c{workers}")
                seconds = time.perf_counter() - tick
            finally:
                cluster.close()
            thrown = sum(p.warmup for p in parts.parts)
            out[f"workers_{workers}"] = {"seconds": round(seconds, 2), "parts": len(parts.parts),
                                         "warmup_frames": thrown, "frames": result.frames,
                                         "join_seconds": round(result.write.seconds, 3)}
    one, two = out["workers_1"]["seconds"], out["workers_2"]["seconds"]
    out["speedup"] = round(one / two, 2) if two else None
    out["efficiency"] = round(one / two / 2, 2) if two else None
    return out


def on_paper(part_frames: int, warmup: int, join_seconds_per_frame: float, seconds_per_frame: float) -> dict[str, Any]:
    """N GPUs: each part of L frames costs L + K frames (the warm-up K/L), the join is serial (stream copy)."""
    rows = {}
    for n in (1, 2, 4, 8, 16):
        work = (part_frames + (warmup if n > 1 else 0)) * seconds_per_frame / part_frames  # per kept frame
        serial = join_seconds_per_frame
        rows[str(n)] = round(n * seconds_per_frame / (work + n * serial), 2)
    return {"part_frames": part_frames, "warmup": warmup, "warmup_share": round(warmup / part_frames, 4),
            "speedup_by_gpus": rows,
            "assumes": "every part the same length, workers never idle, the join a stream copy at the measured "
                       "seconds per frame"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fixture,standin", help="fixture, standin, or a model id / folder")
    parser.add_argument("--model-id", help="measure the published weights (or a folder) instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="32x24", help="input WxH")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--start", type=int, default=16, help="the segment's first kept frame")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (as one worker of a 2-core machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    models = [args.model_id] if args.model_id else [m for m in args.models.split(",") if m]
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = {**machine.describe(), "note": "other agents shared the 2 CPU cores during the measurement"}
    for model in models:
        frames = args.frames if model != "standin" else min(args.frames, args.start + 8)
        results.setdefault("quality", {})[model] = quality(model, args.device, size, frames, args.start)
        print(json.dumps(results["quality"][model]["summary"], indent=1), flush=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if not args.skip_speed:
        results["speed"] = {engine: speed(engine, frames, (32, 24) if engine != "bicubic" else (64, 48), 8)
                            for engine, frames in (("bicubic", 120), ("stream-diffvsr", 16))}
        for engine, row in results["speed"].items():
            per_frame = row["workers_1"]["seconds"] / row["frames"]
            join = row["workers_2"]["join_seconds"] / row["frames"]
            row["on_paper"] = on_paper(30 * 60, 8, join, per_frame)
        print(json.dumps(results["speed"], indent=1), flush=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
