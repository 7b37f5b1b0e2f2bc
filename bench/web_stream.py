"""Web job benchmark (issue 19): what streaming the result while it runs costs, and how soon it plays.

For each engine (bicubic at 320x180 -> 1280x720, where the second encode weighs most against a cheap
engine; the tiny Stream-DiffVSR fixture on the CPU at 64x48, a diffusion-like engine) on a generated
clip with AAC audio, the same job (``vsr.job.runner.run_piece`` with a checkpoint folder, as the web
app runs it) is timed without and with ``stream_dir``, ``--repeat`` times each, alternating; the best
of each is kept (the machine is shared). Reported: the job's seconds both ways and what the stream's
encode adds (%), and, with the stream, the seconds until the first chunk (the first playable second)
is on disk against the seconds until the verified file is there.

Run: ``.venv/bin/python bench/web_stream.py`` (``--quick``: fewer frames). Prints a markdown table and
writes ``bench/results/web_stream.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fixture_files  # noqa: E402
from bench import machine  # noqa: E402
from job_support import plan  # noqa: E402
from media.ts_chunks import list_chunks  # noqa: E402
from media_factory import make_video  # noqa: E402
from vsr.job.runner import run_piece  # noqa: E402
from vsr.model import engines  # noqa: E402
from vsr.options import build_options  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "web_stream.json"
CASES = (("bicubic", 320, 180), ("stream-diffvsr (tiny fixture, CPU)", 64, 48))


def options(engine: str, work: Path) -> Any:
    fixture = fixture_files.fixture_dir()
    values = {"engine": "bicubic" if engine == "bicubic" else "stream-diffvsr", "tmp_dir": work / "tmp",
              "cache_dir": work / "cache", "seed": 1, "device": "cpu", "precision": "fp32",
              "model_id": str(fixture / "model"), "flow_weights": str(fixture / "raft_large.safetensors")}
    return build_options(values, env={})


def one_job(job: Any, work: Path, stream: bool) -> dict[str, float | None]:
    """Seconds to the verified file, and (streamed) to the first chunk on disk."""
    folder = work / "stream"
    shutil.rmtree(folder, ignore_errors=True)
    first: dict[str, float] = {}
    done = threading.Event()
    started = time.perf_counter()

    def watch() -> None:
        while not done.is_set() and "at" not in first:
            if list_chunks(folder):
                first["at"] = time.perf_counter() - started
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = work / "out.mp4"
    output.unlink(missing_ok=True)
    run_piece(job, output, checkpoint_dir=work / "checkpoint", stream_dir=folder if stream else None)
    total = time.perf_counter() - started
    done.set()
    watcher.join()
    return {"seconds": total, "first_chunk_seconds": first.get("at")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--bicubic-only", action="store_true", help="leave out the fixture model (slow on a CPU)")
    args = parser.parse_args()
    seconds = 2 if args.quick else 6
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-web-stream-") as tmp:
        work = Path(tmp)
        for name, width, height in CASES[:1] if args.bicubic_only else CASES:
            frames = seconds * 30 if name == "bicubic" else seconds * 10  # the fixture: a third as long, some chunks
            clip = make_video(work / f"{width}x{height}.mp4", width, height, Fraction(30), frames, audio="aac")
            job = plan(clip, options(name, work), output=work / "out.mp4")
            engines.get_processor(job.options)  # loaded once, outside the timings
            plain, streamed = [], []
            for _ in range(args.repeat):
                plain.append(one_job(job, work, stream=False))
                streamed.append(one_job(job, work, stream=True))
            best_plain = min(r["seconds"] for r in plain)
            best = min(streamed, key=lambda r: r["seconds"])
            rows.append({"engine": name, "input": f"{width}x{height}", "output": f"{width * 4}x{height * 4}",
                         "frames": frames, "video_seconds": frames / 30, "job_seconds": round(best_plain, 2),
                         "streamed_job_seconds": round(best["seconds"], 2),
                         "stream_adds_pct": round(100 * (best["seconds"] - best_plain) / best_plain, 1),
                         "first_playable_seconds": round(best["first_chunk_seconds"] or float("nan"), 2)})
    command = " ".join(["python bench/web_stream.py", *sys.argv[1:]])
    result = {"machine": machine.describe(), "command": command, "load_average": os.getloadavg(), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(machine.label())
    print("| engine | input -> output | video | job | job + stream | stream adds | first playable second | finished file |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['engine']} | {r['input']} -> {r['output']} | {r['video_seconds']:g} s ({r['frames']} frames) | "
              f"{r['job_seconds']:.2f} s | {r['streamed_job_seconds']:.2f} s | {r['stream_adds_pct']:+.1f} % | "
              f"{r['first_playable_seconds']:.2f} s | {r['streamed_job_seconds']:.2f} s |")


if __name__ == "__main__":
    main()
