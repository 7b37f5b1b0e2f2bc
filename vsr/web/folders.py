"""Each web job's files in its own unguessable folder; old folders removed; safe output names."""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from pathlib import Path

from vsr.formatting import duration_text
from vsr.options import UpscaleOptions

logger = logging.getLogger(__name__)

JOB_DIR_PREFIX = "job-"
_JOB_DIR_RE = re.compile(r"^job-[A-Za-z0-9_-]{22,}$")


def output_filename(input_name: str, options: UpscaleOptions, suffix: str) -> str:
    """The finished file's name: the input's stem, the size label, and the plan's container ``suffix``.

    ``clip.mov`` at 4x into ``.mp4`` -> ``clip_4x.mp4``; at 1080p into ``.mov`` -> ``clip_1080p.mov``.
    Characters other than letters, digits, ``.-_`` become ``_`` so the name is safe in any browser.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(input_name).stem).strip("._") or "video"
    return f"{stem[:80]}_{options.height_label}{suffix}"


def new_job_name() -> str:
    """A new job folder name (the job's resume code): ``job-`` and 128 random bits."""
    return f"{JOB_DIR_PREFIX}{secrets.token_urlsafe(16)}"


def new_job_dir(root: Path, name: str | None = None) -> Path:
    """Make a new folder for one job under ``root``, named ``name`` (a ``new_job_name``, e.g. the one
    the page already keeps as its resume code) or a new one: 128 random bits, not guessable.

    The folder is private to the server's user (mode 0700). A ``name`` that is not a job name, or
    is taken, gets a new one.
    """
    root.mkdir(parents=True, exist_ok=True)
    if name is None or not _JOB_DIR_RE.match(name) or (root / name).exists():
        name = new_job_name()
    path = root / name
    path.mkdir(mode=0o700)
    return path


def job_dir_for(root: Path, name: str) -> Path | None:
    """The existing job folder ``name`` under ``root``, or None (also for anything not a job name)."""
    if not isinstance(name, str) or not _JOB_DIR_RE.match(name):
        return None
    path = root / name
    return path if path.is_dir() and not path.is_symlink() else None


def remove_job_dir(path: Path) -> None:
    """Delete a job folder made by ``new_job_dir`` and everything in it (refuses any other folder)."""
    if not _JOB_DIR_RE.match(path.name):
        raise ValueError(f"{path} is not a job folder made by new_job_dir; refusing to delete it.")
    shutil.rmtree(path, ignore_errors=False)
    logger.debug("removed job folder %s", path)


def prune_job_dirs(root: Path, max_age_seconds: float, *, now: float | None = None) -> list[Path]:
    """Delete job folders under ``root`` last modified more than ``max_age_seconds`` ago.

    Only folders named like ``new_job_dir``'s are touched. Returns the folders removed.
    """
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in root.iterdir():
        if not (path.is_dir() and _JOB_DIR_RE.match(path.name)):
            continue
        newest = max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")])
        if now - newest > max_age_seconds:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("removed %d job folder(s) older than %s under %s", len(removed),
                    duration_text(max_age_seconds), root)
    return removed
