"""Estimate benchmark: the plan's time estimate against the real job, on real clips.

Each case plans a job the way the CLI and the page do (``vsr.job.estimator_for``: the engine's
calibration and the media costs measured on this machine; nothing is assumed), then runs it with
``vsr.job.run`` and times it, start to verified file. ``ratio`` is estimated / real: the goal is
0.67 to 1.5 for every case. ``engine only`` is what the estimate was before the media side was
modelled (the engine's seconds per frame times the frames), for comparison.

Clips: the gradio wheel's real 480x270 clips (b.mp4, 5 s; world.mp4, 30 s) and its real 1920x1080
clip (a.mp4, a title card); a 1280x720 clip made with tests/media_factory.py (a drifting
checkerboard: hard for encoders); the diffusion engine is the tiny Stream-DiffVSR fixture on the
CPU (tests/fixtures/stream-diffvsr-tiny) on a small clip, because it is slow there.

Run: ``.venv/bin/python bench/estimates.py`` (about 15 minutes on a busy 2-core machine, most of it
the diffusion fixture; ``--only bicubic`` leaves it out, ``--long`` adds longer and larger cases,
``--quick`` is a smoke run). Prints a markdown table and writes bench/results/estimates.json (the
full default run only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's vsr and media, installed or not

import torch  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # media_factory makes the generated clips
import fixture_files  # noqa: E402

FIXTURE = fixture_files.fixture_dir()  # tests/fixtures/stream-diffvsr-tiny
RESULTS = Path(__file__).resolve().parent / "results" / "estimates.json"


@dataclass(frozen=True)
class Case:
    """One job: ``clip`` (a name from ``clips``), the engine, and the options that differ."""

    name: str
    clip: str
    engine: str = "bicubic"
    options: dict = field(default_factory=dict)


DEFAULT = (
    Case("480p, 2 s", "b.mp4", options={"end": 2}),
    Case("480p, 8 s (long)", "world.mp4", options={"end": 8}),
    Case("480p, 1 s, HEVC", "b.mp4", options={"end": 1, "codec": "hevc"}),
    Case("480p, 1 s, ProRes", "b.mp4", options={"end": 1, "codec": "prores"}),
    Case("480p, 2 s, 720p preset", "world.mp4", options={"start": 10, "end": 12, "height": "720"}),
    Case("720p, 0.5 s", "checker-720p.mp4", options={"end": 0.5}),
    Case("1080p, 0.3 s, 4K preset", "a.mp4", options={"start": 4, "end": 4.3, "height": "2160"}),
    Case("diffusion 32x24, 8 frames", "checker-32x24.mp4", "stream-diffvsr"),
)
LONG = (
    Case("480p, 30 s (long)", "world.mp4"),
    Case("480p, 5 s, AV1", "b.mp4", options={"codec": "av1"}),
    Case("720p, 2 s", "checker-720p.mp4", options={"end": 2}),
    Case("1080p, 1 s", "a.mp4", options={"start": 4, "end": 5}),
    Case("diffusion 64x48, 12 frames", "checker-64x48.mp4", "stream-diffvsr"),
)
QUICK = (
    Case("480p, 0.5 s", "b.mp4", options={"end": 0.5}),
    Case("480p, 0.5 s, HEVC", "b.mp4", options={"end": 0.5, "codec": "hevc"}),
)


def clips(work: Path) -> dict[str, Path]:
    """The benchmark's clips: gradio's real ones, and the generated ones."""
    import gradio
    from media_factory import make_video

    videos = Path(gradio.__file__).resolve().parent / "media_assets" / "videos"
    found = {name: videos / name for name in ("a.mp4", "b.mp4", "world.mp4")}
    found["checker-720p.mp4"] = make_video(work / "checker-720p.mp4", 1280, 720, Fraction(30), 60)
    found["checker-32x24.mp4"] = make_video(work / "checker-32x24.mp4", 32, 24, Fraction(30), 8)
    found["checker-64x48.mp4"] = make_video(work / "checker-64x48.mp4", 64, 48, Fraction(30), 12)
    return found


def options_for(case: Case, work: Path):
    from vsr.options import build_options

    values: dict[str, object] = {"engine": case.engine, "tmp_dir": work / "tmp", "cache_dir": work / "cache",
                                 "seed": 1234, "device": "cpu", "precision": "fp32"}
    if case.engine == "stream-diffvsr":
        values.update(model_id=str(FIXTURE / "model"), flow_weights=str(FIXTURE / "raft_large.safetensors"))
    values.update(case.options)
    return build_options(values, env={})


def measure(case: Case, clip: Path, work: Path) -> dict:
    """Plan ``case`` (measuring what is not cached yet, as the CLI does), then run it and time it."""
    from vsr import job

    options = options_for(case, work)
    output = work / f"out{job.encode_settings(options).suffix}"
    estimator = job.estimator_for(options)
    started = time.perf_counter()
    planned = job.plan(clip, options, estimator=estimator, output=output)
    plan_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = job.run(planned, output)
    real = time.perf_counter() - started
    output.unlink()
    stages = planned.stages
    return {
        "case": case.name, "clip": clip.name, "engine": case.engine, "codec": options.codec,
        "input": f"{planned.info.video.width}x{planned.info.video.height}",
        "output": f"{planned.size.width}x{planned.size.height}", "frames": result.frames,
        "estimated_s": round(planned.estimate_seconds, 2), "real_s": round(real, 2),
        "ratio": round(planned.estimate_seconds / real, 2),
        "engine_only_s": round(planned.seconds_per_frame * planned.frames, 2),
        "engine_only_ratio": round(planned.seconds_per_frame * planned.frames / real, 2),
        "plan_s": round(plan_seconds, 2), "stages": {k: round(v, 4) if isinstance(v, float) else v
                                                     for k, v in stages.to_dict().items()},
        "model_s": round(result.model_seconds, 2), "verified": result.report.ok,
    }


def table(rows: list[dict]) -> str:
    lines = ["| clip | engine | input -> output | frames | estimated | real | ratio | engine only (before) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        engine = "bicubic" if row["engine"] == "bicubic" else "Stream-DiffVSR tiny"
        lines.append(f"| {row['case']} ({row['clip']}) | {engine}, {row['codec']} | {row['input']} -> "
                     f"{row['output']} | {row['frames']} | {row['estimated_s']} s | {row['real_s']} s | "
                     f"{row['ratio']} | {row['engine_only_s']} s ({row['engine_only_ratio']}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also the longer and larger cases")
    parser.add_argument("--quick", action="store_true", help="two short cases, for a smoke run")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    cases = QUICK if args.quick else DEFAULT + (LONG if args.long else ())
    if args.only:
        cases = tuple(case for case in cases if args.only in case.name or args.only == case.engine)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimates-") as tmp:
        work = Path(tmp)
        found = clips(work)
        for case in cases:
            row = measure(case, found[case.clip], work)
            print(f"{case.name}: estimated {row['estimated_s']} s, real {row['real_s']} s, ratio {row['ratio']}",
                  flush=True)
            rows.append(row)
    result = {
        "machine": {**machine.describe(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": round(os.getloadavg()[0], 1)},
        "command": "python bench/estimates.py" + (" --long" if args.long else "") + (" --quick" if args.quick else ""),
        "cases": rows,
    }
    if not args.quick and not args.only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nmachine: {machine.label(result['machine'])}\n\n{table(rows)}")


if __name__ == "__main__":
    main()
