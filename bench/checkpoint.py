"""Checkpoint benchmark: what keeping a resumable checkpoint every N seconds of work costs a job.

The same job (a generated 320x180 clip with AAC audio -> 1280x720 H.264, the default CRF 18 and
preset medium) runs with checkpoints every N seconds of work and without any, alternated in one run
(the fastest of ``--repeats`` kept for each, as the machine may be shared). Two engines:

- ``bicubic``: almost no work per frame, so the encoder and the checkpoints dominate: the worst
  case for the overhead;
- ``model stand-in``: bicubic plus a fixed 0.2 s per frame (a diffusion model on a GPU at about
  5 frames/s at 720p; sleeping, so it leaves the CPU to the encoder as a GPU would), carrying a
  stream state the size of Stream-DiffVSR's at 720p (two 1x3x720x1280 float32 tensors, 22 MB) that
  every checkpoint copies and saves.

``overhead_pct`` is the job's wall time with checkpoints against without, in per cent;
``commit_ms`` the mean time of one checkpoint in the encode thread (close the segment, copy and
save the state), which runs while the model works on the next frames. Every job,
with or without checkpoints, writes its video as segments and joins them at the end (stream copy +
audio; then the verification): ``join_s`` is the join alone, ``join_pct`` its share of the job.

Run: ``.venv/bin/python bench/checkpoint.py`` (``--quick`` for a smoke run). Prints a markdown table
and writes ``bench/results/checkpoint.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's vsr and media, installed or not

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

RESULTS = Path(__file__).resolve().parent / "results" / "checkpoint.json"
MODEL_SECONDS = 0.2


def _engines() -> dict:
    from vsr.model.bicubic import BicubicUpscaler

    class ModelStandIn(BicubicUpscaler):
        """Bicubic + a fixed time per frame, with a Stream-DiffVSR-sized stream state to checkpoint."""

        def start_stream(self, seed: int | None = None) -> int:
            self.carried: torch.Tensor | None = None
            return super().start_stream(seed)

        def process(self, rgb: np.ndarray) -> np.ndarray:
            time.sleep(MODEL_SECONDS)
            out = super().process(rgb)
            self.carried = torch.from_numpy(out).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1)
            return out

        def save_stream(self) -> dict:
            state = super().save_stream()
            return {**state, "carried": None if self.carried is None else self.carried.clone()}

        def load_stream(self, state: object) -> None:
            assert isinstance(state, dict)
            super().load_stream({k: v for k, v in state.items() if k != "carried"})
            self.carried = state["carried"]

    return {"bicubic": BicubicUpscaler, "model stand-in": ModelStandIn}


def _one(job_plan, engine, work: Path, interval: float | None, run_id: str) -> dict:
    """One job; ``interval`` None: no checkpoints (a scratch folder, one segment)."""
    from vsr import job
    from vsr.job import checkpoint
    from vsr.job.segments import SegmentedVideo

    saves = {"n": 0}
    commits: list[float] = []
    original, original_commit = checkpoint.save, SegmentedVideo.commit

    def counting_save(folder, saved) -> None:
        saves["n"] += 1
        original(folder, saved)

    def timed_commit(self, **changes):
        tick = time.perf_counter()
        try:
            return original_commit(self, **changes)
        finally:
            commits.append(time.perf_counter() - tick)

    plan = job_plan if interval is None else dataclasses.replace(
        job_plan, options=job_plan.options.replace(checkpoint_seconds=interval))
    marks: dict[str, float] = {}

    def on_progress(event) -> None:
        stage = "joining" if event.stage == "finishing" and event.message.startswith("joining") else event.stage
        marks.setdefault(stage, time.perf_counter())

    checkpoint.save, SegmentedVideo.commit = counting_save, timed_commit
    try:
        started = time.perf_counter()
        result = job.run(plan, work / f"{run_id}.mp4", processor=engine,
                         checkpoint_dir=None if interval is None else work / f"{run_id}.ckpt",
                         on_progress=on_progress)
        seconds = time.perf_counter() - started
    finally:
        checkpoint.save, SegmentedVideo.commit = original, original_commit
    assert result.report.ok
    (work / f"{run_id}.mp4").unlink()
    periodic = commits[:-1]  # the last commit closes the last segment, with or without checkpoints
    return {"seconds": seconds, "join": marks["verifying"] - marks["joining"], "saves": saves["n"],
            "commit_ms": 1000 * sum(periodic) / len(periodic) if periodic else 0.0}


def measure(work: Path, frames: int, intervals: list[float], repeats: int) -> list[dict]:
    from vsr import job
    from vsr.options import build_options

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from media_factory import make_video

    clip = make_video(work / "clip.mp4", 320, 180, 30, frames, audio="aac")
    rows = []
    for name, factory in _engines().items():
        options = build_options({"engine": "bicubic", "seed": 1, "tmp_dir": work / "tmp", "cache_dir": work / "cache",
                                 "scene_cuts": "off"}, env={})
        plan = job.plan(clip, options, estimator=job.estimator_for(options), output=work / "out.mp4")
        best: dict[float | None, dict] = {}
        for repeat in range(repeats):
            for interval in [None, *intervals]:
                got = _one(plan, factory(), work, interval, f"{repeat}-{interval}")
                if interval not in best or got["seconds"] < best[interval]["seconds"]:
                    best[interval] = got
        base = best[None]["seconds"]
        for interval, got in best.items():
            rows.append({
                "engine": name, "frames": frames, "checkpoint_every_s": interval,
                "job_s": round(got["seconds"], 2), "checkpoints": got["saves"],
                "overhead_pct": round(100 * (got["seconds"] / base - 1), 2),
                "join_s": round(got["join"], 2), "join_pct": round(100 * got["join"] / got["seconds"], 2),
                "commit_ms": round(got["commit_ms"], 1),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short clip, one repeat, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        if args.quick:
            rows = measure(Path(tmp), 30, [1.0], repeats=1)
        else:
            rows = measure(Path(tmp), 200, [2.0, 10.0], repeats=args.repeats)
    result = {
        "machine": {**machine.describe(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": round(os.getloadavg()[0], 1)},
        "job": "320x180 -> 1280x720 H.264 CRF 18 preset medium, AAC copied, verified",
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {machine.label(result['machine'])}\njob: {result['job']}\n")
    print("| engine | frames | checkpoint every | job s | checkpoints | one checkpoint (encode thread) | overhead | "
          "join s (share) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        every = "none" if row["checkpoint_every_s"] is None else f"{row['checkpoint_every_s']:g} s"
        one = f"{row['commit_ms']:.0f} ms" if row["checkpoints"] else "-"
        print(f"| {row['engine']} | {row['frames']} | {every} | {row['job_s']} | {row['checkpoints']} | {one} | "
              f"{row['overhead_pct']:+.2f} % | {row['join_s']} ({row['join_pct']:.1f} %) |")


if __name__ == "__main__":
    main()
