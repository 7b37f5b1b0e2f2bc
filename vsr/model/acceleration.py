"""``Accelerator``: applies the speed switches (``vsr.switches``) to one ``StreamDiffVSRUpscaler``.

The engine calls it at five points of a frame, and each call falls through to the engine's own
plain step when the switch behind it is off, so with no switches the engine runs exactly as before:

- ``inputs(rgb)``: the prefetched (lr, upscaled) or the engine's ``_inputs`` (uploads per
  ``pinned-uploads``);
- ``flow(upscaled, previous)``: the prefetched flow or RAFT now (in half precision per ``raft-half``);
- ``after_inputs(upscaled)``: start the next frame's flow on the side stream (``flow-prefetch``);
- ``denoise(noise, lr, cond)``: the noise upload, then the loop replayed from a CUDA graph
  (``cuda-graphs``) or run;
- ``download(decoded, h, w)``: the uint8 frame (``device-postprocess``).

Set-up (``__init__``): process-wide backend flags (``tf32``, ``cudnn-benchmark``: they apply to the
whole process, as torch's flags do), the networks' memory layout (``channels-last``) and their
compiled forms (``compile``, ``compile-max``, ``aot``). ``COMPILE_BACKEND`` is a knob for the CPU
smoke run only (``eager``: dynamo tracing without inductor).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsr import environment
from vsr import switches
from vsr.model import aot
from vsr.model.cuda_graphs import GraphedLoop
from vsr.model.prefetch import FlowPrefetcher
from vsr.model.transfers import Uploader, download


logger = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"
COMPILE_MODES = {"compile": None, "compile-max": "max-autotune-no-cudagraphs"}


class Accelerator:
    """The switches in effect for one engine (``switches``) and the state they need."""

    def __init__(self, engine: Any, enabled: frozenset[str], *,
                 cache_dir: Path | None = None) -> None:
        self.engine = engine
        self.device = engine.device
        self.switches = frozenset(enabled)
        self.cache_dir = cache_dir
        self.device_postprocess = "device-postprocess" in enabled
        self.pinned_uploads = "pinned-uploads" in enabled
        self.uploader = Uploader(self.device, pinned=self.pinned_uploads and self.device.type == "cuda")
        self.prefetcher = FlowPrefetcher(self.device, engine._inputs, self.compute_flow) \
            if "flow-prefetch" in enabled else None
        self.unet_aot: aot.AOTUNet | None = None
        self._configure_backends()
        self._prepare_networks()
        self.graphs = GraphedLoop(engine._denoise, self.device) if "cuda-graphs" in enabled else None
        if self.pinned_uploads or self.graphs is not None or self.unet_aot is not None:
            engine.unet_timesteps = engine.timesteps.to(self.device)  # no host copy per step (and capturable)
        ignored = sorted(enabled & switches.CUDA_ONLY) if self.device.type != "cuda" else []
        if ignored:
            logger.info("optimisations %s have no effect on %s (their code path still runs)", ignored, self.device)

    def describe(self) -> str:
        return switches.text(self.switches)

    # ---- set-up ------------------------------------------------------------------------------

    def _configure_backends(self) -> None:
        if self.device.type != "cuda":
            return
        if "tf32" in self.switches:
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.allow_tf32 = True
        else:
            torch.set_float32_matmul_precision("highest")
            torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = "cudnn-benchmark" in self.switches

    def _prepare_networks(self) -> None:
        engine = self.engine
        if "channels-last" in self.switches:
            for model in (engine.unet, engine.controlnet, engine.vae):
                model.to(memory_format=torch.channels_last)
        mode = next((name for name in COMPILE_MODES if name in self.switches), None)
        if mode is not None:
            self._use_compile_cache()
            compile_networks(engine, COMPILE_MODES[mode])
        if "aot" in self.switches:
            self._use_compile_cache()
            folder = None if self.cache_dir is None else self.cache_dir / "aoti"
            self.unet_aot = aot.install(engine.unet, folder, engine.source)

    def _use_compile_cache(self) -> None:
        if self.cache_dir is not None:
            environment.use_inductor_cache(self.cache_dir / "inductor")

    # ---- per frame ---------------------------------------------------------------------------

    def offer(self, rgb: np.ndarray) -> None:
        """The frame after the one about to be processed (already padded); no-op without flow-prefetch."""
        if self.prefetcher is not None:
            self.prefetcher.offer(rgb)

    def clear(self) -> None:
        """A new stream: forget prefetched frames."""
        if self.prefetcher is not None:
            self.prefetcher.clear()

    def inputs(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ready = self.prefetcher.take(rgb) if self.prefetcher is not None else None
        return ready if ready is not None else self.engine._inputs(rgb)

    def upload_frame(self, rgb: np.ndarray) -> torch.Tensor:
        return self.uploader.frame(rgb)

    def flow(self, upscaled: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        ready = self.prefetcher.flow(previous) if self.prefetcher is not None else None
        return ready if ready is not None else self.compute_flow(upscaled, previous)

    def compute_flow(self, upscaled: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        with self._raft_precision():
            flow = self.engine._flow(upscaled, previous)
        return flow.float()

    def _raft_precision(self) -> contextlib.AbstractContextManager:
        dtype = self.engine.dtype
        if "raft-half" not in self.switches or dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def after_inputs(self, upscaled: torch.Tensor) -> None:
        if self.prefetcher is not None:
            self.prefetcher.launch(upscaled)

    def denoise(self, noise: torch.Tensor, lr: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        engine = self.engine
        latents = (self.uploader.tensor(noise) if self.pinned_uploads else noise.to(self.device))
        latents = latents * engine.scheduler.init_noise_sigma
        loop = self.graphs if self.graphs is not None else engine._denoise
        return loop(latents, lr, cond)

    def download(self, decoded: torch.Tensor, height: int, width: int) -> np.ndarray:
        return download(decoded, height, width)


def compile_networks(engine: Any, mode: str | None) -> None:
    """torch.compile (static shapes: one graph per resolution) of every network call of a frame but RAFT.

    Modules compile in place (``nn.Module.compile``, so ``engine.unet`` stays the same object);
    the ControlNet trunk and the encoder's feature path are methods, replaced by compiled ones.
    """
    options: dict[str, Any] = {"dynamic": False, "backend": COMPILE_BACKEND}
    if mode is not None and COMPILE_BACKEND == "inductor":
        options["mode"] = mode
    engine.unet.compile(**options)
    engine.controlnet.controlnet_cond_embedding.compile(**options)
    engine.artg.trunk = torch.compile(engine.artg.trunk, **options)
    engine.vae.decoder.compile(**options)
    engine.vae.encoder.features = torch.compile(engine.vae.encoder.features, **options)
    logger.info("torch.compile (%s, mode %s) set up for UNet, ControlNet, VAE", COMPILE_BACKEND, mode or "default")
