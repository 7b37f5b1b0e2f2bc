"""bench/gpu.py's report: markdown tables for the terminal and the GPU block of docs/performance.md."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.gpu_settings import BEGIN, END, PERFORMANCE_PAGE

def _runs(results: dict, phase: str) -> dict[str, dict]:
    return results.get("phases", {}).get(phase, {}).get("runs", {})


def _split(key: str) -> tuple[str, str]:
    size, _, rest = key.partition("/")
    return size, rest


def recommend(results: dict) -> dict[str, float]:
    """Speed-up of each cheap switch alone over the plain path, at the slowest-gaining size."""
    eager, gains = _runs(results, "eager"), {}
    for key, run in _runs(results, "each").items():
        size, rest = _split(key)
        precision, _, switch = rest.partition("/")
        base = eager.get(f"{size}/{precision}", {}).get("s_per_frame")
        if base and "s_per_frame" in run:
            ratio = base / run["s_per_frame"]
            gains[switch] = round(min(gains.get(switch, ratio), ratio), 3)
    return gains


def speed_table(results: dict) -> list[str]:
    sizes = list(results.get("sizes", {}))
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for phase in ("eager", "auto", "each", "best", "compile", "compile-max", "aot"):
        for key, run in _runs(results, phase).items():
            size, rest = _split(key)
            if size in sizes:
                rows.setdefault((phase, rest), {})[size] = run
    head = "| phase | precision / switches | " + " | ".join(f"{s} s/frame (fps) | {s} first frame s | {s} peak GB"
                                                        for s in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(sizes))]
    for (phase, rest), by_size in rows.items():
        cells = []
        for size in sizes:
            run = by_size.get(size, {})
            if "s_per_frame" in run:
                extra = f", compile {run['compile_s']} s" if "compile_s" in run else ""
                dev = run.get("vs_eager_8bit")
                extra += f", vs eager {dev['max']}/{dev['mean']:.3f}" if dev else ""
                extra += f", {run['nonfinite_frames']} NaN/inf frames" if run.get("nonfinite_frames") else ""
                cells += [f"{run['s_per_frame']:.4f} ({run['fps']}){extra}", f"{run['first_frame_s']:.2f}",
                          str(run.get("peak_gb", "-"))]
            else:
                cells += [run.get("skipped") or (run.get("error", "-")[:60]), "", ""]
        lines.append(f"| {phase} | {rest} | " + " | ".join(cells) + " |")
    return lines


def breakdown_table(results: dict) -> list[str]:
    names = ("inputs", "raft", "raft_side", "vae_encoder", "controlnet", "unet", "vae_decoder", "download",
             "other_and_idle", "frame")
    lines = ["| run | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
    for phase in ("eager", "auto", "each"):
        for key, run in _runs(results, phase).items():
            parts = run.get("breakdown_ms")
            if parts:
                lines.append(f"| {phase} {key} | " + " | ".join(f"{parts.get(n, 0):.1f}" for n in names) + " |")
    return lines


def drift_lines(results: dict) -> list[str]:
    lines = []
    for key, run in _runs(results, "drift").items():
        drift = run.get("vs_fp32_8bit")
        if drift:
            means = drift["mean_per_frame"]
            lines.append(f"- {key} vs strict fp32 over {len(means)} frames: max {max(drift['max_per_frame'])}, "
                         f"mean {statistics.mean(means):.3f} (frame 1: {means[0]:.3f}, last: {means[-1]:.3f})")
        elif "epe_mean_px" in run:
            lines.append(f"- RAFT {key}: end-point error vs fp32 RAFT mean {run['epe_mean_px']} px, max "
                         f"{run['epe_max_px']} px (flows average {run['flow_mean_magnitude_px']} px)")
    return lines


def report(results: dict) -> str:
    info = results.get("machine", {})
    out = [f"Measured {results.get('date', '?')} on {info.get('device', '?')} ({info.get('torch', '?')}, CUDA "
           f"{info.get('cuda', '-')}), stand-in {'tiny (smoke)' if results.get('smoke') else 'full size'}, "
           f"{results.get('frames')} steady frames per run, wall {results.get('wall_s', '?')} s of a "
           f"{results.get('budget_s')} s budget. Cells: s/frame (fps), then the 8-bit deviation from the plain "
           "path's pixels at that size and precision (max/mean).", "", *speed_table(results), "",
           "Per component, ms per frame (median; CUDA events; `other_and_idle` = DDIM steps, warps and the GPU's "
           "idle gaps):", "", *breakdown_table(results), ""]
    out += drift_lines(results)
    for label, c in _runs(results, "copies").items():
        out.append(f"- Copies per frame at {label}: upload {c['upload_plain_ms']} ms plain vs "
                   f"{c['upload_pinned_uint8_ms']} ms pinned uint8; download {c['download_plain_ms']} ms plain vs "
                   f"{c['download_device_uint8_ms']} ms device uint8.")
    job = _runs(results, "job").get("job", {})
    if "job_s" in job:
        out.append(f"- Whole job ({job['size']}, {job['frames']} frames, `{job['optimisations']}`): {job['job_s']} s "
                   f"against {job['model_s']} s of model time ({job['overhead_pct']:+.1f} %), {job['fps']} fps.")
    for key, configs in _runs(results, "side-by-side").items():
        if "skipped" not in configs:
            out.append(f"- Side by side, {key} (frame by frame in turn): " + ", ".join(
                f"`{name}` {c['s_per_frame']} s/frame ({c['speedup_vs_none']}x, 8-bit vs none max "
                f"{c['vs_none_8bit']['max']}, NaN/inf frames {c['nonfinite_frames']})" for name, c in configs.items()))
    gains = results.get("recommended", {})
    if gains:
        out.append("- Each switch alone vs the plain path (speed-up, worst size): "
                   + ", ".join(f"`{k}` {v:.2f}x" for k, v in sorted(gains.items(), key=lambda kv: -kv[1])))
    stopped = results.get("stopped")
    if stopped:
        out.append(f"- Stopped early: {stopped}")
    return "\n".join(out)


def update_docs(text: str, page: Path = PERFORMANCE_PAGE) -> bool:
    """Replace the page's GPU block (between the markers) with ``text``; False if it has no block."""
    content = page.read_text(encoding="utf-8")
    if BEGIN not in content or END not in content:
        return False
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")
    return True


