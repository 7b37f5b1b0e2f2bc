"""``vsr stream`` on this machine: sustained output rate, latency and drops per engine and input size.

For each engine (bicubic; the tiny fixture model, ``tests/fixtures/stream-diffvsr-tiny``; the full-size
stand-in, ``bench/standin.py``, only at a small size and briefly) and each input size, a 25 fps clip with audio is made with ``tests/media_factory.make_video`` and
played into ``vsr stream CLIP -o out.m3u8 --realtime`` (a file at its own rate is a live source: frames
the engine cannot take in time are dropped). From the command's own summary line: frames in, out and
dropped, the stream's length (from the first read to the last frame written: a slow engine goes on after
the clip's end), the latency from a frame's arrival to its upscaled frame being written (median, 95th
percentile) and the first output's delay. The sustained output rate is frames out / the stream's length. An
engine "sustains 25 fps" at a size when it dropped at most ``SUSTAINED_DROP`` of the frames.

Run: ``.venv/bin/python bench/latency.py [--quick] [--no-standin]``. Prints a markdown table and writes
``bench/results/latency.json`` (with the machine, the date and the load average: other programs
sharing the CPU slow the engine and raise the drops).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fixture_files  # noqa: E402
from bench import machine  # noqa: E402
from media_factory import make_video  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
RATE = 25
SUSTAINED_DROP = 0.02
MAX_LATENCY = 1.0
SUMMARY = re.compile(r"Stream:\s+(\d+) frames in, (\d+) out, (\d+) dropped \([0-9.]+%\) in ([0-9.]+) s; latency "
                     r"median ([0-9.]+|-)(?: s)?, p95 ([0-9.]+|-)(?: s)?; first output after ([0-9.]+|-)")

SIZES = {  # ascending
    "bicubic": [(64, 48), (160, 120), (320, 240), (640, 360)],
    "fixture": [(32, 24), (64, 48)],
    "standin": [(32, 32)],
}
SECONDS = {"bicubic": 8, "fixture": 6, "standin": 4}


def engine_args(name: str) -> list[str]:
    if name == "bicubic":
        return ["--engine", "bicubic"]
    if name == "fixture":
        folder = fixture_files.fixture_dir()
        return ["--model-id", str(folder / "model"), "--flow-weights", str(folder / "raft_large.safetensors"),
                "--device", "cpu", "--precision", "fp32", "--seed", "1"]
    from bench import standin

    folder = standin.ensure()
    return ["--model-id", str(folder), "--flow-weights", str(folder / "raft_large.safetensors"),
            "--device", "cpu", "--precision", "fp32", "--seed", "1"]


def run_one(name: str, size: tuple[int, int], seconds: int, work: Path) -> dict[str, Any]:
    width, height = size
    clip = make_video(work / f"clip-{width}x{height}.mp4", width, height, Fraction(RATE), seconds * RATE,
                      audio="aac")
    out = work / f"{name}-{width}x{height}" / "out.m3u8"
    out.parent.mkdir()
    command = [sys.executable, "-m", "vsr", "stream", str(clip), "-o", str(out), "--realtime", "--max-latency",
               f"{MAX_LATENCY:g}", *engine_args(name)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAM_DIFFVSR_CACHE_DIR": str(work / "cache")}
    load = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 900)
    if done.returncode != 0:
        raise SystemExit(f"{name} {width}x{height}: vsr stream failed ({done.returncode}): {done.stderr[-2000:]}")
    match = SUMMARY.search(done.stdout)
    if match is None:
        raise SystemExit(f"{name} {width}x{height}: no summary line in: {done.stdout}")
    frames_in, frames_out, dropped = (int(v) for v in match.groups()[:3])
    seconds = float(match.group(4))
    median, p95, first = (None if v == "-" else float(v) for v in match.groups()[4:])
    share = dropped / frames_in if frames_in else 1.0
    return {"engine": name, "input": f"{width}x{height}", "output": f"{4 * width}x{4 * height}",
            "frames_in": frames_in, "frames_out": frames_out, "dropped": dropped, "dropped_share": round(share, 4),
            "stream_s": seconds, "output_fps": round(frames_out / seconds, 3) if seconds > 0 else 0.0,
            "latency_median_s": median, "latency_p95_s": p95, "first_output_s": first,
            "sustains_25fps": share <= SUSTAINED_DROP, "load_average_before": round(load, 1),
            "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the first two sizes of each engine only")
    parser.add_argument("--no-standin", action="store_true", help="skip the full-size stand-in model")
    parser.add_argument("--engines", default="bicubic,fixture,standin", help="comma list (default all three)")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if not (e == "standin" and args.no_standin)]
    runs: list[dict[str, Any]] = []
    largest: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="vsr-latency-") as tmp:
        for name in engines:
            largest[name] = None
            for size in SIZES[name][: 2 if args.quick else None]:
                run = run_one(name, size, SECONDS[name], Path(tmp))
                runs.append(run)
                print(json.dumps(run), flush=True)
                if run["sustains_25fps"]:
                    largest[name] = run["input"]
    result = {"machine": machine.describe(), "command": "vsr stream CLIP -o out.m3u8 --realtime --max-latency 1 "
              "(25 fps clip with AAC audio, made by tests/media_factory.make_video)",
              "note": "the CPU was shared with other programs during the run (load_average_before); figures vary "
                      "with that load", "rate": RATE, "sustained_drop": SUSTAINED_DROP, "runs": runs,
              "largest_sustained_at_25fps": largest}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n{machine.label(result['machine'])}\n")
    print("| engine | input -> output | out fps | dropped | latency median | p95 | first output | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r['engine']} | {r['input']} -> {r['output']} | {r['output_fps']:.2f} | {r['dropped_share']:.0%} | "
              f"{r['latency_median_s']} s | {r['latency_p95_s']} s | {r['first_output_s']} s | "
              f"{r['load_average_before']} |")
    print("\nlargest input sustained at 25 fps:", largest)


if __name__ == "__main__":
    main()
