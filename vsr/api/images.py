"""The kinds of picture ``Upscaler`` takes, and turning each into the engines' frame and back.

The engines (``vsr.model.protocol.FrameProcessor``) take and give HWC uint8 RGB numpy arrays. People
hold pictures in other shapes; each kind here goes in and comes out as the same kind:

- numpy ``(H, W, 3)`` ``uint8`` (0..255): as it is;
- numpy ``(H, W, 3)`` floating point (0.0..1.0): out in the same dtype, values ``k / 255``;
- ``PIL.Image.Image``: any mode is converted to RGB first; out an RGB image;
- ``torch.Tensor`` ``(3, H, W)`` or ``(1, 3, H, W)`` (torchvision's convention, channels first), float
  (0.0..1.0) or ``uint8`` (0..255): out the same shape layout, dtype and device.

Float pictures are quantised to 8 bits on the way in (``round(x * 255)``, values outside 0..1 clipped):
the model works on 8-bit video frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Kind:
    """What a picture was, so the upscaled frame can be given back as the same kind."""

    name: str  # "numpy", "pil" or "torch"
    dtype: Any = None  # numpy or torch dtype
    batched: bool = False  # torch (1, 3, H, W)
    device: Any = None  # torch device


def to_frame(picture: Any) -> tuple[np.ndarray, Kind]:
    """(HWC uint8 RGB frame, the picture's kind); ``ValueError``/``TypeError`` naming the fix."""
    if isinstance(picture, np.ndarray):
        return _from_numpy(picture), Kind("numpy", picture.dtype)
    if type(picture).__module__.startswith("PIL."):
        return np.array(picture.convert("RGB")), Kind("pil")
    if type(picture).__module__.startswith("torch"):
        return _from_torch(picture)
    raise TypeError(
        f"Upscaler takes a numpy array (H, W, 3), a PIL.Image or a torch tensor (3, H, W); got "
        f"{type(picture).__module__}.{type(picture).__name__}."
    )


def from_frame(rgb: np.ndarray, kind: Kind) -> Any:
    """The upscaled HWC uint8 frame as ``kind``."""
    if kind.name == "pil":
        from PIL import Image

        return Image.fromarray(rgb, mode="RGB")
    if kind.name == "numpy":
        if kind.dtype == np.uint8:
            return rgb
        return (rgb.astype(np.float32) / 255.0).astype(kind.dtype)
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    if kind.dtype != torch.uint8:
        tensor = tensor.to(torch.float32).div_(255.0).to(kind.dtype)
    tensor = tensor.contiguous().to(kind.device)
    return tensor.unsqueeze(0) if kind.batched else tensor


def _from_numpy(array: np.ndarray) -> np.ndarray:
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"A numpy picture must be (H, W, 3) RGB, channels last; got shape {array.shape}. "
                         "Convert grey or RGBA pictures to RGB first (e.g. PIL's .convert('RGB')).")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        return _quantise(array.astype(np.float32, copy=False))
    raise ValueError(f"A numpy picture must be uint8 (0..255) or floating point (0.0..1.0); got {array.dtype}.")


def _from_torch(tensor: Any) -> tuple[np.ndarray, Kind]:
    import torch

    batched = tensor.ndim == 4 and tensor.shape[0] == 1
    chw = tensor[0] if batched else tensor
    if chw.ndim != 3 or chw.shape[0] != 3 or chw.shape[1] < 1 or chw.shape[2] < 1:
        raise ValueError(f"A torch picture must be (3, H, W) or (1, 3, H, W) RGB, channels first (torchvision's "
                         f"convention); got shape {tuple(tensor.shape)}.")
    hwc = chw.detach().permute(1, 2, 0).to("cpu")
    kind = Kind("torch", tensor.dtype, batched, tensor.device)
    if tensor.dtype == torch.uint8:
        return np.ascontiguousarray(hwc.numpy()), kind
    if tensor.is_floating_point():
        return _quantise(hwc.to(torch.float32).numpy()), kind
    raise ValueError(f"A torch picture must be uint8 (0..255) or floating point (0.0..1.0); got {tensor.dtype}.")


def _quantise(array: np.ndarray) -> np.ndarray:
    """Float 0..1 -> uint8 0..255 (clipped, rounded half to even)."""
    if not np.isfinite(array).all():
        raise ValueError("The picture has NaN or infinite values; give values between 0.0 and 1.0.")
    return np.ascontiguousarray(np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8))
