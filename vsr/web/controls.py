"""The page's controls -> job options, and which output sizes an input allows.

Plain Python (no Gradio), tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsr.options import CRF_RANGE, HEIGHT_PRESETS, SCALE, UpscaleOptions

CONTROLS = ("engine", "size", "start", "end", "steps", "seed", "codec", "crf", "scene_cuts")
"""The settings controls of the page, in the order the handlers receive their values."""

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


def job_options(settings: UpscaleOptions, values: tuple) -> UpscaleOptions:
    """The job's options: the server's ``settings`` with the visitor's control ``values`` (in
    ``CONTROLS`` order) on top."""
    overrides = control_overrides(**dict(zip(CONTROLS, values)))
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def display_size(plan: Any) -> tuple[int, int]:
    """(width, height) of a ``JobPlan``'s input as displayed (after pixel aspect ratio and rotation)."""
    video = plan.info.video
    return int(video.display_width), int(video.display_height)
