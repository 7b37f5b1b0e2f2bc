"""Web app benchmark: what the page adds on top of the job.

1. ``before_after``: milliseconds to build the before/after slider picture for one frame at common
   output sizes (sent at most every 0.5 s while a job runs, so this bounds the page's CPU share).
2. Hand-over: ``vsr.job.runner.run`` called directly against the app's ``vsr.web.sessions.job_events`` (job thread +
   ``NewestEvent`` hand-over, as the page runs it), bicubic engine (fast, so overhead shows), same
   clip; median of a few runs.
3. End to end: ``/upscale`` through ``gradio_client`` against the real server (``python app.py`` in a
   subprocess; upload, queue, job, preview pictures, result copied to Gradio's cache, download)
   against ``vsr.job.runner.run`` on the same clip in this process.

Run: ``.venv/bin/python bench/app.py`` (``--quick`` for a smoke run). Prints a markdown table and
writes ``bench/results/app.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # app.py and the test clip / server helpers

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

import app  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)
from app_harness import AppServer  # noqa: E402
from media_factory import make_video  # noqa: E402
from vsr import job  # noqa: E402
from vsr.web import sessions  # noqa: E402
from vsr.web.preview import before_after  # noqa: E402
from vsr.options import build_options  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "app.json"
import fixture_files  # noqa: E402

FIXTURE = fixture_files.fixture_dir()  # tests/fixtures/stream-diffvsr-tiny


def bench_before_after(repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    for label, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080), "4K": (3840, 2160)}.items():
        low = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        high = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        before_after(low, high)
        start = time.perf_counter()
        for _ in range(repeats):
            before_after(low, high)
        out[label] = (time.perf_counter() - start) / repeats * 1000
    return out


def bench_handover(clip: Path, work: Path, repeats: int) -> dict[str, float]:
    options = build_options({"engine": "bicubic", "tmp_dir": str(work / "tmp"), "cache_dir": str(work / "cache"),
                             "output_dir": str(work / "out")}, env={})
    plan = job.plan(clip, options, estimator=job.estimator_for(options))
    job.run(plan, work / "warm-up.mp4")  # first-call costs (encoder set-up, imports) count for neither side
    direct, through = [], []
    for i in range(repeats):
        start = time.perf_counter()
        job.run(plan, work / f"direct{i}.mp4")
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in sessions.job_events(plan, str(work / f"app{i}.mp4"), f"bench{i}"):
            pass
        through.append(time.perf_counter() - start)
    return {"frames": plan.frames, "direct_s": statistics.median(direct), "app_s": statistics.median(through)}


def bench_end_to_end(clip: Path, work: Path) -> dict[str, float]:
    from gradio_client import Client, handle_file

    options = build_options({"engine": "bicubic", "tmp_dir": str(work / "tmp"), "cache_dir": str(work / "cache")},
                            env={})
    plan = job.plan(clip, options, estimator=job.estimator_for(options))
    start = time.perf_counter()
    job.run(plan, work / "direct.mp4")
    direct = time.perf_counter() - start
    server = AppServer(base=work / "server", fixture_dir=FIXTURE, cache_dir=work / "cache").start()
    try:
        client = Client(server.url, verbose=False, download_files=str(work / "downloads"))
        args = (handle_file(str(clip)), "bicubic", "4x", "", "", 4, "", "h264", 18, True)
        client.predict(*args, api_name="/plan")  # the engine and its calibration are ready, as for a visitor
        start = time.perf_counter()
        status = client.predict(*args, api_name="/upscale")[0]
        through = time.perf_counter() - start
    finally:
        server.stop()
    assert status.startswith("Done"), status
    return {"frames": plan.frames, "direct_s": direct, "app_s": through}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clip, one repeat (smoke run)")
    quick = parser.parse_args().quick
    frames, repeats = (30, 1) if quick else (150, 3)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        previous, tempfile.tempdir = tempfile.tempdir, tmp  # gradio_client leaves an empty folder per download
        clip = make_video(work / "clip.mp4", 320, 180, Fraction(30000, 1001), frames)
        results = {
            "machine": {**machine.describe(), "torch_threads": torch.get_num_threads()},
            "before_after_ms": bench_before_after(2 if quick else 5),
            "handover": bench_handover(clip, work, repeats),
            "end_to_end": bench_end_to_end(clip, work),
        }
    tempfile.tempdir = previous
    print(f"Measured on {machine.label(results['machine'])}.\n")
    print("| measurement | value |\n| --- | --- |")
    for label, ms in results["before_after_ms"].items():
        print(f"| before/after picture, {label} output | {ms:.1f} ms |")
    for key, title in (("handover", "job thread + hand-over"), ("end_to_end", "server, end to end")):
        r = results[key]
        extra = (r["app_s"] - r["direct_s"]) / r["direct_s"] * 100
        print(f"| {title} ({r['frames']} frames 320x180 -> 1280x720, bicubic) | direct {r['direct_s']:.2f} s, "
              f"app {r['app_s']:.2f} s ({extra:+.0f} %) |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
