"""Soak benchmark: does a long-running web app's memory level off?

Starts the real app (``app.build_demo`` + ``launch`` in a child process of this script, on a free
port, bicubic engine, folders in a temporary directory) and sends ``--jobs`` jobs through
``gradio_client`` in waves of ``--clients`` concurrent clients (each a new ``Client``, so a new
session, uploading a 1-second 64x48 clip to ``/upscale``). After each wave the server reports, over
its stdin/stdout, its RSS, its Python heap (``tracemalloc``, after a ``gc.collect()``), the live
objects of each type that grew, and the allocation sites that grew most since the previous wave.

Run: ``.venv/bin/python bench/soak.py --jobs 160 --clients 16`` (``--arena-max 2`` runs the server
with ``MALLOC_ARENA_MAX=2``; ``--no-trace`` without tracemalloc, which slows the server down).
Prints one line per wave and writes ``bench/results/soak.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # app.py and the test clip / server helpers

RESULTS = ROOT / "bench" / "results" / "soak.json"
TRACE_FRAMES = 8
OUR_MODULES = ("vsr.", "media.", "app")


# ============================================================================= the server side


def _type_counts() -> Counter[str]:
    """Live objects per type, for our own classes and Gradio's (the rest is builtins' noise)."""
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = getattr(kind, "__module__", None)
        module = module if isinstance(module, str) else ""  # some C types answer with a descriptor
        if module.startswith(OUR_MODULES) or module.startswith(("gradio", "starlette", "fastapi", "anyio")):
            counts[f"{module}.{kind.__qualname__}"] += 1
    return counts


class Meter:
    """What the server reports after each wave (see the module doc)."""

    def __init__(self, trace: bool) -> None:
        import psutil

        self.process = psutil.Process()
        self.trace = trace
        self.snapshot: tracemalloc.Snapshot | None = None
        self.types: Counter[str] = Counter()

    def measure(self) -> dict[str, Any]:
        gc.collect()
        row: dict[str, Any] = {"rss_mb": self.process.memory_info().rss / 2**20, "threads": threading.active_count()}
        types = _type_counts()
        grown = {name: (count, count - self.types.get(name, 0)) for name, count in types.items()
                 if count - self.types.get(name, 0) > 0}
        row["types_grown"] = dict(sorted(grown.items(), key=lambda item: -item[1][1])[:15])
        self.types = types
        if self.trace:
            row["python_heap_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
            snapshot = tracemalloc.take_snapshot().filter_traces([
                tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
            if self.snapshot is not None:
                stats = snapshot.compare_to(self.snapshot, "traceback")
                row["sites_grown"] = [{"kib": stat.size_diff / 1024, "count": stat.count_diff,
                                       "where": [f"{f.filename.removeprefix(str(ROOT) + '/')}:{f.lineno}"
                                                 for f in stat.traceback[-4:]]}
                                      for stat in stats[:12] if stat.size_diff > 0]
            self.snapshot = snapshot
        return row


def serve(trace: bool, capacity: int | None) -> None:
    """The app in this process, answering ``measure`` / ``quit`` lines on stdin with JSON lines."""
    import app

    if capacity is not None:
        app.SESSION_CAPACITY = capacity
    from vsr.logs import configure_logging
    from vsr.options import build_options

    configure_logging("WARNING")
    settings = build_options()
    demo = app.build_demo(settings)
    demo.launch(**app.launch_arguments(settings), prevent_thread_lock=True, quiet=True)
    if trace:  # after the imports: tracing them (torch, gradio) would take minutes, and they happen once
        tracemalloc.start(TRACE_FRAMES)
    meter = Meter(trace)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "measure":
            print(json.dumps(meter.measure()), flush=True)
        elif line.strip() == "quit":
            break
    demo.close()


# ============================================================================= the driver


class Server:
    """``bench/soak.py --serve`` in a child process, with its own folders and port."""

    def __init__(self, work: Path, trace: bool, arena_max: int | None, capacity: int | None) -> None:
        from app_harness import free_port

        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_DIFFVSR_", "GRADIO_"))}
        self.port = free_port()
        env.update({"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(work / "gradio"),
                    "STREAM_DIFFVSR_ENGINE": "bicubic", "STREAM_DIFFVSR_TMP_DIR": str(work / "tmp"),
                    "STREAM_DIFFVSR_OUTPUT_DIR": str(work / "outputs"),
                    "STREAM_DIFFVSR_CACHE_DIR": str(work / "cache"), "OMP_NUM_THREADS": "2"})
        if arena_max is not None:
            env["MALLOC_ARENA_MAX"] = str(arena_max)
        args = [sys.executable, str(Path(__file__).resolve()), "--serve", *([] if trace else ["--no-trace"]),
                *([] if capacity is None else ["--session-capacity", str(capacity)])]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                        cwd=work)
        self.ask(None)  # waits for "ready"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def ask(self, command: str | None) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited ({self.process.wait()})")
        return json.loads(line)

    def stop(self) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(timeout=30)


def one_job(url: str, clip: Path, downloads: Path) -> str:
    """One visitor: a new client (session), one /upscale job; returns "ok" or the error's first line."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False, download_files=str(downloads), httpx_kwargs={"timeout": 300})
        client.predict(handle_file(str(clip)), "bicubic", "4x", "", "", 4, "", "h264", 18, True, api_name="/upscale")
        client.close()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - a benchmark counts failures (e.g. "Queue is full") and goes on
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]


def soak(jobs: int, clients: int, trace: bool, arena_max: int | None, capacity: int | None) -> dict[str, Any]:
    from media_factory import make_video

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        previous, tempfile.tempdir = tempfile.tempdir, tmp  # gradio_client leaves an empty folder per download
        clip = make_video(work / "clip.mp4", 64, 48, Fraction(30), 30, audio="aac")
        server = Server(work, trace, arena_max, capacity)
        waves: list[dict[str, Any]] = []
        try:
            waves.append({"wave": 0, "jobs": 0, **server.ask("measure")})
            print(f"wave   0: {0:4d} jobs  RSS {waves[0]['rss_mb']:7.1f} MB"
                  + (f"  heap {waves[0]['python_heap_mb']:6.2f} MB" if trace else ""), flush=True)
            done = 0
            outcomes: Counter[str] = Counter()
            with ThreadPoolExecutor(clients) as pool:
                while done < jobs:
                    size = min(clients, jobs - done)
                    started = time.perf_counter()
                    results = list(pool.map(lambda i: one_job(server.url, clip, work / "downloads" / str(i)),
                                            range(done, done + size)))
                    outcomes.update(results)
                    done += size
                    row = {"wave": len(waves), "jobs": done, "seconds": time.perf_counter() - started,
                           "failed": sum(r != "ok" for r in results), **server.ask("measure")}
                    waves.append(row)
                    heap = f"  heap {row['python_heap_mb']:6.2f} MB" if trace else ""
                    print(f"wave {row['wave']:3d}: {done:4d} jobs  RSS {row['rss_mb']:7.1f} MB{heap}  "
                          f"{row['failed']} failed  {row['seconds']:.1f} s", flush=True)
                    for site in row.get("sites_grown", [])[:3]:
                        print(f"    +{site['kib']:8.1f} KiB  {' <- '.join(reversed(site['where']))}", flush=True)
        finally:
            server.stop()
            tempfile.tempdir = previous
    return {"jobs": jobs, "clients": clients, "trace": trace, "malloc_arena_max": arena_max,
            "session_capacity": capacity,
            "outcomes": dict(outcomes), "waves": waves, **_growth(waves)}


def _growth(waves: list[dict[str, Any]]) -> dict[str, Any]:
    """MB per job over the first and the second half of the run (after the first wave's warm-up)."""
    steady = waves[1:]
    if len(steady) < 3:
        return {}
    middle = len(steady) // 2
    first, second = steady[: middle + 1], steady[middle:]

    def slope(rows: list[dict[str, Any]], key: str) -> float | None:
        if key not in rows[0] or rows[-1]["jobs"] == rows[0]["jobs"]:
            return None
        return (rows[-1][key] - rows[0][key]) / (rows[-1]["jobs"] - rows[0]["jobs"])

    return {"rss_mb_per_job_first_half": slope(first, "rss_mb"), "rss_mb_per_job_second_half": slope(second, "rss_mb"),
            "heap_mb_per_job_first_half": slope(first, "python_heap_mb"),
            "heap_mb_per_job_second_half": slope(second, "python_heap_mb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=160)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients per wave (queue holds 16)")
    parser.add_argument("--arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for the server")
    parser.add_argument("--no-trace", action="store_true", help="without tracemalloc (RSS only)")
    parser.add_argument("--session-capacity", type=int, default=None,
                        help="Gradio's sessions kept (default: app.SESSION_CAPACITY; 10000 is Gradio's own default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(trace=not args.no_trace, capacity=args.session_capacity)
        return
    from bench import machine

    print(machine.label(), flush=True)
    result = {"machine": machine.describe(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
              **soak(args.jobs, args.clients, not args.no_trace, args.arena_max, args.session_capacity)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k.endswith(("half", "outcomes"))}), flush=True)


if __name__ == "__main__":
    main()
