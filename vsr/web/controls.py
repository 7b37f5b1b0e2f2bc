"""The page's controls -> job options, and which output sizes an input allows.

Plain Python (no Gradio), tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsr.options import CODECS, CRF_RANGE, ENGINES, HEIGHT_PRESETS, SCALE, TEMPORAL_ENGINES, UpscaleOptions

CONTROLS = ("engine", "size", "start", "end", "steps", "seed", "codec", "crf", "scene_cuts")
"""The settings controls of the page, in the order the handlers receive their values."""

ENGINE_CHOICES: tuple[tuple[str, str], ...] = (
    ("Stream-DiffVSR", "stream-diffvsr"),
    ("Bicubic", "bicubic"),
)
ENGINE_INFO = "Stream-DiffVSR restores detail; bicubic is a plain 4x resize, fast, to compare."
CODEC_CHOICES: tuple[tuple[str, str], ...] = (
    ("H.264 · MP4", "h264"),
    ("HEVC · MP4", "hevc"),
    ("AV1 · MP4", "av1"),
    ("ProRes · MOV", "prores"),
    ("FFV1 · MKV", "ffv1"),
    ("Auto · MP4", "auto"),
)
"""(label, codec): short enough for the dropdown, whose arrow takes the right end of the box."""
CODEC_INFO = "H.264 plays everywhere; Auto: H.264, or HEVC 10-bit for a 10-bit or HDR video"
assert tuple(value for _, value in ENGINE_CHOICES) == ENGINES
assert tuple(value for _, value in CODEC_CHOICES) == CODECS

# Output sizes offered on the page: (label, value given to build_options' ``height``).
SIZE_LABELS: tuple[tuple[str, str], ...] = (
    ("4x", "4x"),
    ("720p", "720"),
    ("1080p", "1080"),
    ("1440p", "1440"),
    ("4K", "2160"),
)
assert {int(v) for _, v in SIZE_LABELS[1:]} == set(HEIGHT_PRESETS)

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


def size_control(plan: Any, max_output_pixels: int, current: str, default_info: str) -> tuple[list, str, str]:
    """(choices, value, info) of the output-size control once ``plan``'s video is known: the sizes it
    allows, ``current`` if it is one of them (else 4x), and why the others are not offered."""
    width, height = display_size(plan)
    sizes = size_choices(width, height, max_output_pixels)
    allowed = [value for _, value in sizes.allowed]
    return list(sizes.allowed), current if current in allowed else "4x", sizes.note or default_info


def job_options(settings: UpscaleOptions, values: tuple) -> UpscaleOptions:
    """The job's options: the server's ``settings`` with the visitor's control ``values`` (in
    ``CONTROLS`` order) on top."""
    overrides = control_overrides(**dict(zip(CONTROLS, values)))
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def display_size(plan: Any) -> tuple[int, int]:
    """(width, height) of a ``JobPlan``'s input as displayed (after pixel aspect ratio and rotation)."""
    video = plan.info.video
    return int(video.display_width), int(video.display_height)


@dataclass(frozen=True)
class CrfSlider:
    """The quality slider for one codec: its range, default and the sentence under it."""

    minimum: int
    maximum: int
    value: int
    info: str


def crf_slider(codec: str) -> CrfSlider | None:
    """The quality (CRF) slider for ``codec``, or None when the codec has no CRF (the page hides the
    slider then, and ``control_overrides`` ignores its value)."""
    spec = CRF_RANGE.get(codec)
    if spec is None:
        return None
    low, high, default = spec
    return CrfSlider(low, high, default, f"lower = better, larger; default {default}")


def temporal_controls(engine: str) -> bool:
    """Whether the controls that only a temporal engine uses (denoising steps, seed, scene cuts) are
    shown for ``engine`` (hidden for bicubic, where they change nothing)."""
    return engine in TEMPORAL_ENGINES
