"""The names of the speed switches of the Stream-DiffVSR engine, their defaults, and how a list of them is read.

Torch-free on purpose: ``vsr.options`` validates ``--optimisations`` with ``parse`` without loading
torch. ``vsr.model.acceleration`` applies a resolved set to an engine.

A switch list is a comma-separated string (or a sequence of names):

- ``auto``: the device's defaults (``AUTO``), the value when nothing is given;
- ``none``: nothing (the plain eager path, exactly the reference arithmetic on the CPU);
- a name adds that switch, ``-name`` removes it. ``auto,compile`` is the defaults plus compile,
  ``auto,-flow-prefetch`` the defaults without the side-stream flow.

``resolve`` turns the list into the set used on one device type. Switches that only exist on CUDA
are dropped from ``auto`` elsewhere; named explicitly on the CPU they run in a CPU form (same code
path, no benefit), which is what the CPU tests and ``bench/gpu.py --smoke`` use.
"""

from __future__ import annotations

from typing import Iterable

SWITCHES: dict[str, str] = {
    "device-postprocess": "clamp/scale/round to uint8 and crop on the device, then one direct copy into pinned memory "
                          "(a quarter of the bytes of the float32 copy); bit-identical output",
    "pinned-uploads": "the uint8 frame and the noise go up through pinned buffers without blocking, the frame is "
                      "converted on the device (exact lookup table) and the timesteps live on the device",
    "flow-prefetch": "RAFT for frame i+1 runs on a side CUDA stream while frame i denoises (needs the job's "
                     "one-frame look-ahead, `prefetch`)",
    "tf32": "TF32 tensor-core matmuls and convolutions when the precision is fp32 (upstream's GPU setting)",
    "cudnn-benchmark": "cuDNN picks the fastest convolution algorithm per shape (autotuned on the first frame)",
    "channels-last": "UNet, ControlNet and VAE weights and activations in NHWC memory layout",
    "compile": "torch.compile (inductor, default mode) of UNet, ControlNet, VAE encoder/decoder; one graph per "
               "resolution; cached in the inductor cache dir",
    "compile-max": "as compile, with mode max-autotune (no inductor CUDA graphs: use cuda-graphs for those); "
                   "slow to compile",
    "cuda-graphs": "the 4-step denoising loop (ControlNet + UNet + DDIM) captured once per resolution as one CUDA "
                   "graph and replayed",
    "raft-half": "RAFT under autocast in the model precision (bf16/fp16) instead of fp32",
    "aot": "AOTInductor: the UNet exported (torch.export) and compiled ahead of time into a package per resolution, "
           "cached on disk and loaded on later runs (the ZeroGPU-friendly path)",
}

CUDA_ONLY = frozenset({"pinned-uploads", "flow-prefetch", "tf32", "cudnn-benchmark", "cuda-graphs"})
"""Switches with an effect only on CUDA; ``auto`` leaves them out on other devices."""

AUTO: dict[str, frozenset[str]] = {
    # Unmeasured on a GPU so far: only switches that cannot slow a frame down by construction (fewer
    # bytes over PCIe, no host stall, overlap) and TF32 (upstream's own fp32 setting). bench/gpu.py
    # reports which of the others help, to be turned on here once measured.
    "cuda": frozenset({"device-postprocess", "pinned-uploads", "flow-prefetch", "tf32"}),
    # Measured on the CPU (bench/gpu.py --device cpu; docs/performance.md, "CPU figures of the switches"): only the
    # uint8 conversion in torch helps there (33 -> 26 ms per 720p frame, 161 -> 70 ms at 1080p;
    # bit-identical); channels-last and compile did not (compile in bf16 even gave NaN frames).
    "cpu": frozenset({"device-postprocess"}),
    "mps": frozenset(),  # nothing measured
}

EXCLUSIVE = ("compile", "compile-max", "aot")
"""At most one of these: each replaces the same networks' forward."""


class SwitchError(ValueError):
    """A switch list names an unknown switch or an impossible combination."""


def parse(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalised tokens of a switch list (see the module doc). Raises ``SwitchError``."""
    if value is None:
        return ("auto",)
    items = value.split(",") if isinstance(value, str) else list(value)
    tokens = tuple(t.strip().lower().replace("_", "-") for t in items if str(t).strip())
    if not tokens:
        return ("none",)
    for token in tokens:
        name = token[1:] if token.startswith("-") else token
        if name not in SWITCHES and token not in ("auto", "none"):
            raise SwitchError(
                f"unknown optimisation {token!r}. Use auto, none, or a comma list of: {', '.join(SWITCHES)} "
                "(prefix a name with - to remove it, e.g. auto,-flow-prefetch)."
            )
    chosen = _expand(tokens, None)
    both = [name for name in EXCLUSIVE if name in chosen]
    if len(both) > 1:
        raise SwitchError(f"optimisations {' and '.join(both)} cannot be combined: each replaces the networks' "
                          "forward. Keep one.")
    return tokens


def resolve(value: str | Iterable[str] | None, device_type: str) -> frozenset[str]:
    """The switches in effect on ``device_type`` (``cuda``, ``cpu``, ``mps``) for a switch list."""
    return frozenset(_expand(parse(value), device_type))


def _expand(tokens: tuple[str, ...], device_type: str | None) -> set[str]:
    chosen: set[str] = set()
    for token in tokens:
        if token == "auto":
            chosen |= AUTO.get(device_type or "cuda", frozenset())
        elif token == "none":
            chosen.clear()
        elif token.startswith("-"):
            chosen.discard(token[1:])
        else:
            chosen.add(token)
    return chosen


def text(switches: Iterable[str]) -> str:
    """A stable, human-readable form of a resolved set (``none`` when empty)."""
    names = sorted(switches, key=list(SWITCHES).index)
    return ",".join(names) or "none"
