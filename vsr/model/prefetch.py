"""``FlowPrefetcher``: the next frame's inputs and RAFT flow, computed on a side CUDA stream.

Flow for frame i+1 needs only the low-res frames i and i+1 (their x4 bicubic copies), not frame i's
output, so it can run while frame i denoises. The streaming API returns frame i's output from
``process(frame_i)``, so the engine must be told frame i+1 before that call: the job reads one frame
ahead and calls ``engine.prefetch(frame_{i+1})`` just before ``engine.process(frame_i)``.

1. ``offer(rgb)`` (from ``prefetch``): the frame is uploaded and pre-processed on the side stream.
2. ``launch(current_upscaled)`` (inside ``process(frame_i)``, once frame i's own bicubic copy is
   made): the side stream waits for it and runs RAFT(up[i+1], up[i]); frame i's ControlNet and UNet
   meanwhile run on the main stream.
3. ``take(rgb)`` (inside ``process(frame_{i+1})``): if ``rgb`` is the offered frame, the main stream
   waits for the side stream and gets (lr, upscaled); ``flow(previous)`` then returns the flow when
   ``previous`` is the very tensor it was computed against (after a scene-cut ``reset`` the flow is
   simply not asked for; a different frame, or a new size, discards everything).

Tensors made on the side stream and used on the main one are marked with ``record_stream`` so the
caching allocator does not hand their memory out again too early. Without CUDA the same steps run
immediately, in order (no overlap: the CPU form only keeps the code path testable).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)

Inputs = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]
Flow = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class _Pending:
    rgb: np.ndarray
    lr: torch.Tensor
    upscaled: torch.Tensor
    flow: torch.Tensor | None = None
    against: torch.Tensor | None = None  # the previous frame's upscaled tensor the flow was computed against


class FlowPrefetcher:
    """Up to two offered frames for one engine. ``inputs`` and ``flow`` are the engine's own steps.

    Two, because the job offers frame i+1 before it hands over frame i, which was itself offered one
    call earlier.
    """

    def __init__(self, device: torch.device, inputs: Inputs, flow: Flow) -> None:
        self.device = device
        self._inputs, self._flow = inputs, flow
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._ahead: list[_Pending] = []
        self._taken: _Pending | None = None

    def _on_side(self) -> contextlib.AbstractContextManager:
        if self._stream is None:
            return contextlib.nullcontext()
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        return torch.cuda.stream(self._stream)

    def offer(self, rgb: np.ndarray) -> None:
        """Start uploading a coming frame (already padded to a multiple of 4)."""
        with self._on_side():
            lr, upscaled = self._inputs(rgb)
        self._ahead = [*self._ahead[-1:], _Pending(rgb, lr, upscaled)]

    def launch(self, current_upscaled: torch.Tensor) -> None:
        """Start the flow from the last offered frame to the current one, if they have one size."""
        pending = self._ahead[-1] if self._ahead else None
        if pending is None or pending.flow is not None or pending.upscaled.shape != current_upscaled.shape:
            return
        with self._on_side():
            pending.flow = self._flow(pending.upscaled, current_upscaled)
        pending.against = current_upscaled
        if self._stream is not None:
            current_upscaled.record_stream(self._stream)

    def take(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(lr, upscaled) of ``rgb`` if it was offered (older offers are dropped), else None."""
        self._taken = None
        index = next((i for i, p in enumerate(self._ahead) if _same_frame(p.rgb, rgb)), None)
        if index is None:
            return None
        pending = self._ahead[index]
        self._ahead = self._ahead[index + 1:]
        if self._stream is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self._stream)
            for tensor in (pending.lr, pending.upscaled, pending.flow):
                if tensor is not None:
                    tensor.record_stream(main)
        self._taken = pending
        return pending.lr, pending.upscaled

    def flow(self, previous: torch.Tensor) -> torch.Tensor | None:
        """The prefetched flow of the frame just taken, if it was computed against ``previous``."""
        taken = self._taken
        if taken is None or taken.flow is None or taken.against is not previous:
            return None
        return taken.flow

    def clear(self) -> None:
        """Forget every offered or taken frame (a new stream)."""
        self._ahead, self._taken = [], None


def _same_frame(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))
