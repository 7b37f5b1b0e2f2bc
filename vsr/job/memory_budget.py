"""The memory a job may use on its device: ``--max-memory`` / STREAM_DIFFVSR_MAX_MEMORY when set, else
the free memory of the GPU (plus what this process already holds there), or on a CPU ``CPU_SHARE`` of
the RAM this process could have (MemAvailable, a cgroup limit, this process's RSS)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vsr.formatting import gb_text as _gb

CPU_SHARE = 0.7
"""On a CPU the budget is this share of the memory this process could have (the rest: the system,
page cache, other programs)."""

MEDIA_BYTES_PER_PIXEL = 400
"""RAM of decoding and encoding per output pixel (the encoder's look-ahead and reference frames,
the bounded frame queues), from bench/memory.py's end-to-end CLI run; counted on CPU jobs only."""


@dataclass(frozen=True)
class Budget:
    """The memory a job may use on its device: ``bytes`` (None: unknown, not checked) and where it came from."""

    bytes: int | None
    text: str


def memory_budget(device: str, max_memory: int | None = None) -> Budget:
    """The budget on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``ZeroGPU``): ``max_memory``
    bytes when given, else the free GPU memory plus what this process already holds there, or on a
    CPU (and MPS, whose memory is the system's) ``CPU_SHARE`` of the RAM this process could have."""
    if max_memory is not None:
        return Budget(int(max_memory), f"{_gb(max_memory)} allowed on {device} (--max-memory / "
                                       "STREAM_DIFFVSR_MAX_MEMORY)")
    if device.startswith("cuda"):
        return _cuda_budget(device)
    if device.lower() == "zerogpu":
        return Budget(None, "ZeroGPU: the GPU's memory is known only inside the GPU call, so it is not checked")
    available = cpu_available_bytes()
    if available is None:
        return Budget(None, f"{device}: this system does not report its free memory, so it is not checked")
    share = int(available * CPU_SHARE)
    return Budget(share, f"{_gb(share)} usable on {device} ({CPU_SHARE:.0%} of {_gb(available)} available RAM)")


def _cuda_budget(device: str) -> Budget:
    import torch

    if not torch.cuda.is_available():
        return Budget(None, f"{device} is not available here, so its memory is not checked")
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    held = torch.cuda.memory_reserved(index)  # this process's own cache (e.g. the loaded model): reusable
    return Budget(int(free + held), f"{_gb(free + held)} free on cuda:{index} ({_gb(total)} in all)")


def cpu_available_bytes() -> int | None:
    """RAM this process could use: MemAvailable (or the cgroup's remaining limit, when lower) plus
    this process's own resident memory. None off Linux."""
    meminfo = _read_kib("/proc/meminfo", "MemAvailable:")
    if meminfo is None:
        return None
    available = meminfo
    limit = _cgroup_free()
    if limit is not None:
        available = min(available, limit)
    return available + _own_rss()


def _read_kib(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_free() -> int | None:
    """cgroup v2: limit - usage + page cache (reclaimable); None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    stat = {}
    try:
        stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        pass
    return max(0, int(limit) - current + int(stat.get("file", 0)))


def _own_rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
