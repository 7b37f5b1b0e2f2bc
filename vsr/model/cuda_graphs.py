"""``GraphedLoop``: the engine's whole denoising loop (4 x ControlNet + UNet + DDIM step) as one CUDA graph.

At a fixed resolution every frame launches the same few thousand kernels with the same shapes; at
small sizes the GPU waits on Python between them. The loop is captured once per (latent shape,
dtype, first-frame-or-not) into a graph with static input buffers, and each frame copies its inputs
in and replays the graph: one launch instead of thousands.

What makes the loop capturable (checked by ``bench/gpu.py`` on a GPU): the UNet gets its timesteps
as device tensors (``engine.unet_timesteps``); the ARTG time embeddings are cached before capture
(warm-up calls); the DDIM step indexes its CPU ``alphas_cumprod`` with CPU timesteps, so its
coefficients are host scalars baked into the graph (they are per-step constants); no random draws
(eta = 0). Each graph has its own memory pool, since first-frame and steady graphs replay in any
order (scene cuts). Without CUDA the same static-buffer path runs eagerly (no graph), which keeps the
plumbing testable on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

logger = logging.getLogger(__name__)

Loop = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
WARMUP_CALLS = 2


@dataclass
class _Graph:
    latents: torch.Tensor
    lr: torch.Tensor
    cond: torch.Tensor | None
    output: torch.Tensor
    graph: torch.cuda.CUDAGraph | None


class GraphedLoop:
    """Replays ``loop(latents, lr, cond) -> latents`` from captured graphs; falls back to eager on failure."""

    def __init__(self, loop: Loop, device: torch.device) -> None:
        self.loop = loop
        self.device = device
        self._graphs: dict[tuple, _Graph] = {}
        self.failed: str | None = None  # why capture failed (then every call runs eagerly)

    def __call__(self, latents: torch.Tensor, lr: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if self.failed is not None:
            return self.loop(latents, lr, cond)
        key = (tuple(latents.shape), tuple(lr.shape), lr.dtype, None if cond is None else tuple(cond.shape))
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._graphs[key] = self._capture(latents, lr, cond)
            except RuntimeError as exc:  # an operation that cannot be captured: keep working, eagerly
                self.failed = f"{type(exc).__name__}: {exc}"
                logger.warning("CUDA graph capture of the denoising loop failed; running it eagerly (%s)", self.failed)
                return self.loop(latents, lr, cond)
        entry.latents.copy_(latents)
        entry.lr.copy_(lr)
        if cond is not None:
            entry.cond.copy_(cond)
        if entry.graph is None:
            return self.loop(entry.latents, entry.lr, entry.cond).clone()
        entry.graph.replay()
        return entry.output.clone()

    @property
    def captured(self) -> int:
        """How many graphs are held."""
        return sum(1 for g in self._graphs.values() if g.graph is not None)

    def _capture(self, latents: torch.Tensor, lr: torch.Tensor, cond: torch.Tensor | None) -> _Graph:
        static = [latents.clone(), lr.clone(), None if cond is None else cond.clone()]
        if self.device.type != "cuda":
            return _Graph(*static, output=latents, graph=None)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up off the capture stream: lazy init, cuDNN autotune, caches
            for _ in range(WARMUP_CALLS):
                self.loop(*static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.loop(*static)
        logger.info("captured the denoising loop at latent %s (%s, %s)", tuple(latents.shape), lr.dtype,
                    "first frame" if cond is None else "with ControlNet")
        return _Graph(*static, output=output, graph=graph)
