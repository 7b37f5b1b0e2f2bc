"""The before/after pictures of the page's comparison slider."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from media.colour import to_8bit

PREVIEW_MAX_PIXELS = 1920 * 1080
"""Largest before/after picture sent to the browser; bigger frames are shown scaled down (both sides alike)."""


def before_after(input_frame: np.ndarray, output_frame: np.ndarray,
                 max_pixels: int = PREVIEW_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) pictures of equal size for the before/after slider.

    ``input_frame`` is the low-resolution frame, ``output_frame`` the upscaled one, both HWC uint8
    RGB (values 0..255), or uint16 from a deep source (shown rounded to 8 bits). "Before" is the input enlarged with plain bicubic to the output's size, so
    the slider compares the model with what a simple resize gives. Outputs above ``max_pixels`` are
    shown scaled down to fit it (the output with Lanczos, the input enlarged straight to that size),
    to keep the page responsive.
    """
    input_frame, output_frame = to_8bit(input_frame), to_8bit(output_frame)  # a deep source's uint16, for display
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
