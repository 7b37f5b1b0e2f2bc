"""bench/gpu.py's settings in one place: sizes, precisions, phases, switch sets, result paths."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "gpu.json"
PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"  # its GPU block, between BEGIN and END
FIXTURE_MODEL = ROOT / "tests" / "fixtures" / "stream-diffvsr-tiny" / "model"
"""The golden fixture's configs: the tiny stand-in's UNet, and every stand-in's scheduler (the published one)."""
BEGIN, END = "<!-- bench-gpu:begin -->", "<!-- bench-gpu:end -->"
SIZES = {"720p": (180, 320), "1080p": (270, 480)}  # LR (height, width) -> 4x
SMOKE_SIZES = {"64x96": (16, 24)}  # the smallest RAFT takes (1/8 of the output: 8x12); the smoke run checks code, not speed
PRECISIONS = ("bf16", "fp16", "fp32")
CHEAP = ("device-postprocess", "pinned-uploads", "flow-prefetch", "cudnn-benchmark", "channels-last",
         "cuda-graphs", "raft-half")
BEST = "auto,cudnn-benchmark,channels-last,cuda-graphs"
PHASES = ("eager", "auto", "copies", "each", "compile", "best", "drift", "job", "compile-max", "aot")
CPU_PHASES = ("copies", "side-by-side")  # --device cpu: what a CPU can tell (docs/performance.md, "CPU figures of the switches")
SMOKE_PHASES = (*PHASES[:3], "side-by-side", *PHASES[3:])
WARM_FRAMES = 2  # frame 0 (no ControlNet) and frame 1 (first ControlNet frame: autotune, capture, compile)
