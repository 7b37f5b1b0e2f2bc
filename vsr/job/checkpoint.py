"""A running job's checkpoint: what it needs to go on exactly where it stopped, kept on disk atomically.

A checkpoint folder holds::

    checkpoint.pkl      the last committed ``JobCheckpoint`` (temporary name, fsync, rename: all or nothing)
    segment-00000.mkv   the video so far, as closed video-only segments, each starting on a key frame
    segment-00001.mkv   (``media.VideoWriter(video_only=True)``; joined by ``media.join_segments``)

``checkpoint.pkl`` lists the segments that belong to it; anything else in the folder (the segment
that was being written when the process died, a temporary file) is not part of the checkpoint and
is removed when the job resumes. The checkpoint also holds the engine's stream state
(``FrameProcessor.save_stream``: CPU tensors, the noise generator's state), the scene detector's
state, the counters (next frame index and its source pts), and fingerprints of the input and of
the options that change the output, so a checkpoint is never continued with another video or
other settings. The file is a pickle written by this program: load only checkpoints you wrote
(the CLI keeps them next to the output, the web app in the job's own folder).

Where: ``checkpoint_dir_for(output)`` (``.<output name>.vsr-checkpoint/`` next to the output) for
the command line; the job folder's ``checkpoint/`` for the web app.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from media import write_durably
from vsr.job.errors import CheckpointMismatch, CheckpointUnreadable
from vsr.options import UpscaleOptions

logger = logging.getLogger(__name__)

FORMAT = 1
"""The checkpoint layout's version; a checkpoint of another version is refused (start over)."""
FILE = "checkpoint.pkl"
SUFFIX = ".vsr-checkpoint"
FINGERPRINT_BYTES = 1 << 20
"""The input's first and last this many bytes are hashed (with its size and probe facts)."""
OUTPUT_OPTIONS = ("engine", "model_id", "flow_weights", "steps", "device", "precision", "attention", "height",
                  "start", "end", "codec", "crf", "preset", "scene_cuts", "scene_threshold")
"""The options that change the output (the seed is checked on its own: a random seed is the one used)."""
_OURS = re.compile(r"^(checkpoint\.pkl|parts\.pkl|segment-\d{5}\.mkv|\.segment-\d{5}\..*|"
                   r"\.(checkpoint|parts)\.[0-9a-f]+\.partial\.pkl)$")
_PART = re.compile(r"^part-\d{5}$")
"""A part's folder in a job spread over several workers (``vsr.job.parallel``): its pieces, its checkpoint."""


@dataclass(frozen=True)
class SegmentRecord:
    """One closed segment: its file name in the folder, the writer's time base, and every packet's
    ``(pts, dts, duration)`` in that time base (``media.Segment``)."""

    name: str
    time_base: Fraction
    packets: tuple[tuple[int, int | None, int], ...]

    @property
    def frames(self) -> int:
        return len(self.packets)


@dataclass(frozen=True)
class JobCheckpoint:
    """Everything a job needs to go on from frame ``next_index`` (source time ``next_pts``; None when
    every frame is done and only the join is left). Plain data, Fractions and CPU tensors only."""

    input: dict[str, Any]
    options: dict[str, str]
    container: str
    engine: dict[str, Any]
    seed: int
    total: int
    next_index: int = 0
    next_pts: Fraction | None = None
    offset: Fraction | None = None
    segments: tuple[SegmentRecord, ...] = ()
    stream: Any = None
    scenes: bytes | None = None
    scene_cuts: tuple[int, ...] = ()
    model_seconds: float = 0.0
    seconds: float = 0.0
    steady: tuple[float, ...] = ()
    format: int = FORMAT

    @property
    def complete(self) -> bool:
        """Every frame is upscaled (only the join and the verification are left)."""
        return self.next_pts is None and self.next_index > 0

    def where(self) -> str:
        """Where the job stopped, in words: "frame 412 of 1800"."""
        return f"frame {self.next_index} of {max(self.total, self.next_index)}"


def checkpoint_dir_for(output: str | Path) -> Path:
    """The command line's checkpoint folder for ``output``: ``.<output name>.vsr-checkpoint`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}{SUFFIX}")


def file_fingerprint(path: Path) -> dict[str, Any]:
    """A file's size and a hash of its first and last MiB (not its name or time stamps, so a copy
    of the same file, such as a new upload of it, matches)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(fh.read(FINGERPRINT_BYTES))
    return {"size": size, "sha256": digest.hexdigest()}


def input_fingerprint(path: Path, info: Any) -> dict[str, Any]:
    """What identifies the input: ``file_fingerprint`` and the probe's key facts."""
    v = info.video
    return {**file_fingerprint(path), "video": f"{v.codec} {v.width}x{v.height}", "frames": v.frame_count,
            "rate": str(v.avg_rate), "duration": str(v.duration)}


def options_fingerprint(options: UpscaleOptions) -> dict[str, str]:
    """The options that change the output, as text (``OUTPUT_OPTIONS``)."""
    return {name: "" if getattr(options, name) is None else str(getattr(options, name)) for name in OUTPUT_OPTIONS}


def engine_fingerprint(description: dict[str, Any]) -> dict[str, Any]:
    """An engine's ``describe()`` without its seed (the checkpoint keeps the seed on its own)."""
    return {key: value for key, value in description.items() if key != "seed"}


def new(job: Any, engine: dict[str, Any], seed: int) -> JobCheckpoint:
    """The checkpoint of ``job`` before its first frame (``engine``: the engine's ``describe()``)."""
    return JobCheckpoint(input=input_fingerprint(job.input, job.info), options=options_fingerprint(job.options),
                         container=job.container_suffix, engine=engine_fingerprint(engine), seed=seed,
                         total=job.frames)


def refusal(checkpoint: JobCheckpoint, job: Any) -> str | None:
    """Why ``checkpoint`` cannot continue ``job`` (another input, other options...), or None."""
    if checkpoint.format != FORMAT:
        return f"it was written by another version of this program (format {checkpoint.format}, this one {FORMAT})"
    now = input_fingerprint(job.input, job.info)
    changed = [key for key in now if now[key] != checkpoint.input.get(key)]
    if changed:
        key = changed[0]
        return (f"it was made from another input ({job.input.name} has {key} {now[key]}, the checkpoint's input "
                f"had {checkpoint.input.get(key)})")
    options = options_fingerprint(job.options)
    different = [name for name in OUTPUT_OPTIONS if options[name] != checkpoint.options.get(name)]
    if different:
        return "it was made with other options: " + ", ".join(
            f"{name} {_shown(checkpoint.options.get(name))} then, {_shown(options[name])} now" for name in different)
    if job.options.seed is not None and job.options.seed != checkpoint.seed:
        return f"it was made with seed {checkpoint.seed}, not {job.options.seed}"
    if job.container_suffix != checkpoint.container:
        return f"it was made for a {checkpoint.container} output, not {job.container_suffix}"
    return None


def engine_refusal(checkpoint: JobCheckpoint, description: dict[str, Any]) -> str | None:
    """Why the loaded engine (its ``describe()``) cannot continue ``checkpoint``, or None."""
    now = engine_fingerprint(description)
    different = [key for key in sorted(set(now) | set(checkpoint.engine)) if now.get(key) != checkpoint.engine.get(key)]
    if not different:
        return None
    return "the engine differs: " + ", ".join(
        f"{key} {_shown(checkpoint.engine.get(key))} then, {_shown(now.get(key))} now" for key in different)


def check(checkpoint: JobCheckpoint, job: Any, folder: Path) -> None:
    """Raise ``CheckpointMismatch`` (naming the reason and the fix) unless ``checkpoint`` continues ``job``."""
    reason = refusal(checkpoint, job)
    if reason is not None:
        raise CheckpointMismatch(f"{folder}: the checkpoint cannot continue this job: {reason}. Run it as it was "
                                 "started, or start over (--overwrite on the command line).", folder)


def _shown(value: Any) -> str:
    return "(none)" if value in ("", None) else str(value)


def save(folder: Path, checkpoint: JobCheckpoint) -> None:
    """Write ``checkpoint`` as ``folder/checkpoint.pkl`` atomically (``media.write_durably``)."""
    write_durably(folder / FILE, lambda fh: pickle.dump(checkpoint, fh, protocol=5))
    logger.debug("checkpoint at %s: %d segment(s) in %s", checkpoint.where(), len(checkpoint.segments), folder)


def exists(folder: Path) -> bool:
    return (folder / FILE).is_file()


def load(folder: Path) -> JobCheckpoint:
    """The checkpoint in ``folder``; ``CheckpointUnreadable`` (with the fix) when it cannot be used."""
    try:
        with (folder / FILE).open("rb") as fh:
            checkpoint = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError) as exc:
        raise CheckpointUnreadable(f"{folder}: the checkpoint cannot be read ({type(exc).__name__}: {exc}). Start "
                                   "over (--overwrite on the command line).", folder) from exc
    if not isinstance(checkpoint, JobCheckpoint) or checkpoint.format != FORMAT:
        raise CheckpointUnreadable(f"{folder}: the checkpoint was written by another version of this program. Start "
                                   "over (--overwrite on the command line).", folder)
    missing = [s.name for s in checkpoint.segments if not (folder / s.name).is_file()]
    if missing:
        raise CheckpointUnreadable(f"{folder}: the checkpoint's segment {missing[0]} is missing. Start over "
                                   "(--overwrite on the command line).", folder)
    return checkpoint


def clean_strays(folder: Path, checkpoint: JobCheckpoint | None) -> list[str]:
    """Remove what is not part of ``checkpoint`` (a segment or temporary file left by a process that
    died; everything, for a job that starts afresh: None); returns the names removed. Only this
    module's own file names are ever touched."""
    keep = {FILE} | {s.name for s in checkpoint.segments} if checkpoint is not None else set()
    removed = []
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.is_file() and _OURS.match(path.name) and path.name not in keep:
            path.unlink()
            removed.append(path.name)
    if removed:
        logger.info("%s: removed %s (not part of the checkpoint)", folder, ", ".join(sorted(removed)))
    return removed


def remove(folder: Path) -> None:
    """Delete a checkpoint folder: this module's files, then the folder if nothing else is in it."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and _OURS.match(path.name):
            path.unlink()
        elif path.is_dir() and _PART.match(path.name):
            remove(path)
    try:
        folder.rmdir()
    except OSError:
        logger.warning("%s: left in place, it holds files that are not a checkpoint's", folder)


def changed(checkpoint: JobCheckpoint, **changes: Any) -> JobCheckpoint:
    """A copy of ``checkpoint`` with ``changes`` (a new commit)."""
    return dataclasses.replace(checkpoint, **changes)
