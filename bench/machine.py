"""What machine and when: the label every benchmark records with its figures and prints above its table.

Figures from different machines are not comparable (an AVX2-only EPYC runs the model at about half the
speed of an AVX-512 one with bf16), so every result says which CPU, which vector extensions, how many
cores and which day it was measured on. ``describe()`` gives the dict for the results file, ``label()``
the one line for a table.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

# The vector extensions that change the model's speed on a CPU: AVX2, AVX-512, native bf16, AMX.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; the platform's processor name elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), set()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    return name, flags


def describe() -> dict[str, Any]:
    """The machine and the date, for a results file."""
    name, flags = _cpuinfo()
    return {"cpu": name, "cpu_flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}


def label(info: dict[str, Any] | None = None) -> str:
    """One line: 'AMD EPYC (avx2, avx512f, avx512_bf16; no AMX), 2 cores, 2026-12-06'; a results file
    from before the label existed says so."""
    info = describe() if info is None else info
    if "cpu" not in info or "date" not in info:
        return "a machine and date this results file does not record (it predates bench/machine.py)"
    flags = info.get("cpu_flags") or []
    amx = "" if any(f.startswith("amx") for f in flags) else "; no AMX"
    extensions = f" ({', '.join(flags) or 'no AVX2'}{amx})"
    return f"{info['cpu']}{extensions}, {info.get('cores')} cores, {info['date']}"
