"""What the web page says, in plain words: the plan, progress, the result, the limits, the device.

Plain Python (no Gradio), tested without a browser (tests/test_app_web.py).
"""

from __future__ import annotations

from typing import Any

import media
from vsr.formatting import bytes_text, duration_text, speed_text
from vsr.model.errors import ModelLoadError
from vsr.options import SCALE, UpscaleOptions, env_variable
from vsr.web.controls import display_size


TITLE = "Stream-DiffVSR video upscaler"
INTRO = (f"# {TITLE}\nMake a small or blurry video **4x sharper** with a diffusion model, frame by frame. "
         "Sound, subtitles and timing are kept exactly.")
LIVE_LINK = " Or upscale your camera, live: [the Live page](live)."
PLAN_HINT = "Upload a video (or pick an example) to see what will happen."
PLAN_FAILED = "**This video cannot be processed as asked.** The message that popped up says why and what to do."
JOB_FAILED = "**The job stopped.** The message that popped up says why and what to do."
STARTING = "Reading the video and checking the settings…"
SIZE_INFO = "4x keeps the exact shape; presets set the height."


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
        text += (f" On this ZeroGPU Space each GPU call lasts at most {duration_text(options.zerogpu_max_seconds)}; "
                 "a longer job runs as several calls, one after another (the plan says how many).")
    return text


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


def sizes_text(plan: Any) -> str:
    """Size in -> size out as Markdown, coded sizes first: when pixels are not square (or the video
    is rotated) the sizes it shows as follow, so a 4x job reads as 4x on both:
    ``**176x144** (shown as 192x144) → **704x576** (shown as 768x576), 4x``."""
    video, size = plan.info.video, plan.size
    shown_in = display_size(plan)
    rotated = video.rotation % 180 == 90
    across, down = (shown_in[1], shown_in[0]) if rotated else shown_in  # in the coded orientation
    if size.resized:  # a preset's output has square pixels of the shown shape
        shown_out = (size.height, size.width) if rotated else (size.width, size.height)
    else:
        width, height = round(size.width * across / video.width), round(size.height * down / video.height)
        shown_out = (height, width) if rotated else (width, height)

    def one(width: int, height: int, shown: tuple[int, int]) -> str:
        return f"**{width}x{height}**" + (f" (shown as {shown[0]}x{shown[1]})" if shown != (width, height) else "")

    return (f"{one(video.width, video.height, shown_in)} → {one(size.width, size.height, shown_out)}"
            + ("" if size.resized else f", {SCALE}x"))


def plan_markdown(plan: Any) -> str:
    """A ``JobPlan`` for the page: a headline (size in -> size out, frames, duration, time and file
    size on this machine), then the job's own ``to_text`` lines (input, range, output, engine, tracks
    kept, notes)."""
    headline = (
        f"{sizes_text(plan)}, {plan.frames} frames, "
        f"{float(plan.duration):.2f} s · about **{duration_text(plan.estimate_seconds)}** "
        + ("(provisional: not yet measured on this device) " if _provisional(plan) else "on this machine ")
        + f"· file about **{bytes_text(plan.estimate_bytes)}**"
    )
    details = [line for line in plan.to_text().splitlines() if not line.startswith("Estimate:")]  # in the headline
    return "\n".join(["### The plan", headline, "", *_labelled_lines("\n".join(details))])


def done_text(result: Any, plan: Any) -> str:
    """The status line of a finished job (the seed only for an engine whose result depends on it)."""
    rate = result.frames / result.seconds if result.seconds > 0 else None
    speed = f" ({speed_text(rate)})" if rate else ""
    text = f"Done in {duration_text(result.seconds)}: {result.frames} frames{speed}."
    if plan.temporal:
        text += f" Seed {result.seed} (enter it under Seed to get exactly this result again)."
    return text


def report_markdown(result: Any, plan: Any) -> str:
    """The verification report of a finished job in plain words: one line per check, and the scene
    cuts (only for an engine with temporal context)."""
    report = result.report
    verdict = "passed" if report.ok else "FAILED"
    lines = [f"### Verification {verdict}: {report.path.name}"]
    lines += [f"- {'✓' if check.ok else '✗ FAILED'} **{check.name}**: {check.message}" for check in report.checks]
    if plan.temporal:
        cuts = ", ".join(str(i) for i in result.scene_cuts) if result.scene_cuts else "none"
        lines.append(f"- Scene cuts (temporal context reset at frame): {cuts}")
    note = media.preview_note(plan.info) if getattr(result, "preview", None) is not None else None
    if note is not None:
        lines.append(f"- {note}")
    return "\n".join(lines)


def device_text(options: UpscaleOptions) -> str:
    """Where the diffusion model runs, as the server resolves ``options.device`` / ``.precision``
    (one line under the settings: the server chooses, the page cannot change it)."""
    return f"Runs on {_device(options)}: the server's choice."


def _device(options: UpscaleOptions) -> str:
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


_SETTING_THINGS = {"model_id": "a Stream-DiffVSR model folder (or a Hugging Face model id)",
                   "flow_weights": "a RAFT large weights file (.pth or .safetensors)"}


def model_error_text(error: ModelLoadError) -> str:
    """A model loading error for the page, whose reader cannot type command-line flags: what could
    not be loaded and why, then the fix in the server's settings (its environment variables and
    download cache). An error without those facts (``ModelLoadError.remedy``) is shown as it is."""
    variable = env_variable(error.setting) if error.setting else None
    if not error.remedy or variable is None:
        return str(error)
    head = f"{error.subject[:1].upper()}{error.subject[1:]} could not be loaded: {error.reason}."
    thing = _SETTING_THINGS.get(error.setting or "", "a file or folder")
    if error.remedy == "path":
        fix = f"Set {variable} on the server to {thing} that exists, or leave it unset for the default."
    elif error.remedy == "hub-id":
        fix = (f"Check {variable} on the server (the default is Jamichsu/Stream-DiffVSR); a private model also "
               "needs a Hugging Face token on the server (HF_TOKEN).")
    elif error.setting == "model_id":
        fix = (f"On the server, set {variable} to a local copy of the model, or put the model into the Hugging Face "
               f"download cache ({error.cache}; HF_HOME sets where it is) on a machine with internet access, "
               "and set HF_HUB_OFFLINE=1 so that the server uses the cache only.")
    else:
        fix = (f"On the server, set {variable} to {thing}, or put the file at {error.cache} (the torch hub "
               "cache) on a machine with internet access.")
    return f"{head} {fix}"


def stream_note(ready: float, total: float, speed: float | None, error: str | None = None,
                capped_bytes: int | None = None) -> str:
    """What the streamed result is doing, honestly: how much of the video is ready to play and how
    fast the upscaler goes against real time (``speed``: seconds of video made per second; None: not
    measured yet). ``error``: why the stream stopped (the job goes on); ``capped_bytes``: the stream
    stopped at this size, the most the server keeps in memory for one page."""
    if capped_bytes is not None:
        return (f"The live result stops after {duration_text(ready)} of {duration_text(total)}: the server holds "
                f"a streamed result in memory, and this one reached {capped_bytes // 2**20} MB. The upscale goes "
                "on; its verified file appears here when it is done.")
    if error:
        return (f"The live result stopped ({error}); the job goes on, and its verified file appears here when "
                "it is done.")
    made = f"{duration_text(ready)} of {duration_text(total)} ready"
    if speed is None:
        return f"The result plays here while it is made: {made}."
    if speed >= 1:
        return (f"The result plays here while it is made: {made}; the upscaler runs at {speed:.1f}x real time, "
                "ahead of playback.")
    return (f"Playing what is ready: {made}. The upscaler makes {speed:.2f} s of video per second "
            f"({speed:.2g}x real time), slower than playback, so the player pauses to wait for it; the pieces "
            "grow longer so that it pauses less often.")
