"""``StreamDiffVSRUpscaler``: Stream-DiffVSR run one frame at a time with constant memory.

Per frame (MODEL.md section 6): pre-process the LR frame to [-1, 1]; x4 bicubic copy for RAFT;
for every frame after the first, flow to the previous frame, backward-warp the previous raw decoder
output, take its VAE-encoder features and the ControlNet conditioning; 4 DDIM steps of UNet
(+ ControlNet residuals); decode with the temporal features; post-process to uint8.

What carries from frame to frame is ``StreamState`` (previous raw output, previous bicubic frame,
counters) plus the noise generator; nothing else grows with the length of the video. Flow for frame
i is computed when frame i arrives, and ``process`` returns frame i's output right away.

Speed switches (``vsr.switches``: uploads, side-stream flow, CUDA graphs, compile, ...) are
applied by ``vsr.model.acceleration.Accelerator`` at a few points of a frame; with none of them on
(the CPU's default) the steps above run exactly as written here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
from torchvision.models.optical_flow import RAFT

from vsr import switches
from vsr.model.acceleration import Accelerator
from vsr.model.artg import ARTGBranch
from vsr.model.devices import NAMES, resolve_device, resolve_precision
from vsr.model.errors import DeviceError, NonFiniteOutput
from vsr.model import tiling
from vsr.model.flow import CORRELATIONS, FLOW_MEMORY_BUDGET, FLOW_SCALES, Warper, compute_flow, load_raft
from vsr.model.protocol import check_frame, new_seed
from vsr.model.temporal_vae import TemporalAutoencoderTiny
from vsr.model.tiling import Tiling
from vsr.options import ATTENTIONS, SCALE

logger = logging.getLogger(__name__)

NOISE_SKIP_CHUNK = 1 << 22
"""Values drawn at a time when a stream starts past frame 0 and skips the earlier frames' noise."""


@dataclass
class StreamState:
    """What one frame hands to the next. Tensors are (1, 3, 4H, 4W) float32 on the model device.

    ``previous_output``: raw decoder output of the previous frame ([-1, 1] convention, unclamped).
    ``previous_upscaled``: x4 bicubic of the previous pre-processed LR frame (RAFT's image2).
    ``size``: padded LR (height, width) of the stream; a new size needs ``reset()`` first.
    """

    previous_output: torch.Tensor | None = None
    previous_upscaled: torch.Tensor | None = None
    size: tuple[int, int] | None = None
    frames: int = 0  # frames processed since start_stream (= noise draws taken)
    since_reset: int = 0  # frames processed since the last reset / start


def _on_cpu(value: object) -> object:
    """A CPU copy of a tensor (other values as they are)."""
    return value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value


def pad_to_multiple(rgb: np.ndarray, multiple: int = SCALE) -> np.ndarray:
    """Edge-replicate (H, W, 3) on the bottom/right to the next multiple of ``multiple``; never resizes."""
    h, w, _ = rgb.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return rgb
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1], channels-last strides (as the reference).
    A uint16 frame (a source deeper than 8 bits) becomes floats straight from its 0..65535 values."""
    top = 65535.0 if rgb.dtype == np.uint16 else 255.0
    x = torch.from_numpy((rgb.astype(np.float32) / top)[None].transpose(0, 3, 1, 2))
    return 2.0 * x - 1.0


def postprocess(image: torch.Tensor, dtype: type = np.uint8) -> np.ndarray:
    """(1, 3, H, W) decoder output in [-1, 1] -> (H, W, 3) uint8 (clamp, x255 in float32, round half to even);
    ``dtype=np.uint16``: x65535 into uint16, so a deep source's output is never rounded to 8 bits."""
    x = (image.float() / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    if dtype == np.uint16:
        return (x * 65535).round().astype(np.uint16)
    return (x * 255).round().astype(np.uint8)


def _require_xformers() -> None:
    try:
        import xformers  # noqa: F401
    except ImportError as exc:
        raise DeviceError(
            "attention='xformers' needs the xformers package. Fix: pip install xformers (CUDA only), or use attention "
            "'sdpa' (the default) or 'sliced'."
        ) from exc


class StreamDiffVSRUpscaler:
    """Stream-DiffVSR as a ``FrameProcessor``: HWC uint8 RGB frame in, exactly 4x frame out, one call each.

    Build with ``from_pretrained``. Noise: a CPU ``torch.Generator`` seeded by ``start_stream``; frame
    k takes the k-th (1, 4, h, w) draw (h, w = padded LR size), as the reference's up-front draws do,
    wherever the stream starts (``start_stream(seed, frame=k)`` skips the earlier draws).
    """

    scale = SCALE

    def __init__(
        self,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: TemporalAutoencoderTiny,
        scheduler: DDIMScheduler,
        prompt_embeds: torch.Tensor,
        raft: RAFT,
        *,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        steps: int = 4,
        attention: str = "sdpa",
        source: str = "",
        flow_source: str = "",
        flow_scale: float = 1.0,
        flow_correlation: str = "auto",
        flow_memory_budget: int = FLOW_MEMORY_BUDGET,
        optimisations: str | tuple[str, ...] = "auto",
        cache_dir: str | Path | None = None,
    ) -> None:
        if flow_scale not in FLOW_SCALES or flow_correlation not in CORRELATIONS:
            raise ValueError(f"flow_scale must be one of {FLOW_SCALES} (got {flow_scale!r}) and flow_correlation one "
                             f"of {CORRELATIONS} (got {flow_correlation!r}).")
        if steps < 1:
            raise ValueError(f"steps must be at least 1; got {steps}. The model was trained for 4.")
        if vae.scale_factor != SCALE:
            raise ValueError(f"The VAE scales by {vae.scale_factor}, but Stream-DiffVSR needs {SCALE}.")
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.steps = steps
        self.attention = attention
        self.source, self.flow_source = source, flow_source
        self.flow_scale, self.flow_correlation = flow_scale, flow_correlation
        self.flow_memory_budget = flow_memory_budget
        self.refuse_non_finite = True  # a frame with NaN/inf raises NonFiniteOutput (bench/gpu.py counts them)
        self.unet = self._place(unet, self.dtype)
        self.controlnet = self._place(controlnet, self.dtype)
        self.vae = self._place(vae, self.dtype)
        self.raft = self._place(raft, torch.float32)  # flow stays fp32: small network, accuracy-critical
        self._set_attention(attention)
        self.artg = ARTGBranch(self.controlnet)
        self.scheduler = scheduler
        self.scheduler.set_timesteps(steps)
        self.timesteps = self.scheduler.timesteps.clone()
        self.unet_timesteps = self.timesteps  # the Accelerator may put the UNet's copy on the device
        self.text = prompt_embeds.to(self.device, self.dtype)
        self.warp = Warper()
        self.state = StreamState()
        self.tiling = Tiling()  # whole frames; a job sets its video's tiling with set_tiling (vsr.job.memory)
        self.seed: int | None = None
        self._generator = torch.Generator("cpu")
        self.accel = Accelerator(self, switches.resolve(optimisations, self.device.type),
                                 cache_dir=Path(cache_dir) if cache_dir is not None else None)
        self.start_stream(None)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = "Jamichsu/Stream-DiffVSR",
        *,
        flow_weights: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        steps: int = 4,
        attention: str = "sdpa",
        flow_scale: float = 1.0,
        optimisations: str | tuple[str, ...] = "auto",
        cache_dir: str | Path | None = None,
    ) -> "StreamDiffVSRUpscaler":
        """Load a hub id or local folder plus RAFT weights (see ``vsr.model.loading`` / ``vsr.model.flow``)."""
        from vsr.model.loading import load_checkpoint

        torch_device = resolve_device(device)
        dtype = resolve_precision(precision, torch_device)  # refuse a bad combination before loading gigabytes
        if attention not in ATTENTIONS:
            raise DeviceError(f"Unknown attention {attention!r}. Use one of: {', '.join(ATTENTIONS)}.")
        if attention == "xformers":
            _require_xformers()
        ckpt = load_checkpoint(model_id, dtype=dtype)
        raft = load_raft(flow_weights)
        return cls(
            ckpt.unet, ckpt.controlnet, ckpt.vae, ckpt.scheduler, ckpt.prompt_embeds, raft,
            device=torch_device, precision=NAMES[dtype], steps=steps, attention=attention,
            source=str(model_id), flow_source=str(flow_weights or "torchvision RAFT large (default weights)"),
            flow_scale=flow_scale,
            optimisations=optimisations, cache_dir=cache_dir,
        )

    def _place(self, model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        """Move ``model`` to the device, and cast it only when its dtype differs (load in the right dtype)."""
        model = model.to(device=self.device)
        if next(model.parameters()).dtype != dtype:
            model = model.to(dtype=dtype)
        return model

    def _set_attention(self, attention: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        for model in (self.unet, self.controlnet):
            if attention == "sdpa":
                model.set_attn_processor(AttnProcessor2_0())
            elif attention == "xformers":
                _require_xformers()
                model.enable_xformers_memory_efficient_attention()
            elif attention == "sliced":
                model.set_attention_slice("auto")
            else:
                raise DeviceError(f"Unknown attention {attention!r}. Use one of: {', '.join(ATTENTIONS)}.")

    # ---- FrameProcessor protocol -------------------------------------------------------------

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input of ``width`` x ``height``: exactly 4x."""
        return width * SCALE, height * SCALE

    def start_stream(self, seed: int | None = None, frame: int = 0) -> int:
        """Begin a new video: clear the temporal state, seed the noise generator, return the seed.

        ``frame``: the index of the first frame to come, for a piece of a video that starts there
        (one segment of a job spread over several workers): every frame still takes the noise a
        whole run from frame 0 takes for it, since the noise of frame k is a function of (seed, k)."""
        if frame < 0:
            raise ValueError(f"frame must be 0 or more; got {frame}.")
        self.seed = new_seed() if seed is None else int(seed)
        self._generator.manual_seed(self.seed)
        self._drawn = 0  # draws taken from the generator since it was seeded
        self.state = StreamState(frames=int(frame))
        self.accel.clear()
        return self.seed

    def _noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Frame ``state.frames``'s noise: the generator's next draw, after skipping to that frame's
        draw when the stream starts later than frame 0 (``start_stream(frame=)``): draws are taken in
        order, one per frame, so skipping k frames means drawing (and dropping) k frames' worth."""
        wanted = self.state.frames
        if self._drawn != wanted:
            if self._drawn > wanted:
                self._generator.manual_seed(int(self.seed))
                self._drawn = 0
            skip = (wanted - self._drawn) * math.prod(shape)
            buffer = torch.empty(min(skip, NOISE_SKIP_CHUNK), dtype=torch.float32)
            while skip > 0:  # uniform_ takes one 32-bit draw per value, as randn's values do (sizes of 16s)
                buffer[: min(skip, buffer.numel())].uniform_(generator=self._generator)
                skip -= min(skip, buffer.numel())
            self._drawn = wanted
        self._drawn += 1
        return torch.randn(shape, generator=self._generator, dtype=torch.float32)

    def set_tiling(self, value: Tiling | None) -> None:
        """Cut every following frame into these tiles (None: whole frames); keep it for a whole video."""
        self.tiling = value if value is not None else Tiling()

    def reset(self) -> None:
        """Scene cut: the next frame is processed as a first frame; the noise draws continue."""
        self.state = replace(self.state, previous_output=None, previous_upscaled=None, size=None, since_reset=0)

    def flush(self) -> list[np.ndarray]:
        """Frames still held back: none (each ``process`` call returns its own frame)."""
        return []

    def describe(self) -> dict:
        """JSON-safe description: engine, model, device, precision, steps, seed, attention, flow scale, scale."""
        return {
            "engine": "stream-diffvsr",
            "model": self.source,
            "flow_weights": self.flow_source,
            "device": str(self.device),
            "precision": NAMES[self.dtype],
            "steps": self.steps,
            "seed": self.seed,
            "attention": self.attention,
            "flow_scale": self.flow_scale,
            "optimisations": self.accel.describe(),
            "scale": SCALE,
        }

    def save_stream(self) -> dict:
        """The stream so far as plain data and CPU tensors (copies): every ``StreamState`` field, the
        seed and the noise generator's state, for ``load_stream`` in this or another process."""
        carried = {f.name: _on_cpu(getattr(self.state, f.name)) for f in fields(StreamState)}
        return {"engine": "stream-diffvsr", "seed": self.seed, "generator": self._generator.get_state().clone(),
                "drawn": self._drawn, "state": carried}

    def load_stream(self, state: object) -> None:
        """Go on exactly after ``save_stream``'s frame: the temporal state back on this device, the
        noise generator at the same draw."""
        if not isinstance(state, dict) or state.get("engine") != "stream-diffvsr":
            raise ValueError("This stream state is not Stream-DiffVSR's; resume with the engine that saved it.")
        carried = {name: value.to(self.device) if isinstance(value, torch.Tensor) else value
                   for name, value in state["state"].items()}
        self.state = StreamState(**carried)
        self.seed = state["seed"]
        self._generator.set_state(state["generator"])
        self._drawn = int(state.get("drawn", self.state.frames))
        self.accel.clear()  # nothing prefetched belongs to the restored stream

    @torch.inference_mode()
    def process(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (4H, 4W, 3) uint8 RGB (uint16 -> uint16 for a deep source). Sides not multiple
        of 4 are edge-padded, then cropped."""
        check_frame(rgb)
        h, w, _ = rgb.shape
        decoded = self.process_tensor(pad_to_multiple(rgb))
        finite = torch.isfinite(decoded).all()  # on the device: read after the download, which waits anyway
        if rgb.dtype == np.uint16:  # a deep source: quantized to 16 bits, never through uint8
            self._require_finite(finite)
            return postprocess(decoded, np.uint16)[: h * SCALE, : w * SCALE]
        if self.accel.device_postprocess:
            out = self.accel.download(decoded, h * SCALE, w * SCALE)
            self._require_finite(finite)
            return out
        self._require_finite(finite)
        return postprocess(decoded)[: h * SCALE, : w * SCALE]

    def _require_finite(self, finite: torch.Tensor) -> None:
        """Refuse a frame whose decoder output held NaN or inf (``finite``: its all-finite flag)."""
        if self.refuse_non_finite and not bool(finite):
            raise NonFiniteOutput(
                f"The upscaled frame came out with NaN or infinite values on {self.device} in {NAMES[self.dtype]} "
                f"(optimisations {self.accel.describe()}): the arithmetic overflowed or a compiled kernel is wrong, "
                "so the frame would be garbage. Fix: use precision fp32, or leave compile, compile-max, aot and "
                "raft-half out of the optimisations (auto uses none of them)."
            )

    def prefetch(self, rgb: np.ndarray) -> None:
        """Hint: ``rgb`` is the frame after the next ``process`` call's. With ``flow-prefetch`` its
        upload and its flow to the next frame start early, on a side stream; else nothing happens.
        Optional for callers (the job calls it with a one-frame look-ahead); never changes results."""
        if isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype in (np.uint8, np.uint16):
            with torch.inference_mode():
                self.accel.offer(pad_to_multiple(rgb))

    def process_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """One frame whose sides are multiples of 4 -> raw decoder output (1, 3, 4H, 4W) float32, [-1, 1]."""
        h, w, _ = rgb.shape
        if h % SCALE or w % SCALE:
            raise ValueError(f"process_tensor needs sides that are multiples of {SCALE}; got {w}x{h}. Use process().")
        state = self.state
        if state.size is not None and state.size != (h, w):
            raise ValueError(
                f"Frame size changed within a stream from {state.size[1]}x{state.size[0]} to {w}x{h}. "
                "Fix: call reset() (or start_stream()) before feeding frames of a new size."
            )
        noise = self._noise((1, self.vae.config.latent_channels, h, w))
        lr, upscaled = self.accel.inputs(rgb)
        denoise_grid, decode_grid = self.tiling.denoise_grid(h, w), self.tiling.decode_grid(h, w)
        cond = features = warped = None
        if state.previous_output is not None:
            flow = self.accel.flow(upscaled, state.previous_upscaled)
            warped = self.warp(state.previous_output, flow).to(self.dtype)
            del flow
            if decode_grid is None:
                features = self.vae.encoder_features(warped)
            cond = self.artg.condition(warped) if denoise_grid is None else tiling.condition(self.artg, warped,
                                                                                              denoise_grid)
        self.accel.after_inputs(upscaled)  # with flow-prefetch: the next frame's flow starts now, on a side stream
        if denoise_grid is None:
            latents = self.accel.denoise(noise, lr.to(self.dtype), cond)
        else:
            latents = noise.to(self.device) * self.scheduler.init_noise_sigma
            latents = tiling.denoise(self.noise_prediction, self.scheduler, self.timesteps, latents,
                                     lr.to(self.dtype), cond, denoise_grid)
        del cond
        latents = (latents / self.vae.config.scaling_factor).to(self.dtype)
        if decode_grid is None:
            decoded = self.vae.decode(latents, features).float()
        else:
            decoded = tiling.decode(self.vae, latents, warped, decode_grid)
        self.state = StreamState(
            previous_output=decoded,
            previous_upscaled=upscaled,
            size=(h, w),
            frames=state.frames + 1,
            since_reset=state.since_reset + 1,
        )
        return decoded

    def _inputs(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-processed LR frame (1, 3, h, w) float32 on the device and its x4 bicubic copy for RAFT."""
        table = self.accel.pinned_uploads and rgb.dtype == np.uint8  # the upload's lookup table is 8-bit only
        lr = self.accel.upload_frame(rgb) if table else preprocess(rgb).to(self.device)
        return lr, F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)

    def _flow(self, upscaled: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """RAFT flow (1, 4h, 4w, 2) from this frame's bicubic copy to the previous one's."""
        return compute_flow(self.raft, upscaled, previous, correlation=self.flow_correlation,
                            memory_budget=self.flow_memory_budget, scale=self.flow_scale)

    def _denoise(self, latents: torch.Tensor, lr: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """DDIM loop. latents (1, 4, h, w) float32, lr (1, 3, h, w) model dtype -> final latents float32."""
        for t, unet_t in zip(self.timesteps, self.unet_timesteps):
            sample = torch.cat([latents.to(self.dtype), lr], dim=1)
            noise_pred = self.noise_prediction(sample, t, cond, unet_t)
            latents = self.scheduler.step(noise_pred.float(), t, latents, eta=0.0, return_dict=False)[0]
        return latents

    def noise_prediction(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                         unet_t: torch.Tensor | None = None) -> torch.Tensor:
        """UNet v-prediction (1, 4, h, w) for model input ``sample`` (1, 7, h, w), with the ControlNet's
        residuals when ``cond`` (its conditioning embedding on the same grid) is given. ``unet_t`` is
        the UNet's copy of ``t`` (on the device with CUDA graphs; default ``t``)."""
        down = mid = None
        if cond is not None:
            down, mid = self.artg.residuals(sample, t, self.text, cond)
        return self.unet(
            sample, t if unet_t is None else unet_t, encoder_hidden_states=self.text,
            down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
        )[0]
