"""GPU benchmark of the Stream-DiffVSR engine: one prepared run on a lent GPU machine, under 6 minutes.

Builds the full-size stand-in (../shared/docs/BENCH-MODEL.md configs, random weights initialised on
the device: nothing is loaded or transferred) and measures, at 320x180 -> 1280x720 and
480x270 -> 1920x1080, for bf16, fp16 and fp32 (TF32):

- ``eager``: the plain path (no optimisation), with a per-component breakdown from CUDA events
  (RAFT, UNet, ControlNet, VAE encoder, VAE decoder, inputs/uploads, download, and the rest: DDIM
  steps, warps and the GPU's idle gaps between launches);
- ``auto``: the product's defaults on CUDA; ``each``: every optimisation switch alone (fp16);
  ``best``: all the cheap switches together per precision;
- ``compile`` / ``compile-max`` / ``aot``: torch.compile (default, max-autotune) and AOTInductor,
  with their compile times (and a second, cache-warm compile);
- ``drift``: bf16, fp16 and TF32 against strict fp32 over 60 frames (8-bit max and mean per frame),
  and RAFT's flow drift in half precision;
- ``job``: a whole job (decode, upscale, encode, mux, verify) against its model time, when PyAV is there.

Each measurement: seconds per frame (median of >= 20 steady frames, after a first frame and a first
ControlNet frame), time to the first frame, peak CUDA memory of the engine. Phases run in order
until the time budget is spent; what does not fit is recorded as skipped (and a hard alarm stops a
compile that overruns). Results: bench/results/gpu.json (and ``--out``), a markdown report printed
last, and the GPU block of docs/performance.md (between its markers) rewritten.

``--smoke`` runs every phase's code on the CPU with the fixture-sized configs in a minute or so
(CUDA-only switches in their CPU form, torch.compile with the ``eager`` backend, AOT export only); the
test suite runs it (tests/test_bench_gpu.py). ``--device cpu`` measures what a CPU can (compile,
channels-last, device-side uint8) with the tiny or full stand-in.

On the device machine (Python 3.12, torch 2.11, no diffusers or PyAV there), from the repository
root; here, once, fetch the wheels into the ignored folder ``.carry/wheels``::

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/wheels \\
        diffusers==0.42.1 av==18.1.0 scenedetect==0.7.2 platformdirs==4.14.9

then one device ``run`` with ``carry: [".carry"]`` and ``timeout_s: 480``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \\
        .carry/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
        PYTHONUNBUFFERED=1 python3 bench/gpu.py --budget 330 --out $OUT 2>&1 | tee $OUT/gpu.log | tail -80

and back here: copy the returned gpu.json to bench/results/gpu.json and run
``python bench/gpu.py --report bench/results/gpu.json`` to rewrite the docs' block. ``--phases``
runs only some phases (a second call for what the first skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# Run as a script, Python puts bench/ first on the path, where bench/media.py would shadow the
# media package: drop exactly that entry and put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.gpu_settings import CPU_PHASES, PHASES, PRECISIONS, RESULTS, SIZES, SMOKE_PHASES, SMOKE_SIZES  # noqa: E402
from bench.gpu_model import build_master, sync  # noqa: E402
from bench.gpu_runs import Context, OutOfTime  # noqa: E402
from bench.gpu_phases import run_phases, warm_up  # noqa: E402
from bench.gpu_report import BEGIN, END, recommend, report, update_docs  # noqa: E402

logger = logging.getLogger("bench.gpu")

__all__ = ["BEGIN", "END", "main", "update_docs"]


def machine(device: torch.device) -> dict[str, Any]:
    from vsr.model.devices import cpu_flags

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                            "cpu_flags": sorted(f for f in cpu_flags()
                                                if f.startswith(("avx512", "amx")) or f == "avx2")}
    if device.type == "cuda":
        info.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every phase on the CPU, tiny configs, seconds")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--model", choices=("full", "tiny"), help="stand-in size (default: full; tiny with --smoke)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run, hard stop 20 s later "
                        "(default 320; 1200 with --smoke, which is meant to run everything)")
    parser.add_argument("--phases", help=f"comma list, in order, from {','.join(SMOKE_PHASES)} (default: all but "
                        "side-by-side on CUDA; all with --smoke; copies,side-by-side with --device cpu)")
    parser.add_argument("--sizes", help="comma list of LR sizes WxH (default 320x180,480x270)")
    parser.add_argument("--frames", type=int, help="steady frames per run (default 20; 2 with --smoke)")
    parser.add_argument("--drift-frames", type=int, help="frames of the drift runs (default 60)")
    parser.add_argument("--job-frames", type=int, help="frames of the job run (default 60)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list (default bf16,fp16,fp32)")
    parser.add_argument("--out", type=Path, help="also write gpu.json and gpu-block.md here")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the GPU block of docs/performance.md")
    parser.add_argument("--report", type=Path, help="only print the report of a results file (and update the docs' block)")
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    if args.sizes:
        pairs = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
        return {f"{4 * w}x{4 * h}": (h, w) for w, h in pairs}
    return dict(SMOKE_SIZES if args.smoke else SIZES)


def _writer(results: dict, paths: list[Path]) -> Callable[[], None]:
    def save() -> None:
        text = json.dumps(results, indent=1, default=str)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    return save


def _on_alarm(signum: int, frame: Any) -> None:
    raise OutOfTime("the hard time limit fired")


def setup(args: argparse.Namespace) -> tuple[torch.device, bool]:
    from vsr.model import acceleration, aot

    device = torch.device("cpu" if args.smoke else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA device here; use --smoke or --device cpu")
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    tiny = args.model == "tiny" or (args.smoke and args.model != "full")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its note on every fp32 -> half cast of the copies
    if args.smoke:
        acceleration.COMPILE_BACKEND = "eager"  # dynamo's tracing without inductor's minutes of C++ builds
        aot.PACKAGE = False  # torch.export only
    return device, tiny


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        print(report(results))
        if not args.no_docs and not results.get("smoke"):
            update_docs(report(results))
        return 0
    started = time.monotonic()
    args.budget = args.budget or (1200.0 if args.smoke else 320.0)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.budget + 20))
    device, tiny = setup(args)
    results = _new_results(args, device)
    paths = [args.out / "gpu.json"] if args.out else []
    if not args.smoke:
        paths.append(RESULTS if device.type == "cuda" else RESULTS.with_name("gpu-cpu.json"))
    save = _writer(results, paths)
    try:
        _measure(args, device, tiny, results, save, started)
    except OutOfTime:
        results["stopped"] = "the hard time limit fired; later phases did not run"
    finally:
        signal.alarm(0)
    results["recommended"] = recommend(results)
    results["wall_s"] = round(time.monotonic() - started, 1)
    save()
    _publish(report(results), args, device)
    return 0


def _new_results(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    sizes = _sizes(args)
    return {"schema": 1, "smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M"), "budget_s": args.budget,
            "machine": machine(device), "phases": {}, "frames": args.frames or (1 if args.smoke else 20),
            "sizes": {k: {"lr": f"{w}x{h}", "hr": f"{4 * w}x{4 * h}"} for k, (h, w) in sizes.items()}}


def _measure(args: argparse.Namespace, device: torch.device, tiny: bool, results: dict[str, Any],
             save: Callable[[], None], started: float) -> None:
    """Build the stand-in, warm up, run the phases (an ``OutOfTime`` passes through)."""
    with tempfile.TemporaryDirectory(prefix="bench-gpu-cache-") as cache:
        tick = time.perf_counter()
        master = build_master(device, tiny)
        sync(device)
        results["build_s"] = round(time.perf_counter() - tick, 2)
        ctx = Context(device, master, _sizes(args), results["frames"], args.drift_frames or (4 if args.smoke else 60),
                      args.job_frames or (6 if args.smoke else 60), started + args.budget, Path(cache),
                      args.smoke, results, save, only=tuple(args.precisions.split(",")))
        default = SMOKE_PHASES if args.smoke else PHASES if device.type == "cuda" else CPU_PHASES
        names = args.phases.split(",") if args.phases else default
        results["warmup_s"] = warm_up(ctx)
        run_phases(ctx, [p.strip() for p in names if p.strip()])


def _publish(text: str, args: argparse.Namespace, device: torch.device) -> None:
    if args.out:
        (args.out / "gpu-block.md").write_text(text + "\n")
    if not args.smoke and not args.no_docs and device.type == "cuda" and update_docs(text):
        logger.info("docs/performance.md GPU block rewritten")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
