"""Flow benchmark: on-demand vs all-pairs RAFT correlation, and the flow scale (issue 13).

Cases, each in a fresh child process (so peak memory is per case), CPU, 2 threads, RAFT large with the
golden fixture's weights, 12 flow updates, on a smooth synthetic pair with real motion (the texture
moved by (+6, -4) px and zoomed 2 %):

- ``pair:MODE:WxH``: one RAFT pair, MODE ``all-pairs`` or ``on-demand``. Reports wall and CPU seconds,
  and the peak extra memory: the process's peak RSS (``ru_maxrss``) minus its RSS just before the
  call (model and inputs loaded). The parent compares the flows of the two modes at each size.
- ``scales:WxH``: ``compute_flow`` at flow scale 1, 0.5 and 0.25 on the same kind of pair (one
  process): seconds each and the deviation from the exact flow (mean / max px).
- ``fixture``: the golden fixture's six frames through the engine at flow scale 1, 0.5 and 0.25:
  flow seconds and deviation from the exact flow per frame pair, and the 8-bit deviation of the
  outputs from the exact-flow output.
- ``corr:WxH``: the correlation alone (build + 12 lookups), both blocks, CPU seconds: where
  on-demand becomes the cheaper one (``vsr.model.flow.ALL_PAIRS_MAX_PIXELS``).

Default: pairs at 640x360 and 1280x720 in both modes, on-demand at 2560x1440, scales at 640x360, the
fixture, correlation alone at 1280x720 (about 6 CPU-minutes at 2 threads; 35 minutes wall on a
shared machine at load 12-14). ``--large`` adds the correlation alone at 1920x1080 (all-pairs needs
8.4 GB) and on-demand at 5120x2880 (long). Without that case the 5120x2880 peak is estimated (4x the
2560x1440 one: everything is linear in the area). Results go to bench/results/flow.json; each case
and a table of the pairs are logged.

Run: ``PYTHONPATH=. .venv/bin/python bench/flow.py`` (``--cases pair:on-demand:640x360,fixture`` picks
cases; ``--budget SECONDS`` starts no new case after that long).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench.flow")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "flow.json"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's packages; the fixture helper
import fixture_files  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

FIXTURE = fixture_files.fixture_dir()  # tests/fixtures/stream-diffvsr-tiny
DEFAULT_CASES = ("pair:all-pairs:640x360", "pair:on-demand:640x360", "pair:all-pairs:1280x720",
                 "pair:on-demand:1280x720", "pair:on-demand:2560x1440", "scales:640x360", "fixture",
                 "corr:1280x720")
LARGE_CASES = ("corr:1920x1080", "pair:on-demand:5120x2880")


def moving_pair(height: int, width: int, seed: int = 0):
    """Two (1, 3, H, W) channels-last frames in [-1, 1]: a smooth texture, then moved (+6, -4) px and zoomed 2 %."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16 + 3, width // 16 + 3, generator=gen) * 2 - 1
    texture = F.interpolate(coarse, size=(height + 48, width + 48), mode="bicubic", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    frames = []
    for shift_x, shift_y, zoom in ((0, 0, 1.0), (6, -4, 0.98)):
        px = (xs - width / 2) * zoom + width / 2 + 24 + shift_x
        py = (ys - height / 2) * zoom + height / 2 + 24 + shift_y
        grid = torch.stack([2 * px / (width + 47) - 1, 2 * py / (height + 47) - 1], dim=-1)[None]
        frame = F.grid_sample(texture, grid, mode="bilinear", align_corners=True)
        frames.append(frame.contiguous(memory_format=torch.channels_last))
    return frames[0], frames[1]


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.split("x"))
    return height, width


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _raft():
    from vsr.model.flow import load_raft

    return load_raft(FIXTURE / "raft_large.safetensors")


# ---- child cases ---------------------------------------------------------------------------------------


def run_pair(mode: str, size: str, out: Path) -> dict:
    """One RAFT pair in ``mode``; the flow is saved to ``out`` for the parent's comparison."""
    import torch

    from vsr.model.flow import all_pairs_bytes, compute_flow

    height, width = _size(size)
    raft = _raft()
    first, second = moving_pair(height, width)
    with torch.inference_mode():
        compute_flow(raft, *moving_pair(128, 128), correlation=mode)  # warm-up: kernel set-up is not flow time
    before_rss, before_peak, cpu, start = _rss_mb(), _peak_mb(), _cpu_s(), time.perf_counter()
    with torch.inference_mode():
        flow = compute_flow(raft, first, second, correlation=mode)
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu
    np.save(out, flow.numpy())
    return {"mode": mode, "size": size, "seconds": seconds, "cpu_seconds": cpu, "rss_before_mb": before_rss,
            "peak_rss_mb": _peak_mb(), "peak_extra_mb": _peak_mb() - before_rss,
            "peak_before_call_mb": before_peak, "all_pairs_estimate_mb": all_pairs_bytes(height, width) / 2**20,
            "mean_abs_flow_px": float(flow.abs().mean())}


def run_scales(size: str) -> dict:
    """``compute_flow`` at every flow scale on one pair: seconds and deviation from the exact flow."""
    import torch

    from vsr.model.flow import compute_flow
    from vsr.options import FLOW_SCALES

    height, width = _size(size)
    raft = _raft()
    first, second = moving_pair(height, width)
    flows, result = {}, {"size": size, "scales": {}}
    with torch.inference_mode():
        compute_flow(raft, *moving_pair(128, 128))  # warm-up (first-call kernel set-up is not flow time)
    for scale in FLOW_SCALES:
        start, cpu = time.perf_counter(), _cpu_s()
        with torch.inference_mode():
            flows[scale] = compute_flow(raft, first, second, scale=scale)
        result["scales"][str(scale)] = {"seconds": time.perf_counter() - start, "cpu_seconds": _cpu_s() - cpu}
    for scale in FLOW_SCALES:
        diff = (flows[scale] - flows[1.0]).abs()
        result["scales"][str(scale)].update(flow_dev_mean_px=float(diff.mean()), flow_dev_max_px=float(diff.max()))
    result["mean_abs_flow_px"] = float(flows[1.0].abs().mean())
    return result


def run_fixture() -> dict:
    """The fixture clip through the engine at every flow scale: flow time, flow and output deviation."""
    import torch
    from PIL import Image

    from vsr.model.flow import compute_flow
    from vsr.options import FLOW_SCALES
    from vsr.model.loading import load_checkpoint
    from vsr.model.stream import StreamDiffVSRUpscaler

    raft = _raft()
    up = torch.from_numpy(np.load(FIXTURE / "intermediates" / "lr_bicubic_x4.npy"))
    pairs = [(up[i].to(memory_format=torch.channels_last), up[i - 1].to(memory_format=torch.channels_last))
             for i in range(1, len(up))]
    ckpt = load_checkpoint(str(FIXTURE / "model"))
    frames = [np.array(Image.open(FIXTURE / "lr" / f"frame_{i:04d}.png").convert("RGB")) for i in range(1, 7)]
    with torch.inference_mode():
        compute_flow(raft, *pairs[0])  # warm-up (first-call kernel set-up is not flow time)
    result: dict = {"scales": {}}
    exact_flows, exact_out = None, None
    for scale in FLOW_SCALES:
        flows, seconds, cpu = [], [], []
        for cur, prev in pairs:
            start, cpu_start = time.perf_counter(), _cpu_s()
            with torch.inference_mode():
                flows.append(compute_flow(raft, cur, prev, scale=scale))
            seconds.append(time.perf_counter() - start)
            cpu.append(_cpu_s() - cpu_start)
        entry: dict = {"flow_seconds_per_pair_median": float(np.median(seconds)),
                       "flow_cpu_seconds_per_pair_median": float(np.median(cpu))}
        engine = StreamDiffVSRUpscaler(ckpt.unet, ckpt.controlnet, ckpt.vae, ckpt.scheduler, ckpt.prompt_embeds,
                                       raft, device="cpu", precision="fp32", flow_scale=scale)
        engine.start_stream(1234)
        outputs = np.stack([engine.process(frame) for frame in frames]).astype(np.int16)
        exact_flows = flows if exact_flows is None else exact_flows
        exact_out = outputs if exact_out is None else exact_out
        diff = torch.stack([(a - b).abs() for a, b in zip(flows, exact_flows)])
        pixels = np.abs(outputs - exact_out)
        entry.update(flow_dev_mean_px=float(diff.mean()), flow_dev_max_px=float(diff.max()),
                     output_dev_8bit_max=int(pixels.max()), output_dev_8bit_mean=float(pixels.mean()),
                     output_values_changed=float((pixels > 0).mean()))
        result["scales"][str(scale)] = entry
        logger.info("fixture scale %s: %s", scale, entry)
    result["mean_abs_exact_flow_px"] = float(torch.stack(exact_flows).abs().mean())
    return result


def run_corr(size: str) -> dict:
    """The correlation alone (build + 12 lookups of 4 levels) of both blocks on random 256-channel feature
    maps of a size x size/8 input, alternating twice: CPU seconds of each (the rest of RAFT is common)."""
    import torch
    from torchvision.models.optical_flow.raft import CorrBlock

    from vsr.model.raft_lookup import LookupCorrBlock

    height, width = (side // 8 for side in _size(size))
    gen = torch.Generator().manual_seed(0)
    fmap1, fmap2 = torch.randn(2, 1, 256, height, width, generator=gen)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    coords = torch.stack([xs, ys])[None] + 2.3 + 0.3 * torch.randn(1, 2, height, width, generator=gen)
    timings: dict[str, list[float]] = {"all-pairs": [], "on-demand": []}
    for _ in range(2):
        for name, block in (("all-pairs", CorrBlock()), ("on-demand", LookupCorrBlock())):
            cpu = _cpu_s()
            block.build_pyramid(fmap1, fmap2)
            for _ in range(12):
                block.index_pyramid(coords)
            timings[name].append(_cpu_s() - cpu)
            del block
    return {"size": size, "cpu_seconds": {k: min(v) for k, v in timings.items()}}


def child(case: str, out: Path) -> dict:
    import torch

    torch.set_num_threads(2)
    kind, _, rest = case.partition(":")
    if kind == "pair":
        mode, size = rest.split(":")
        return run_pair(mode, size, out.with_suffix(".npy"))
    if kind == "scales":
        return run_scales(rest)
    if kind == "fixture":
        return run_fixture()
    if kind == "corr":
        return run_corr(rest)
    raise SystemExit(f"unknown case {case!r}")


# ---- parent --------------------------------------------------------------------------------------------------


def _compare_pairs(results: dict, folder: Path) -> dict:
    """Max |flow difference| between the two modes at every size where both ran."""
    out = {}
    for name in results:
        if name.startswith("pair:all-pairs:"):
            size = name.rsplit(":", 1)[1]
            a, b = folder / f"pair_all-pairs_{size}.npy", folder / f"pair_on-demand_{size}.npy"
            if a.is_file() and b.is_file():
                out[size] = {"max_abs_flow_diff_px": float(np.abs(np.load(a) - np.load(b)).max())}
    return out


def estimates(results: dict) -> dict:
    """Peak extra memory of on-demand flow at 5120x2880 without running it: RAFT's activations and the
    on-demand structures are all linear in the area, so 4x the measured 2560x1440 figure; and the
    correlation's own part from ``on_demand_bytes`` (the chunk budget included)."""
    from vsr.model.flow import all_pairs_bytes
    from vsr.model.raft_lookup import on_demand_bytes

    out: dict = {"on_demand_correlation_mb": {}, "all_pairs_correlation_mb": {}}
    for width, height in ((640, 360), (1280, 720), (2560, 1440), (5120, 2880)):
        size = f"{width}x{height}"
        out["on_demand_correlation_mb"][size] = on_demand_bytes(height, width) / 2**20
        out["all_pairs_correlation_mb"][size] = all_pairs_bytes(height, width) / 2**20
    measured = results.get("pair:on-demand:2560x1440", {}).get("peak_extra_mb")
    if measured is not None and "pair:on-demand:5120x2880" not in results:
        out["on_demand_peak_extra_mb_5120x2880_from_4x_2560x1440"] = 4 * measured
    return out


def table(results: dict, comparison: dict) -> str:
    """A markdown table of the pair cases: CPU seconds and peak extra memory per mode, flow difference."""
    lines = ["| RAFT input | mode | wall s | CPU s | peak extra MB | flow diff px |", "|---|---|---|---|---|---|"]
    for name, case in results.items():
        if name.startswith("pair:") and "error" not in case:
            diff = comparison.get(case["size"], {}).get("max_abs_flow_diff_px")
            lines.append(f"| {case['size']} | {case['mode']} | {case['seconds']:.1f} | {case['cpu_seconds']:.1f} | "
                         f"{case['peak_extra_mb']:.0f} | {'' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated cases (default: " + ",".join(DEFAULT_CASES) + ")")
    parser.add_argument("--large", action="store_true", help="also on-demand at 5120x2880")
    parser.add_argument("--budget", type=float, default=float("inf"), help="start no case after this many seconds")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child:
        args.out.write_text(json.dumps(child(args.child, args.out)))
        return 0
    cases = args.cases.split(",") if args.cases else [*DEFAULT_CASES, *(LARGE_CASES if args.large else ())]
    results: dict = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if time.perf_counter() - started > args.budget:
                logger.info("budget spent: %s not run", case)
                continue
            out = Path(tmp) / case.replace(":", "_")
            logger.info("case %s ...", case)
            proc = subprocess.run([sys.executable, __file__, "--child", case, "--out", str(out)], cwd=ROOT,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                logger.error("case %s failed:\n%s", case, proc.stderr[-3000:])
                results[case] = {"error": proc.stderr[-3000:]}
                continue
            results[case] = json.loads(out.read_text())
            logger.info("  %s", results[case])
        comparison = _compare_pairs(results, Path(tmp))
    report = {"machine": {**machine.describe(), "load_average_at_end": _load()},
              "threads": 2, "cases": results, "on_demand_vs_all_pairs": comparison,
              "estimates": estimates(results)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    logger.info("Measured on %s.\n%s", machine.label(report["machine"]), table(results, comparison))
    logger.info("wrote %s", RESULTS)
    return 0


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _load() -> list[float]:
    import os

    return list(os.getloadavg())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
