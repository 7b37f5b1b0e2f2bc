"""Device and precision resolution for the diffusion engine.

- device ``auto``: CUDA if available, then Apple MPS, then the CPU. ``cuda``, ``cuda:N``, ``mps``,
  ``cpu`` are taken literally and refused (``DeviceError``) when not present.
- precision ``auto``: fp16 on CUDA; bf16 on a CPU with native bf16 arithmetic; else fp32.
  Native bf16 on the CPU means the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo (x86
  Linux): oneDNN then runs bf16 convolutions and matmuls in hardware instead of emulating them. On
  other CPUs (and on MPS) auto is fp32. fp16 is only offered on CUDA/MPS (CPU fp16 kernels are slow
  and incomplete); bf16 on CUDA needs a GPU that supports it.
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

import torch

from vsr.model.errors import DeviceError

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NAMES = {v: k for k, v in DTYPES.items()}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` -> an available ``torch.device``."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={name!r} was asked for but no CUDA GPU is available. Fix: use device 'auto' or 'cpu'."
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s) present. Fix: use cuda:0 .. "
                f"cuda:{torch.cuda.device_count() - 1} or 'auto'."
            )
        return device
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("device='mps' was asked for but Apple MPS is not available. Fix: use 'auto' or 'cpu'.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"Unknown device {name!r}. Use auto, cpu, cuda, cuda:N or mps.")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty off Linux)."""
    info = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not info.is_file():
        return frozenset()
    for line in info.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX-BF16)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` / ``fp32`` / ``fp16`` / ``bf16`` on ``device`` -> the torch dtype the networks run in."""
    precision = precision.strip().lower()
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if precision not in DTYPES:
        raise DeviceError(f"Unknown precision {precision!r}. Use auto, fp32, fp16 or bf16.")
    dtype = DTYPES[precision]
    if dtype == torch.float16 and device.type == "cpu":
        raise DeviceError(
            "precision='fp16' is not supported on the CPU (slow, incomplete kernels). Fix: use bf16 or fp32."
        )
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision='bf16': the GPU on {device} has no bf16 support. Fix: use fp16 or fp32.")
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("bf16 on a CPU without native bf16 (no avx512_bf16/amx_bf16): expect it to be slower than fp32")
    return dtype
