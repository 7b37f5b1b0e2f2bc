"""Host <-> device traffic of one frame: pinned, non-blocking uploads and the uint8 download.

- ``Uploader.frame``: (H, W, 3) uint8 -> the pre-processed (1, 3, H, W) float32 LR frame on the
  device. The uint8 frame travels (a quarter of the float32 bytes), through a pinned buffer and a
  non-blocking copy on CUDA; a 256-entry lookup table computed with exactly the reference's
  arithmetic (numpy float32 ``x / 255``, then ``2x - 1`` in torch) turns it into the same float32
  values ``stream.preprocess`` gives, with the same channels-last strides (RAFT is sensitive to them).
- ``Uploader.tensor``: a CPU tensor (the noise draw) to the device through a pinned buffer.
- ``download``: raw decoder output -> cropped (h, w, 3) uint8 on the host, converted on the device
  (clamp, x255 in float32, round half to even: the same numbers as ``stream.postprocess``) and
  copied once, directly, into freshly allocated pinned memory (the caching host allocator
  recycles it), so the returned array is owned by the caller (the job's encoder thread keeps it).

Pinned buffers are a ring of two per shape; a buffer is rewritten only after the copy that last read
it has completed (its event), so a prefetched upload cannot overwrite one still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vsr.model.protocol import torch_ready

RING = 2


def _preprocess_table() -> torch.Tensor:
    """uint8 value -> its pre-processed float32, with the reference's operation order."""
    scaled = torch.from_numpy(np.arange(256, dtype=np.float32) / 255.0)
    return 2.0 * scaled - 1.0


@dataclass
class _Slot:
    host: torch.Tensor
    done: torch.cuda.Event | None = None


@dataclass
class Uploader:
    """Uploads for one device. ``pinned``: use page-locked buffers and non-blocking copies (CUDA)."""

    device: torch.device
    pinned: bool
    _table: torch.Tensor | None = None
    _slots: dict[tuple, list[_Slot]] = field(default_factory=dict)
    _turn: dict[tuple, int] = field(default_factory=dict)

    def frame(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1] on the device, channels-last strides."""
        if self._table is None:
            self._table = _preprocess_table().to(self.device)
        pixels = self._upload(torch.from_numpy(torch_ready(rgb)))
        values = self._table.index_select(0, pixels.reshape(-1).to(torch.int32)).view(pixels.shape)
        return values[None].permute(0, 3, 1, 2)

    def tensor(self, cpu: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the device (its own copy)."""
        return self._upload(cpu)

    def _upload(self, cpu: torch.Tensor) -> torch.Tensor:
        if not self.pinned or self.device.type != "cuda":
            return cpu.to(self.device, copy=True)
        slot = self._slot(tuple(cpu.shape), cpu.dtype)
        if slot.done is not None:
            slot.done.synchronize()  # the previous copy out of this buffer has finished
        slot.host.copy_(cpu)
        out = slot.host.to(self.device, non_blocking=True)
        slot.done = torch.cuda.Event()
        slot.done.record(torch.cuda.current_stream(self.device))
        return out

    def _slot(self, shape: tuple, dtype: torch.dtype) -> _Slot:
        key = (shape, dtype)
        ring = self._slots.get(key)
        if ring is None:
            ring = self._slots[key] = [_Slot(torch.empty(shape, dtype=dtype, pin_memory=True)) for _ in range(RING)]
        turn = self._turn.get(key, 0)
        self._turn[key] = (turn + 1) % RING
        return ring[turn]


def to_uint8(decoded: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(1, 3, H, W) decoder output -> (height, width, 3) uint8 on its device (crop to the top-left).

    One new float tensor worked on in place (``decoded`` itself is left alone), then one strided
    conversion pass into the contiguous HWC result."""
    x = decoded.float().div(2).add_(0.5).clamp_(0, 1).mul_(255).round_()
    out = torch.empty((height, width, 3), dtype=torch.uint8, device=decoded.device)
    return out.copy_(x[0, :, :height, :width].permute(1, 2, 0))


def download(decoded: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The cropped uint8 frame on the host, as a caller-owned (height, width, 3) array; from a GPU through
    freshly allocated pinned memory (one direct copy, which waits for the frame's kernels on this stream)."""
    image = to_uint8(decoded, height, width)
    if image.device.type != "cuda":
        return image.cpu().numpy()
    host = torch.empty(image.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(image)
    return host.numpy()
