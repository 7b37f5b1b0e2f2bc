"""Model benchmark: the streaming Stream-DiffVSR engine on the full-size stand-in (BENCH-MODEL.md).

Cases, each in a fresh child process (so memory figures are per case), 2 threads, CPU:

- ``fp32-64``: 64x64 -> 256x256, fp32. Frames alternate between this project's engine and a
  "naive" engine that shares the same loaded networks but does the reference's per-step work
  (diffusers' ``ControlNetModel.forward`` at every step: conditioning embedding of the same warped
  image and time embedding recomputed). Alternating frame by frame puts both under the same machine
  load, so their ratio is meaningful on a shared machine even when absolute times are not.
- ``bf16-64``: 64x64, bf16 (no autocast: the networks are loaded in bf16; RAFT, the DDIM step and
  the carried state stay fp32), RSS after 4 and 16 frames, and the deviation of its pixels from the
  fp32 run (same seed, same frames).
- ``fp32-160`` / ``bf16-160``: 90x160 -> 360x640 (padded to 92x160 internally, cropped back),
  ``--frames-160`` frames each.

The table is headed by the CPU and the date (``bench/machine.py``); figures of other machines are never
printed beside these. Each case reports: seconds per frame (frames after the first: the steady state, with ControlNet and
RAFT), the time from ``start_stream`` to the first returned frame, RSS after each frame and the
process's peak RSS. Results go to bench/results/model.json and a markdown table is printed.

Run: ``.venv/bin/python bench/model.py`` (``--budget SECONDS`` stops starting new cases after that
long; ``--cases fp32-64,bf16-64`` picks cases; ``--rss-frames 16``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import machine  # bench/machine.py: the CPU and the date beside every figure

RESULTS = Path(__file__).resolve().parent / "results" / "model.json"
CASES = {
    "fp32-64": ("fp32", 64, 64),
    "bf16-64": ("bf16", 64, 64),
    "fp32-160": ("fp32", 90, 160),
    "bf16-160": ("bf16", 90, 160),
}
# No fixed figures of other machines here: the reference-structured path ("naive") is measured in the same
# run, frame by frame in turn with ours, so their ratio is this machine's; every figure is labelled with the
# CPU and the date it was measured on (bench/machine.py).


def clip(height: int, width: int, frames: int) -> list[np.ndarray]:
    """A deterministic low-res clip: a smooth random texture panning 1-2 px per frame."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (height // 4 + 8, (width + 2 * frames) // 4 + 8, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big, 4, axis=0), 4, axis=1).astype(np.float32)
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1) + np.roll(big, (1, 1), (0, 1))) / 4
    crops = [big[i % 3 : i % 3 + height, 2 * i : 2 * i + width] for i in range(frames)]
    return [np.ascontiguousarray(c.astype(np.uint8)) for c in crops]


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(case: str, frames: int, out: Path, ref_dir: Path) -> None:
    import torch

    torch.set_num_threads(2)
    from standin import ensure

    from vsr.model import load_engine
    from vsr.model.stream import StreamDiffVSRUpscaler

    class NaiveUpscaler(StreamDiffVSRUpscaler):
        """The reference's per-step work: diffusers' ControlNet forward (conditioning embedding included) each step."""

        def _denoise(self, latents, lr, cond):
            warped = self._warped
            for t in self.timesteps:
                sample = torch.cat([latents.to(self.dtype), lr], dim=1)
                down = mid = None
                if warped is not None:
                    down, mid = self.controlnet(sample, t, encoder_hidden_states=self.text, controlnet_cond=warped,
                                                conditioning_scale=1.0, return_dict=False)
                pred = self.unet(sample, t, encoder_hidden_states=self.text, down_block_additional_residuals=down,
                                 mid_block_additional_residual=mid, return_dict=False)[0]
                latents = self.scheduler.step(pred.float(), t, latents, eta=0.0, return_dict=False)[0]
            return latents

    precision, height, width = CASES[case]
    folder = ensure()
    t0 = time.perf_counter()
    engine = load_engine("stream-diffvsr", model_id=str(folder), flow_weights=folder / "raft_large.safetensors",
                         device="cpu", precision=precision, seed=7)
    load_s = time.perf_counter() - t0
    naive = None
    if case == "fp32-64":
        naive = NaiveUpscaler(engine.unet, engine.controlnet, engine.vae, engine.scheduler, engine.text.float(),
                              engine.raft, device="cpu", precision="fp32")
        naive.start_stream(7)
        warp = naive.warp

        def capture(image, flow):  # keep the warped image for the naive ControlNet call
            naive._warped = warp(image, flow).to(naive.dtype)
            return naive._warped

        naive._warped = None
        naive.warp = capture
    result: dict = {"case": case, "precision": precision, "lr": [height, width], "load_s": load_s,
                    "rss_after_load_mb": rss_mb(), "frames": [], "naive_frames": []}
    outputs = []
    start = time.perf_counter()
    for i, frame in enumerate(clip(height, width, frames)):
        t = time.perf_counter()
        upscaled = engine.process(frame)
        seconds = time.perf_counter() - t
        if i == 0:
            result["first_output_s"] = time.perf_counter() - start
        result["frames"].append({"index": i, "seconds": seconds, "rss_mb": rss_mb()})
        outputs.append(upscaled)
        if naive is not None and i < 4:
            t = time.perf_counter()
            naive_out = naive.process(frame)
            seconds_naive = time.perf_counter() - t
            diff = int(np.abs(naive_out.astype(int) - upscaled).max())
            result["naive_frames"].append({"index": i, "seconds": seconds_naive, "max_abs_diff_vs_optimized": diff})
        print(f"[{case}] frame {i}: {seconds:.2f} s, RSS {rss_mb():.0f} MB", file=sys.stderr, flush=True)
    result["peak_rss_mb"] = peak_rss_mb()
    ref_file = ref_dir / f"fp32-{height}x{width}.npy"
    if precision == "fp32":
        np.save(ref_file, np.stack(outputs[:4]))
    elif ref_file.is_file():
        ref = np.load(ref_file).astype(int)
        ours = np.stack(outputs[: len(ref)]).astype(int)
        diff = np.abs(ours - ref[: len(ours)])
        result["deviation_vs_fp32_8bit"] = {"frames": len(ours), "max": int(diff.max()), "mean": float(diff.mean()),
                                            "p99": float(np.percentile(diff, 99))}
    out.write_text(json.dumps(result, indent=1))


def summarise(r: dict) -> dict:
    steady = [f["seconds"] for f in r["frames"][1:]]
    naive = [f["seconds"] for f in r["naive_frames"][1:]]
    opt_paired = [f["seconds"] for f in r["frames"][1 : len(r["naive_frames"])]]
    # Median of per-frame ratios: a load spike on the shared machine hits one frame of one engine.
    ratios = [n / o for n, o in zip(naive, opt_paired)]
    s = {
        "s_per_frame": float(np.median(steady)) if steady else None,
        "first_output_s": r.get("first_output_s"),
        "rss_after_4_mb": r["frames"][3]["rss_mb"] if len(r["frames"]) > 3 else None,
        "rss_after_16_mb": r["frames"][15]["rss_mb"] if len(r["frames"]) > 15 else None,
        "peak_rss_mb": r["peak_rss_mb"],
    }
    if naive:
        s["naive_s_per_frame"] = float(np.median(naive))
        s["speedup_vs_naive_same_run"] = float(np.median(ratios))
        s["speedup_vs_naive_per_frame"] = [round(x, 3) for x in ratios]
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--budget", type=float, default=900.0, help="seconds; no new case starts after this")
    parser.add_argument("--rss-frames", type=int, default=16)
    parser.add_argument("--frames", type=int, default=3, help="frames of fp32-64 (each also run by the naive engine)")
    parser.add_argument("--frames-160", type=int, default=2, help="frames of the 90x160 cases")
    parser.add_argument("--merge", action="store_true", help="update the given cases in the existing results file")
    parser.add_argument("--table", action="store_true", help="re-summarise the results file and print the table")
    parser.add_argument("--child")
    parser.add_argument("--out")
    parser.add_argument("--ref-dir")
    args = parser.parse_args(argv)
    if args.child:
        frames = {"bf16-64": args.rss_frames, "fp32-64": args.frames}.get(args.child, args.frames_160)
        child(args.child, frames, Path(args.out), Path(args.ref_dir))
        return 0
    if args.table:
        results = json.loads(RESULTS.read_text())
        for case, entry in results["cases"].items():
            if "raw" in entry:
                results["cases"][case] = {**summarise(entry["raw"]), "raw": entry["raw"]}
        RESULTS.write_text(json.dumps(results, indent=1))
        print(table(results))
        return 0
    import standin

    standin.ensure()
    begin = time.monotonic()
    results: dict = {"machine": machine.describe(), "threads": 2, "cases": {}}
    if args.merge and RESULTS.is_file():
        results["cases"] = json.loads(RESULTS.read_text())["cases"]
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        for case in args.cases.split(","):
            if time.monotonic() - begin > args.budget:
                results["cases"][case] = {"skipped": f"time budget of {args.budget:.0f} s used up"}
                continue
            out = Path(tmp) / f"{case}.json"
            cmd = [sys.executable, __file__, "--child", case, "--out", str(out), "--ref-dir", tmp,
                   "--rss-frames", str(args.rss_frames), "--frames", str(args.frames),
                   "--frames-160", str(args.frames_160)]
            proc = subprocess.run(cmd)
            if proc.returncode != 0:
                results["cases"][case] = {"error": f"child exited with {proc.returncode}"}
                continue
            raw = json.loads(out.read_text())
            results["cases"][case] = {**summarise(raw), "raw": raw}
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))  # keep what is done if a later case is cut short
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


def table(results: dict) -> str:
    def fmt(v, spec=".2f"):
        return "-" if v is None else format(v, spec)

    rows = [f"Measured on {machine.label(results.get('machine'))}, {results.get('threads', 2)} threads.", "",
            "| case | s/frame | naive s/frame (same run) | speedup vs naive | first output (s) "
            "| RSS after 4 / 16 frames (MB) | peak RSS (MB) | 8-bit deviation vs fp32 (max / mean) |",
            "|---|---|---|---|---|---|---|---|"]
    for case, s in results["cases"].items():
        if "s_per_frame" not in s:
            rows.append(f"| {case} | {s.get('skipped') or s.get('error')} ||||||")
            continue
        dev = s["raw"].get("deviation_vs_fp32_8bit")
        dev_text = "-" if not dev else f"{dev['max']} / {dev['mean']:.3f}"
        rows.append(
            f"| {case} | {fmt(s['s_per_frame'])} | {fmt(s.get('naive_s_per_frame'))} | "
            f"{fmt(s.get('speedup_vs_naive_same_run'))} | {fmt(s['first_output_s'])} | "
            f"{fmt(s['rss_after_4_mb'], '.0f')} / {fmt(s['rss_after_16_mb'], '.0f')} | "
            f"{fmt(s['peak_rss_mb'], '.0f')} | "
            f"{dev_text} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
