"""Job benchmark: what the streaming media path adds to model time, and peak memory against length.

1. Overhead. On one generated clip (moving texture + AAC audio), with the tiny Stream-DiffVSR
   fixture model on the CPU (so the model's time dominates, as with the real model on a GPU):

   - ``model alone``: the frames decoded up front into memory, then ``engine.process`` on each, timed;
   - ``job``: ``vsr.job.runner.run`` on the same clip and engine (decode thread -> model -> encode thread ->
     mux -> verify), timed from the call to the end of encoding, and to the end of verification.

   The goal is that decoding and encoding overlap the model, so the job takes less than 5 % more
   than the model. ``media_path_pct`` compares the job's wall time with the model time inside the
   same run (robust on a shared machine); ``vs_model_alone_pct`` with the separate model-only loop
   (the cleaner comparison on an idle machine, noisy on a busy one).
2. Memory. ``vsr upscale`` with the bicubic engine (large frames, little compute) on clips of two
   lengths, each in a fresh process; peak RSS should not grow with the length.
3. The CLI's wall time for the overhead clip (process start, imports, model load, the cached
   calibration, the plan, the job), for reference.

Run: ``.venv/bin/python bench/job.py`` (``--quick`` for a smoke run). Prints a markdown table and
writes ``bench/results/job.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's vsr and media, installed or not

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import fixture_files  # noqa: E402

FIXTURE = fixture_files.fixture_dir()  # tests/fixtures/stream-diffvsr-tiny
RESULTS = Path(__file__).resolve().parent / "results" / "job.json"
RATE = Fraction(30)


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A deterministic clip: a smooth colour texture panning 2 px/frame, H.264 + a stereo AAC tone."""
    y, x = np.mgrid[0:height, 0:width + 2 * frames].astype(np.float32)
    texture = np.stack([127 + 90 * np.sin(x / 9 + c) * np.cos(y / 7 - c) for c in range(3)], axis=2)
    texture = texture.clip(0, 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, 2 * i:2 * i + width]), format="rgb24")
            frame.pts = i
            frame.time_base = 1 / RATE
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(frames / RATE * 48000)
        t = np.arange(samples) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start:start + 1024]
            aframe = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            aframe.sample_rate, aframe.pts, aframe.time_base = 48000, start, Fraction(1, 48000)
            out.mux(audio.encode(aframe))
        out.mux(audio.encode(None))
    return path


def fixture_options(work: Path, **extra: object):
    from vsr.options import build_options

    values: dict[str, object] = {
        "engine": "stream-diffvsr", "model_id": str(FIXTURE / "model"),
        "flow_weights": str(FIXTURE / "raft_large.safetensors"), "device": "cpu", "precision": "fp32",
        "seed": 1234, "scene_cuts": "off", "tmp_dir": work / "tmp", "cache_dir": work / "cache",
    }
    values.update(extra)
    return build_options(values, env={})


def overhead(work: Path, width: int, height: int, frames: int, repeats: int) -> dict:
    import media
    from vsr import job
    from vsr.model.engines import get_processor

    clip = make_clip(work / f"overhead-{width}x{height}-{frames}.mp4", width, height, frames)
    options = fixture_options(work)
    engine = get_processor(options)
    plan = job.plan(clip, options, estimator=job.estimator_for(options, engine), output=work / "out.mp4")  # calibrates (cached for the CLI run below)

    with media.FrameReader(clip) as reader:
        lr = [frame.rgb for frame in reader]
    engine.start_stream(1234)
    engine.process(lr[0])  # warm-up, as the job's first frame comes after the plan's calibration

    # Alternate the two measurements and keep the fastest of each: the machine may be shared.
    model_alone = encoded = total = job_model = float("inf")
    for _ in range(repeats):
        engine.start_stream(1234)
        started = time.perf_counter()
        for rgb in lr:
            engine.process(rgb)
        model_alone = min(model_alone, time.perf_counter() - started)

        marks: dict[str, float] = {}

        def on_progress(event, marks=marks) -> None:
            marks.setdefault(event.stage, time.perf_counter())

        started = time.perf_counter()
        result = job.run(plan, work / "out.mp4", on_progress=on_progress, processor=engine)
        total = min(total, time.perf_counter() - started)
        encoded = min(encoded, marks["verifying"] - started)
        job_model = min(job_model, result.model_seconds)
    return {
        "engine": "stream-diffvsr tiny fixture, cpu fp32, 4 steps",
        "input": f"{width}x{height}", "output": f"{4 * width}x{4 * height}", "frames": frames,
        "model_alone_s": round(model_alone, 3),
        "job_model_s": round(job_model, 3),
        "job_to_encoded_s": round(encoded, 3),
        "job_with_verify_s": round(total, 3),
        "media_path_pct": round(100 * (encoded / job_model - 1), 2),
        "media_path_with_verify_pct": round(100 * (total / job_model - 1), 2),
        "vs_model_alone_pct": round(100 * (encoded / model_alone - 1), 2),
        "estimate_s": round(plan.estimate_seconds, 3),
        "verify_ok": result.report.ok,
        "clip": str(clip),
    }


def cli_wall(work: Path, clip: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(work / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(work / "cache"))
    argv = [sys.executable, "-m", "vsr", "upscale", str(clip), "-o", str(work / "cli.mp4"), "--overwrite",
            "--engine", "stream-diffvsr", "--model-id", str(FIXTURE / "model"), "--flow-weights",
            str(FIXTURE / "raft_large.safetensors"), "--device", "cpu", "--precision", "fp32", "--seed", "1234",
            "--scene-cuts", "off"]
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """Run ``vsr upscale`` in this fresh process and print its peak RSS (MiB) as JSON."""
    torch.set_num_threads(2)
    from vsr.cli import main

    started = time.perf_counter()
    code = main(["upscale", args.src, "-o", args.dest, "--overwrite", "--engine", "bicubic", "--preset", "ultrafast",
                 "--log-level", "ERROR"])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = round(time.perf_counter() - started, 2)
    print(json.dumps({"code": code, "peak_rss_mib": round(peak_mib, 1), "seconds": seconds}))


def memory(work: Path, width: int, height: int, lengths: list[int]) -> list[dict]:
    rows = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(STREAM_DIFFVSR_TMP_DIR=str(work / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(work / "cache"))
    for frames in lengths:
        clip = make_clip(work / f"mem-{frames}.mp4", width, height, frames)
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", "--src", str(clip),
             "--dest", str(work / f"mem-{frames}-out.mp4")],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        if data["code"] != 0:
            raise RuntimeError(f"vsr upscale failed on {clip}: {out.stderr[-2000:]}")
        rows.append({"engine": "bicubic", "input": f"{width}x{height}", "output": f"{4 * width}x{4 * height}",
                     "frames": frames, "seconds": data["seconds"], "peak_rss_mib": data["peak_rss_mib"]})
        clip.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-job-") as tmp:
        work = Path(tmp)
        if args.quick:
            over = overhead(work, 32, 24, 6, repeats=1)
            mem = memory(work, 160, 90, [20, 60])
        else:
            over = overhead(work, 32, 24, 12, repeats=2)
            mem = memory(work, 320, 180, [100, 400])
        over["cli_wall_s"] = round(cli_wall(work, Path(over.pop("clip"))), 2)
    result = {
        "machine": {**machine.describe(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": round(os.getloadavg()[0], 1)},
        "overhead": over,
        "memory": mem,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {machine.label(result['machine'])}\n")
    print("| measure | value |\n| --- | --- |")
    for key, value in over.items():
        print(f"| {key} | {value} |")
    print("\n| engine | input -> output | frames | seconds | peak RSS (MiB) |\n| --- | --- | --- | --- | --- |")
    for row in mem:
        print(f"| {row['engine']} | {row['input']} -> {row['output']} | {row['frames']} | {row['seconds']} | "
              f"{row['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
