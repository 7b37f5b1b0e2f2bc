"""Output sizes: exactly 4x, or a preset with the width from the display aspect ratio.

Pure arithmetic, no I/O, so it is tested exhaustively (tests/test_job_sizing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from vsr.job.errors import TargetTooLarge
from vsr.options import SCALE


@dataclass(frozen=True)
class OutputSize:
    """The model's output size (always exactly 4x the coded input) and the size written to the file.

    Sizes are (width, height) in coded orientation (the orientation the frames are decoded in; a
    rotation tag travels to the output unchanged). ``resized`` is True when the model output is
    resized (Lanczos) to ``width`` x ``height`` before encoding; then the output has square pixels.
    """

    model_width: int
    model_height: int
    width: int
    height: int

    @property
    def resized(self) -> bool:
        return (self.width, self.height) != (self.model_width, self.model_height)


def even(value: Fraction | float) -> int:
    """``value`` rounded to the nearest even integer (halves away from zero), at least 2."""
    return max(2, 2 * int(Fraction(value) / 2 + Fraction(1, 2)))


def output_size(
    width: int,
    height: int,
    display_width: int,
    display_height: int,
    rotation: int,
    target: int | None,
) -> OutputSize:
    """Decide the output size for a ``width`` x ``height`` coded input.

    ``target`` None: exactly 4x (``SCALE``), keeping the source's pixel aspect ratio. Otherwise
    ``target`` is the output's short side *as displayed*, the way video sites label sizes (the
    height of a landscape or square picture, the width of a portrait one); the long side follows the
    display aspect ratio (``display_width`` / ``display_height``, after pixel aspect ratio and
    rotation) rounded to an even number. A target whose short side is above 4x the displayed short
    side raises ``TargetTooLarge``.
    """
    model = (width * SCALE, height * SCALE)
    if target is None:
        return OutputSize(*model, *model)
    if display_width < 1 or display_height < 1:
        raise ValueError(f"display size must be positive; got {display_width}x{display_height}.")
    short = min(display_width, display_height)
    if target > SCALE * short:
        raise TargetTooLarge(
            f"A {target}p output needs {Fraction(target, short).__float__():.2f}x the input's "
            f"{display_width}x{display_height} picture (short side {short} px), but the model upscales "
            f"exactly {SCALE}x (at most {SCALE * short}p). Choose a smaller size or 4x."
        )
    aspect = Fraction(display_width, display_height)
    if display_width >= display_height:
        shown = (even(target * aspect), target)
    else:
        shown = (target, even(target / aspect))
    if rotation % 180 == 90:
        shown = (shown[1], shown[0])  # back to coded orientation: the player turns it again
    return OutputSize(model[0], model[1], shown[0], shown[1])
