"""Resuming a web job after the server restarted: the job's record, its resume code, what the page says.

Each job runs in its own folder (``vsr.web.folders``) whose unguessable name is the job's **resume
code**. The folder holds the job's record (``job.json``: the controls, the upload's path, name and
fingerprint) and its checkpoint (``checkpoint/``, ``vsr.job.checkpoint``), which the running job
keeps up to date. Gradio's session ids do not survive a restart; the code does:

- the page keeps it in the browser's local storage (``gr.BrowserState``, encrypted with a secret
  kept in the cache folder, so it can still be read after a restart) and the first status line of
  a job shows it;
- after a restart, a page opened again in that browser finds the code, asks whether its folder
  holds an interrupted job (``interrupted``), and offers to resume it;
- ``/resume`` (the page's Resume button) takes the video and the code. The code is the capability
  (128 random bits, as the folder's download links already are); the video is needed only when the
  server no longer has the upload, and must be the same file (its fingerprint is checked).

A job folder is resumable while the server keeps it (24 h, ``sessions.KEEP_SECONDS``) and only if
the output folder survives the restart (a Docker volume does; a Space's disk without persistent
storage does not).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from media import write_durably
from vsr.formatting import bytes_text
from vsr.job import checkpoint
from vsr.job.checkpoint import JobCheckpoint
from vsr.job.errors import JobRefused
from vsr.web import folders

logger = logging.getLogger(__name__)

RECORD = "job.json"
CHECKPOINT = "checkpoint"
STORAGE_KEY = "stream-diffvsr-resume"
"""The browser's local-storage key of the page's resume code."""
SECRET_FILE = "browser-state-secret"


class ResumeRefused(JobRefused):
    """The resume code names no interrupted job here, or the job cannot be continued (the message says why)."""


@dataclass(frozen=True)
class JobRecord:
    """What the page asked for, kept in the job folder so the job can be planned again after a restart.

    ``values``: the page's controls (``vsr.web.controls.job_options``); ``input``: the upload's path
    on the server; ``input_name``: the visitor's file name; ``fingerprint``: ``checkpoint.file_fingerprint``.
    """

    code: str
    input: str
    input_name: str
    fingerprint: dict[str, Any]
    values: tuple
    sample: bool
    output: str


def checkpoint_dir(job_dir: Path) -> Path:
    return job_dir / CHECKPOINT


def write_record(job_dir: Path, record: JobRecord) -> None:
    """Save ``record`` as ``job.json`` atomically (``media.write_durably``)."""
    data = json.dumps(asdict(record)).encode("utf-8")
    write_durably(job_dir / RECORD, lambda fh: fh.write(data))


def find(root: Path, code: str | None) -> tuple[Path, JobRecord, JobCheckpoint]:
    """The job folder, record and checkpoint of resume ``code``; ``ResumeRefused`` saying why not."""
    job_dir = folders.job_dir_for(root, code or "")
    if job_dir is None or not (job_dir / RECORD).is_file():
        raise ResumeRefused(f"No interrupted job with the resume code {code or '(none)'} on this server (finished, "
                            "cancelled and day-old jobs are removed). Upload the video and start it again.")
    try:
        data = json.loads((job_dir / RECORD).read_text(encoding="utf-8"))
        record = JobRecord(**{**data, "values": tuple(data["values"])})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ResumeRefused(f"The job {code}'s record cannot be read ({exc}). Upload the video and start it "
                            "again.") from exc
    folder = checkpoint_dir(job_dir)
    if not checkpoint.exists(folder):
        raise ResumeRefused(f"The job {code} on {record.input_name} has no checkpoint to go on from (it stopped before "
                            "its first frame, or it finished). Start it again.")
    return job_dir, record, checkpoint.load(folder)


def input_for(record: JobRecord, video: str | None) -> Path:
    """The job's input: the server's copy of the upload while it is still there, else ``video`` (the
    page's upload) when it is the same file; ``ResumeRefused`` naming the file to upload."""
    for candidate in (record.input, video):
        path = Path(candidate) if candidate else None
        if path is not None and path.is_file() and checkpoint.file_fingerprint(path) == record.fingerprint:
            return path
    size = bytes_text(record.fingerprint.get("size"))
    raise ResumeRefused(f"The server no longer has {record.input_name}, or the video on the page is another file. "
                        f"Upload {record.input_name} ({size}) again, then press Resume.")


def interrupted(root: Path, code: str | None) -> str:
    """The page's notice about the interrupted job of ``code`` ("" when there is none)."""
    if not code:
        return ""
    try:
        _, record, saved = find(root, code)
    except JobRefused:
        return ""
    return (f"**Your job on {record.input_name} was interrupted** at {saved.where()} (the server restarted or the "
            "connection dropped). Press **Resume** to go on from there"
            + ("" if Path(record.input).is_file() else f"; upload {record.input_name} again first") + ".")


def started_text(code: str) -> str:
    """The first status line of a job: it is starting, and its resume code."""
    return (f"Starting… Resume code `{code}` (kept in this browser: if the server restarts, this page offers to "
            "resume).")


def resumed_text(saved: JobCheckpoint, code: str) -> str:
    return f"Resuming at {saved.where()}… Resume code `{code}`."


def browser_secret(cache_dir: Path) -> str:
    """The key that encrypts the page's local storage, kept in ``cache_dir`` (made once, private to
    the server's user) so a browser's resume code can still be read after a restart."""
    path = cache_dir / SECRET_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secret)
    return secret
