"""The reference's frame-folder interface: folders of images in, folders of 4x PNGs out.

``in_path`` holds one folder per sequence (or the frames of a single sequence directly). Frames are
sorted by name (numbers compared as numbers, so ``frame_9`` comes before ``frame_10``), each
sequence is one continuous stream (the temporal context is never reset inside it; each sequence
starts a new stream with the same seed), and every output is saved as a PNG under
``out_path/<sequence>/`` with the input's file name (suffix ``.png``). PNGs are written to a
temporary name and renamed, so a stopped run never leaves a half-written image.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from vsr.model.protocol import FrameProcessor
from vsr.job.errors import InputNotFound, JobCancelled, JobFailed, JobRefused
from vsr.job.memory import out_of_memory

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sequence:
    """One stream of frames: its name (the output sub-folder) and its image files in order."""

    name: str
    frames: tuple[Path, ...]


@dataclass(frozen=True)
class SequenceResult:
    name: str
    frames: int
    seed: int
    out_dir: Path


def natural_key(path: Path) -> list:
    """Sort key: the file name with runs of digits compared as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def find_sequences(in_path: Path) -> list[Sequence]:
    """The sequences under ``in_path``: its sub-folders that hold images, or ``in_path`` itself."""
    if not in_path.is_dir():
        raise InputNotFound(f"{in_path}: no such folder. Give --in_path a folder of frames or of sequence folders.")
    direct = _images(in_path)
    folders = sorted((p for p in in_path.iterdir() if p.is_dir() and _images(p)), key=natural_key)
    if direct and folders:
        raise JobRefused(
            f"{in_path}: holds both images and sequence folders ({folders[0].name}/...); it is unclear which are "
            "the sequences. Move the loose images into their own folder."
        )
    if direct:
        return [Sequence(in_path.name, tuple(direct))]
    if not folders:
        raise JobRefused(
            f"{in_path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} in it and in its sub-folders). "
            "Give a folder of frames or of sequence folders."
        )
    return [Sequence(folder.name, tuple(_images(folder))) for folder in folders]


def _images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def load_rgb(path: Path) -> np.ndarray:
    """Read an image as HWC uint8 RGB (values 0..255). Grey and palette images are expanded to RGB;
    an alpha channel is dropped (with a warning); 16-bit images are refused."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;"):
                raise JobRefused(f"{path}: a {mode} (16/32-bit) image; the model takes 8-bit RGB. Convert it to "
                                 "8-bit first (e.g. with ffmpeg -pix_fmt rgb24).")
            if "A" in mode or (mode == "P" and "transparency" in image.info):
                logger.warning("%s: the alpha channel is dropped (the model upscales RGB only)", path)
            rgb = image.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise JobRefused(f"{path}: not a readable image ({exc}). Remove it from the folder or replace it.") from exc


def save_png(rgb: np.ndarray, dest: Path) -> None:
    """Write ``rgb`` (HWC uint8 RGB) as ``dest`` atomically (temporary name, then rename)."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        Image.fromarray(rgb).save(tmp, format="PNG")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def upscale_sequences(
    in_path: Path,
    out_path: Path,
    processor: FrameProcessor,
    seed: int | None,
    *,
    on_frame: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[SequenceResult]:
    """Upscale every sequence under ``in_path`` into ``out_path/<sequence>/``.

    ``on_frame(sequence, done_in_sequence, total_frames_all_sequences)`` is called after each frame.
    Raises ``InputNotFound``/``JobRefused`` for unusable folders or images (before any work for the
    folder layout; for an image, when it is reached), ``JobFailed`` when the engine fails,
    ``JobCancelled`` when ``cancel`` is set.
    """
    sequences = find_sequences(in_path)
    total = sum(len(s.frames) for s in sequences)
    out_path.mkdir(parents=True, exist_ok=True)
    results = []
    for sequence in sequences:
        out_dir = out_path / sequence.name
        out_dir.mkdir(parents=True, exist_ok=True)
        used = processor.start_stream(seed)
        size: tuple[int, ...] | None = None
        for done, path in enumerate(sequence.frames, start=1):
            if cancel is not None and cancel.is_set():
                raise JobCancelled(f"Cancelled in sequence {sequence.name} after {done - 1} frames; the PNGs written "
                                   "so far are complete.")
            rgb = load_rgb(path)
            if size is not None and rgb.shape != size:
                raise JobRefused(f"{path}: the frame is {rgb.shape[1]}x{rgb.shape[0]} but the sequence's first frame "
                                 f"is {size[1]}x{size[0]}. All frames of a sequence must have the same size.")
            size = rgb.shape
            try:
                upscaled = processor.process(rgb)
            except Exception as exc:
                oom = out_of_memory(exc, where=f"upscaling {path}", device=str(processor.describe().get("device")),
                                    frame=done - 1, left="The PNGs of the frames before it are kept.")
                if oom is not None:
                    raise oom from exc
                raise JobFailed(f"{path}: the engine failed on this frame: {type(exc).__name__}: {exc}.") from exc
            save_png(upscaled, out_dir / f"{path.stem}.png")
            if on_frame is not None:
                on_frame(sequence.name, done, total)
        logger.info("sequence %s: %d frames, seed %d -> %s", sequence.name, len(sequence.frames), used, out_dir)
        results.append(SequenceResult(sequence.name, len(sequence.frames), used, out_dir))
    return results
