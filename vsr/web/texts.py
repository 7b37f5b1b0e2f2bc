"""The web app's logic that has nothing to do with Gradio: controls -> options, texts, job folders.

``app.py`` holds the layout and the wiring; everything here is plain Python so it is tested
without a browser (tests/test_app_web.py):

- ``control_overrides``: the values of the page's controls -> ``build_options`` overrides.
- ``size_choices``: which output sizes an input allows (above 4x is refused, with the reason).
- ``plan_markdown`` / ``progress_text`` / ``done_text`` / ``report_markdown`` / ``limits_text``:
  what the page says, in plain words.
- ``before_after``: the bicubic-enlarged input next to the upscaled frame, for the image slider.
- ``new_job_dir`` / ``remove_job_dir`` / ``prune_job_dirs`` / ``output_filename``: each job's files
  in its own unguessable folder, old folders removed.
- ``ActiveJobs``: one cancel flag per browser session, so the Cancel button reaches its own job.
- ``NewestEvent``: progress from the job's thread to the page, never holding the job back.
- ``gpu_seconds``: the ZeroGPU reservation for a plan.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vsr.options import CRF_RANGE, HEIGHT_PRESETS, SCALE, UpscaleOptions
from vsr.job.planning import gpu_seconds  # noqa: F401 - part of this module's surface (the ZeroGPU reservation)

logger = logging.getLogger(__name__)

# Output sizes offered on the page: (label, value given to build_options' ``height``).
SIZE_LABELS: tuple[tuple[str, str], ...] = (
    ("4x", "4x"),
    ("720p", "720"),
    ("1080p", "1080"),
    ("1440p", "1440"),
    ("4K", "2160"),
)
assert {int(v) for _, v in SIZE_LABELS[1:]} == set(HEIGHT_PRESETS)

JOB_DIR_PREFIX = "job-"
_JOB_DIR_RE = re.compile(r"^job-[A-Za-z0-9_-]{22,}$")
PREVIEW_MAX_PIXELS = 1920 * 1080
"""Largest before/after picture sent to the browser; bigger frames are shown scaled down (both sides alike)."""


def control_overrides(
    *,
    engine: str | None,
    size: str | None,
    start: str | float | None,
    end: str | float | None,
    steps: int | float | None,
    seed: str | int | float | None,
    codec: str | None,
    crf: int | float | None,
    scene_cuts: bool | None,
) -> dict[str, Any]:
    """The page's control values as ``build_options`` overrides (empty fields mean "not given").

    ``seed`` is a text field: empty means a fresh random seed. ``crf`` is ignored for codecs without
    a CRF (ProRes, FFV1), whose quality slider the page hides. Sliders deliver floats: whole ones
    become ints, others are passed on for ``build_options`` to refuse by name.
    """

    def blank(value: Any) -> bool:
        return value is None or (isinstance(value, str) and not value.strip())

    def whole(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    overrides: dict[str, Any] = {
        "engine": engine,
        "height": size,
        "start": None if blank(start) else start,
        "end": None if blank(end) else end,
        "steps": None if blank(steps) else whole(steps),
        "codec": codec,
        "scene_cuts": scene_cuts,
    }
    if not blank(seed):
        overrides["seed"] = seed.strip() if isinstance(seed, str) else whole(seed)
    if not blank(crf) and codec is not None and CRF_RANGE.get(str(codec).lower()) is not None:
        overrides["crf"] = whole(crf)
    return overrides


@dataclass(frozen=True)
class SizeChoices:
    """The output sizes an input allows: ``allowed`` values, and why the others are not offered."""

    allowed: tuple[tuple[str, str], ...]
    refused: tuple[tuple[str, str], ...]  # (label, reason)

    @property
    def note(self) -> str:
        """One sentence for the page, empty when every size is allowed."""
        if not self.refused:
            return ""
        labels = ", ".join(label for label, _ in self.refused)
        return f"Not offered for this video: {labels}. {self.refused[0][1]}"


def size_choices(display_width: int, display_height: int, max_output_pixels: int) -> SizeChoices:
    """Which of ``SIZE_LABELS`` fit a ``display_width`` x ``display_height`` input.

    A preset is the output's short side as displayed; it is refused when it needs more than the
    model's 4x, or when the output would exceed ``max_output_pixels``. "4x" is refused only for the
    pixel limit (the plan then says so too).
    """
    short = min(display_width, display_height)
    aspect = display_width / display_height
    allowed: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for label, value in SIZE_LABELS:
        if value == "4x":
            pixels = display_width * display_height * SCALE * SCALE
            if pixels > max_output_pixels:
                refused.append((label, f"4x of {display_width}x{display_height} is above this server's limit of "
                                       f"{max_output_pixels:,} output pixels; trim or use a smaller video."))
                continue
            allowed.append((label, value))
            continue
        target = int(value)
        long_side = round(target * max(aspect, 1 / aspect))
        if target > SCALE * short:
            refused.append((label, f"The model upscales exactly {SCALE}x: this {display_width}x{display_height} "
                                   f"video reaches at most {SCALE * short}p."))
        elif target * long_side > max_output_pixels:
            refused.append((label, f"{label} is above this server's limit of {max_output_pixels:,} output pixels."))
        else:
            allowed.append((label, value))
    return SizeChoices(tuple(allowed), tuple(refused))


def duration_text(seconds: float | None) -> str:
    """``75.0`` -> ``"1 min 15 s"``; ``None`` -> ``"unknown"``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def size_text(count: float | None) -> str:
    """Bytes in human units: ``1536000`` -> ``"1.5 MB"`` (powers of 1000, like file managers)."""
    if count is None:
        return "unknown"
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def limits_text(options: UpscaleOptions, queue_size: int, *, zero_gpu: bool = False) -> str:
    """The server's limits in one line of Markdown, shown under the title (with ``zero_gpu``, also
    the ZeroGPU Space's per-call limit)."""
    text = (
        f"Limits on this server: uploads up to {options.max_upload_mb:,} MB, "
        f"{duration_text(options.max_duration)} of video (after trimming), "
        f"input frames up to {options.max_input_pixels:,} pixels, output frames up to "
        f"{options.max_output_pixels:,} pixels. One video is upscaled at a time; up to {queue_size} "
        "more wait in line and see their place."
    )
    if zero_gpu:
        text += (f" On this ZeroGPU Space each job must finish within one GPU call of "
                 f"{duration_text(options.zerogpu_max_seconds)}; the plan says how long a piece of your video fits.")
    return text


def progress_text(stage: str, done: int, total: int, fps: float | None, eta: float | None, message: str = "") -> str:
    """The status line of a running job in plain words."""
    if stage == "loading":
        return f"Loading the model… {message}".strip()
    if stage == "upscaling":
        rate = f"{fps:.2f} frames/s" if fps else "measuring speed"
        left = f"about {duration_text(eta)} left" if eta is not None else "time left: measuring"
        return f"Upscaling frame {done} of {total} · {rate} · {left}"
    if stage == "finishing":
        return f"Finishing the file (all {done} frames upscaled; writing audio and subtitles)…"
    if stage == "verifying":
        return "Checking the finished file (frames, frame rate, duration, audio)…"
    if stage == "done":
        return f"Done: {done} frames."
    return message or stage


def before_after(input_frame: np.ndarray, output_frame: np.ndarray,
                 max_pixels: int = PREVIEW_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) pictures of equal size for the before/after slider.

    ``input_frame`` is the low-resolution frame, ``output_frame`` the upscaled one, both HWC uint8
    RGB (values 0..255). "Before" is the input enlarged with plain bicubic to the output's size, so
    the slider compares the model with what a simple resize gives. Outputs above ``max_pixels`` are
    shown scaled down to fit it (the output with Lanczos, the input enlarged straight to that size),
    to keep the page responsive.
    """
    height, width = output_frame.shape[:2]
    after = output_frame
    if width * height > max_pixels:
        factor = math.sqrt(max_pixels / (width * height))
        width, height = max(1, int(width * factor)), max(1, int(height * factor))
        after = np.asarray(Image.fromarray(np.ascontiguousarray(output_frame)).resize(
            (width, height), Image.Resampling.LANCZOS, reducing_gap=3.0))
    before = np.asarray(Image.fromarray(np.ascontiguousarray(input_frame)).resize(
        (width, height), Image.Resampling.BICUBIC))
    return before, after


def output_filename(input_name: str, options: UpscaleOptions, suffix: str) -> str:
    """The finished file's name: the input's stem, the size label, and the plan's container ``suffix``.

    ``clip.mov`` at 4x into ``.mp4`` -> ``clip_4x.mp4``; at 1080p into ``.mov`` -> ``clip_1080p.mov``.
    Characters other than letters, digits, ``.-_`` become ``_`` so the name is safe in any browser.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(input_name).stem).strip("._") or "video"
    return f"{stem[:80]}_{options.height_label}{suffix}"


def new_job_dir(root: Path) -> Path:
    """Make a new folder for one job under ``root``, named with 128 random bits (not guessable).

    The folder is private to the server's user (mode 0700).
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{JOB_DIR_PREFIX}{secrets.token_urlsafe(16)}"
    path.mkdir(mode=0o700)
    return path


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


class ActiveJobs:
    """One cancel flag per browser session: the Cancel button sets the flag of its own session's job.

    Thread-safe; the web app keeps one instance for the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def start(self, session: str) -> threading.Event:
        """Register a new job for ``session`` and return its (clear) cancel flag."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

    def cancel(self, session: str) -> bool:
        """Ask the running job of ``session`` to stop; False when it has none."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None:
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event) -> None:
        """Forget ``session``'s job if ``flag`` is still the registered one."""
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]

    def flag(self, session: str) -> threading.Event | None:
        """The cancel flag of ``session``'s running job, or None."""
        with self._lock:
            return self._flags.get(session)

    def running(self) -> int:
        with self._lock:
            return len(self._flags)


class NewestEvent:
    """Hands progress events from the job's thread to the page, keeping only the newest ones.

    The job calls ``put`` for every event and never waits; the page iterates ``updates``, which
    coalesces what arrived while the page was busy, so a slow browser never holds the job back.
    Events are ``vsr.job.progress.ProgressEvent``s (``input_frame`` / ``output_frame`` HWC uint8 RGB).
    """

    def __init__(self, min_interval: float = 0.1) -> None:
        self._cond = threading.Condition()
        self._event: Any = None
        self._frames: Any = None  # newest event that carried both frames
        self._version = 0
        self._closed = False
        self._min_interval = min_interval

    def put(self, event: Any) -> None:
        """Record ``event`` (called from the job's thread)."""
        with self._cond:
            self._event = event
            if getattr(event, "input_frame", None) is not None and getattr(event, "output_frame", None) is not None:
                self._frames = event
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """No more events will come (the job ended, one way or another)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def updates(self, frame_interval: float) -> Iterator[tuple[Any, Any]]:
        """Yield ``(newest_event, frames_event_or_None)`` until ``close``.

        The second item is the newest event with frames, at most once per ``frame_interval`` seconds,
        and always the last one before the end, so the page ends on the final frame.
        """
        seen = 0
        sent_frames: Any = None
        last_frames_at = -math.inf
        last_yield_at = -math.inf
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._version != seen or self._closed)
                pause = self._min_interval - (time.monotonic() - last_yield_at)
                if pause > 0 and not self._closed:
                    self._cond.wait(pause)  # let a few more events arrive; keep only the newest
                closed = self._closed
                fresh = self._version != seen
                unsent = self._frames is not None and self._frames is not sent_frames
                if not fresh and not (closed and unsent):
                    return  # closed, and everything has been handed over
                seen, event, frames = self._version, self._event, self._frames
            now = time.monotonic()
            due = frames is not sent_frames and (closed or now - last_frames_at >= frame_interval)
            if due:
                sent_frames, last_frames_at = frames, now
            last_yield_at = now
            yield event, (frames if due else None)


def display_size(plan: Any) -> tuple[int, int]:
    """(width, height) of a ``JobPlan``'s input as displayed (after pixel aspect ratio and rotation)."""
    video = plan.info.video
    return int(video.display_width), int(video.display_height)


def _labelled_lines(text: str) -> list[str]:
    """``"Label:    value"`` lines (the job's own ``to_text`` wording) as Markdown bullets."""
    lines = []
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep and label.strip() and " " not in label.strip():
            lines.append(f"- **{label.strip()}:** {value.strip()}")
        elif line.strip():
            lines.append(f"- {line.strip()}")
    return lines


def _provisional(plan: Any) -> bool:
    return bool(getattr(getattr(plan, "calibration", None), "provisional", False))


def plan_markdown(plan: Any) -> str:
    """A ``JobPlan`` for the page: a headline (size in -> size out, frames, duration, time and file
    size on this machine), then the job's own ``to_text`` lines (input, range, output, engine, tracks
    kept, notes)."""
    width, height = display_size(plan)
    headline = (
        f"**{width}x{height} → {plan.size.width}x{plan.size.height}**, {plan.frames} frames, "
        f"{float(plan.duration):.2f} s · about **{duration_text(plan.estimate_seconds)}** "
        + ("(provisional: not yet measured on this device) " if _provisional(plan) else "on this machine ")
        + f"· file about **{size_text(plan.estimate_bytes)}**"
    )
    details = [line for line in plan.to_text().splitlines() if not line.startswith("Estimate:")]  # in the headline
    return "\n".join(["### The plan", headline, "", *_labelled_lines("\n".join(details))])


def done_text(result: Any) -> str:
    """The status line of a finished job."""
    rate = result.frames / result.seconds if result.seconds > 0 else None
    speed = f" ({rate:.2f} frames/s)" if rate else ""
    return (f"Done in {duration_text(result.seconds)}: {result.frames} frames{speed}. Seed {result.seed} "
            "(enter it under Seed to get exactly this result again).")


def report_markdown(result: Any) -> str:
    """The verification report of a finished job in plain words: one line per check, and the scene cuts."""
    report = result.report
    verdict = "passed" if report.ok else "FAILED"
    cuts = ", ".join(str(i) for i in result.scene_cuts) if result.scene_cuts else "none"
    lines = [f"### Verification {verdict}: {report.path.name}"]
    lines += [f"- {'✓' if check.ok else '✗ FAILED'} **{check.name}**: {check.message}" for check in report.checks]
    lines.append(f"- Scene cuts (temporal context reset at frame): {cuts}")
    return "\n".join(lines)


def device_text(options: UpscaleOptions) -> str:
    """Where the diffusion model runs, as the server resolves ``options.device`` / ``.precision``."""
    from vsr.model.devices import NAMES, resolve_device, resolve_precision
    from vsr.model.errors import DeviceError

    try:
        device = resolve_device(options.device)
        dtype = resolve_precision(options.precision, device)
    except DeviceError as error:
        return f"{options.device} / {options.precision}: {error}"
    name = device.type
    if device.type == "cuda":
        import torch

        name = f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{name}, {NAMES[dtype]} (device {options.device}, precision {options.precision})"
