"""AOTInductor for the UNet: exported once per resolution, compiled ahead of time, cached on disk.

``torch.compile`` compiles in every new process; on a ZeroGPU Space each GPU call may be a new one,
and the compile (minutes for the UNet) would eat the call. AOTInductor instead turns
``torch.export`` of the UNet into a self-contained package (``torch._inductor.aoti_compile_and_package``),
written to ``<cache_dir>/aoti/<key>.pt2`` and loaded in seconds by any later process with the same
key (``torch._inductor.aoti_load_package``). The key covers the input shapes, dtype, device type,
torch version, the model's source and a fingerprint of its weights (the package embeds them).

``AOTUNet`` replaces ``unet.forward``: calls with ControlNet residuals at a shape it has a package
for (built on first use) run the package; first-frame calls (no residuals: one frame per stream)
run the eager forward. ``PACKAGE = False`` (the CPU smoke run) stops after ``torch.export`` and runs
the exported program, which checks the export and the argument plumbing in seconds instead of the
minutes a CPU AOTInductor build takes. Both APIs exist since torch 2.6.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
from diffusers import UNet2DConditionModel

logger = logging.getLogger(__name__)

PACKAGE = True  # False: export only (bench/gpu.py --smoke)


class _ExportedUNet(torch.nn.Module):
    """UNet call with flat tensor arguments (what torch.export and the package take)."""

    def __init__(self, unet: UNet2DConditionModel) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor,
                *residuals: torch.Tensor) -> torch.Tensor:
        return UNet2DConditionModel.forward(
            self.unet, sample, timestep, encoder_hidden_states=text,
            down_block_additional_residuals=list(residuals[:-1]), mid_block_additional_residual=residuals[-1],
            return_dict=False,
        )[0]


def fingerprint(module: torch.nn.Module) -> str:
    """A cheap identity of a module's weights: parameter count and a few sums, in float64."""
    params = list(module.parameters())
    probes = [params[0], params[len(params) // 2], params[-1]]
    sums = [float(p.detach().double().sum()) for p in probes]
    return json.dumps([sum(p.numel() for p in params), [round(s, 6) for s in sums]])


class AOTUNet:
    """Stands in for ``unet.forward``; see the module doc. ``compile_seconds`` records each build."""

    def __init__(self, unet: UNet2DConditionModel, folder: Path | None, source: str) -> None:
        self.unet = unet
        self.eager = unet.forward
        self.folder = folder
        self.identity = f"{source}|{fingerprint(unet)}"
        self._runners: dict[tuple, Callable[..., Any]] = {}
        self.compile_seconds: dict[str, float] = {}

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 down_block_additional_residuals: list[torch.Tensor] | None = None,
                 mid_block_additional_residual: torch.Tensor | None = None, return_dict: bool = False,
                 **kwargs: Any) -> Any:
        if down_block_additional_residuals is None or mid_block_additional_residual is None or kwargs:
            return self.eager(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                              down_block_additional_residuals=down_block_additional_residuals,
                              mid_block_additional_residual=mid_block_additional_residual,
                              return_dict=return_dict, **kwargs)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(())
        args = (sample, timestep, encoder_hidden_states, *down_block_additional_residuals,
                mid_block_additional_residual)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = self._build(args)
        out = runner(*args)
        return (out,) if not return_dict else {"sample": out}

    def _key(self, args: tuple[torch.Tensor, ...]) -> str:
        spec = json.dumps({
            "shapes": [list(a.shape) for a in args], "dtype": str(args[0].dtype), "device": args[0].device.type,
            "torch": torch.__version__, "model": self.identity,
        }, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:24]

    def _build(self, args: tuple[torch.Tensor, ...]) -> Callable[..., Any]:
        path = None if self.folder is None else self.folder / f"unet-{self._key(args)}.pt2"
        if PACKAGE and path is not None and path.is_file():
            logger.info("loading the AOTInductor UNet package %s", path)
            return torch._inductor.aoti_load_package(str(path))
        started = time.perf_counter()
        patched = self.unet.__dict__.pop("forward", None)  # export sees the plain module
        try:
            with torch.inference_mode(False), torch.no_grad():
                example = tuple(a.clone() for a in args)
                program = torch.export.export(_ExportedUNet(self.unet), example, strict=False)
        finally:
            if patched is not None:
                self.unet.forward = patched  # type: ignore[method-assign]
        with torch.inference_mode(False), torch.no_grad():
            if not PACKAGE:
                runner = program.module()
            else:
                if path is None:
                    raise ValueError("the aot optimisation needs a cache folder for its packages")
                path.parent.mkdir(parents=True, exist_ok=True)
                torch._inductor.aoti_compile_and_package(program, package_path=str(path))
                runner = torch._inductor.aoti_load_package(str(path))
        seconds = time.perf_counter() - started
        self.compile_seconds["x".join(map(str, args[0].shape[-2:]))] = seconds
        logger.info("AOTInductor UNet for latent %s built in %.1f s", tuple(args[0].shape), seconds)
        return runner


def install(unet: UNet2DConditionModel, folder: Path | None, source: str) -> AOTUNet:
    """Route ``unet``'s calls through an ``AOTUNet`` (an instance attribute shadowing ``forward``)."""
    adapter = AOTUNet(unet, folder, source)
    unet.forward = adapter  # type: ignore[method-assign]
    return adapter
