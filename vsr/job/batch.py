"""``vsr batch``: many videos, each a job, with a report of every input.

The pieces without an interface: which files a batch takes (``find_inputs``: files as given,
folders' video files by name), where each output goes (``output_for``), whether an output already
there is a finished one (``finished``: it verifies against the job's plan, so running a batch again
skips it and goes on with the rest), and the report (``BatchEntry``, ``write_report``:
``OUT_DIR/batch-report.json``). The command line (``vsr.cli``) runs the jobs, one bad input never
stopping the others, and words the errors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import media

logger = logging.getLogger(__name__)

REPORT = "batch-report.json"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
                            ".mpg", ".mpeg", ".ogv", ".3gp"})
"""A folder's files that a batch takes (a file named on the command line is taken whatever its name)."""
STATUSES = ("done", "skipped", "refused", "failed", "cancelled")


@dataclass(frozen=True)
class BatchEntry:
    """One input of a batch: what became of it (``status``, one of ``STATUSES``), why, in how long,
    and the exit code its error would have had alone (0 for done and skipped)."""

    input: str
    output: str | None
    status: str
    reason: str
    seconds: float
    code: int = 0


def find_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """The videos of a batch, in order: each file as given, each folder's video files (``VIDEO_SUFFIXES``,
    sub-folders too, by path), each once. A path that does not exist is kept, so it is reported."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                                and not p.name.startswith(".")))
        else:
            found.append(path)
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve() if path.exists() else path, None)
    return list(unique)


def output_for(source: Path, out_dir: Path, suffix: str, taken: set[Path]) -> Path:
    """``OUT_DIR/<name>_4x<suffix>``, with the parent folder's name in front when two inputs share a name."""
    output = out_dir / f"{source.stem}_4x{suffix}"
    if output in taken:
        output = out_dir / f"{source.parent.name}-{source.stem}_4x{suffix}"
    taken.add(output)
    return output


def finished(job: Any, output: Path) -> bool:
    """Whether ``output`` is already this job's finished file (all of ``media.verify``'s checks pass)."""
    if not output.is_file():
        return False
    expected = media.ExpectedOutput(frames=job.frames, width=job.size.width, height=job.size.height,
                                    start=job.trim_start, end=job.trim_end)
    report = media.verify(job.info, output, expected)
    if not report.ok:
        logger.info("%s is there but does not verify (%s): it is made again", output,
                    "; ".join(c.message for c in report.failed))
    return report.ok


def write_report(out_dir: Path, entries: list[BatchEntry]) -> Path:
    """``OUT_DIR/batch-report.json``: every input with its status, reason and time (written whole or not at all)."""
    path = out_dir / REPORT
    counts = {status: sum(1 for e in entries if e.status == status) for status in STATUSES}
    data = {"inputs": [asdict(e) for e in entries], "counts": counts}
    media.write_durably(path, lambda fh: fh.write(json.dumps(data, indent=2, ensure_ascii=False).encode()))
    return path


def table(entries: list[BatchEntry]) -> str:
    """The batch's table for the terminal: one line per input."""
    width = max([len(Path(e.input).name) for e in entries] + [5])
    lines = [f"{'input':<{width}}  {'status':<9}  {'time':>8}  reason"]
    for e in entries:
        lines.append(f"{Path(e.input).name:<{width}}  {e.status:<9}  {e.seconds:>7.1f}s  {e.reason}")
    return "\n".join(lines)
