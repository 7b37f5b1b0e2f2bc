"""High-quality resizing of finished frames to a target output size (PIL's Lanczos filter)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an HWC uint8 RGB frame (values 0..255) to ``width`` x ``height`` with Lanczos.

    Lanczos (a windowed sinc, 3 lobes) anti-aliases when shrinking; the result is HWC uint8 RGB.
    A uint16 frame (a deep source, 0..65535) is resized per channel in float32 and comes back
    uint16, never through 8 bits. A frame already of that size is returned unchanged.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"resize needs an HWC uint8 RGB frame; got shape {rgb.shape}, dtype {rgb.dtype}.")
    if width < 1 or height < 1:
        raise ValueError(f"target size must be at least 1x1; got {width}x{height}.")
    if rgb.shape[1] == width and rgb.shape[0] == height:
        return rgb
    if rgb.dtype == np.uint16:
        planes = [np.asarray(Image.fromarray(rgb[..., c].astype(np.float32)).resize(
            (width, height), Image.Resampling.LANCZOS)) for c in range(3)]
        return np.clip(np.rint(np.stack(planes, axis=2)), 0, 65535).astype(np.uint16)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))
