"""bench/gpu.py's stand-in, built directly on the device, and its frames timed component by component."""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from bench.gpu_settings import FIXTURE_MODEL, WARM_FRAMES

@dataclass
class Master:
    """The stand-in's networks in fp32 on the device; engines get deep copies."""

    unet: torch.nn.Module
    controlnet: torch.nn.Module
    vae: torch.nn.Module
    raft: torch.nn.Module
    text: torch.Tensor
    tiny: bool

    @property
    def bytes(self) -> int:
        nets = (self.unet, self.controlnet, self.vae, self.raft)
        return sum(p.numel() * p.element_size() for m in nets for p in m.parameters())


def build_master(device: torch.device, tiny: bool) -> Master:
    """The full-size (or fixture-sized) stand-in, initialised directly on ``device``."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from torchvision.models.optical_flow import raft_large

    from vsr.model.temporal_vae import TemporalAutoencoderTiny

    if tiny:  # the golden fixture's UNet
        unet_config, cond_channels, vae_widths = dict(UNet2DConditionModel.load_config(FIXTURE_MODEL / "unet")), \
            (8, 16, 32), (16, 16, 16)
    else:
        from bench.standin import UNET_CONFIG

        unet_config, cond_channels, vae_widths = UNET_CONFIG, (64, 128, 256), (64, 64, 64)
    with torch.device(device):
        torch.manual_seed(20240611)
        unet = UNet2DConditionModel.from_config(unet_config)
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
        with torch.no_grad():  # from_unet zero-initialises the residual projections; give them values
            for module in [controlnet.controlnet_cond_embedding.conv_out, controlnet.controlnet_mid_block,
                           *controlnet.controlnet_down_blocks]:
                for p in module.parameters():
                    p.normal_(0.0, 0.02)
        vae = TemporalAutoencoderTiny(encoder_block_out_channels=vae_widths, decoder_block_out_channels=vae_widths)
        raft = raft_large(weights=None, progress=False)
        text = _prompt_embedding(unet_config["cross_attention_dim"], tiny)
    for model in (unet, controlnet, vae, raft):
        model.eval().requires_grad_(False)
    return Master(unet, controlnet, vae, raft, text, tiny)


def _prompt_embedding(width: int, tiny: bool) -> torch.Tensor:
    """The empty prompt through the stand-in CLIP text encoder (ids [BOS, EOS, pad...], no tokenizer)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    layers, heads, inner = (2, 4, 64) if tiny else (1, 16, 2048)
    config = CLIPTextConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=inner, vocab_size=519, bos_token_id=517, eos_token_id=518,
                            pad_token_id=0, max_position_embeddings=77, hidden_act="gelu")
    model = CLIPTextModel(config).eval()
    ids = torch.zeros((1, 77), dtype=torch.int64)
    ids[0, 0], ids[0, 1] = 517, 518
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state.float().detach().clone()


def make_engine(master: Master, precision: str, optimisations: str, cache_dir: Path) -> Any:
    """A StreamDiffVSRUpscaler on copies of the master's networks (switches may change them in place)."""
    from diffusers import DDIMScheduler

    from vsr.model.stream import StreamDiffVSRUpscaler

    device = master.text.device
    engine = StreamDiffVSRUpscaler(
        copy.deepcopy(master.unet), copy.deepcopy(master.controlnet), copy.deepcopy(master.vae),
        DDIMScheduler.from_pretrained(FIXTURE_MODEL, subfolder="scheduler"), master.text, master.raft, device=device, precision=precision,
        source="bench-standin-tiny" if master.tiny else "bench-standin", optimisations=optimisations,
        cache_dir=cache_dir,
    )
    engine.refuse_non_finite = False  # a switch that gives NaN frames is timed and its NaN frames counted
    return engine


def clip(height: int, width: int, frames: int) -> list[np.ndarray]:
    """A deterministic low-res clip: a smooth colour texture panning 2 px per frame (plus a slow wobble)."""
    y, x = np.mgrid[0:height, 0:width + 2 * frames].astype(np.float32)
    texture = np.stack([127 + 90 * np.sin(x / 9 + c) * np.cos(y / 7 - c) + 20 * np.sin(x * y / 900 + c)
                        for c in range(3)], axis=2).clip(0, 255).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, 2 * i:2 * i + width]) for i in range(frames)]


# ---------------------------------------------------------------------------------------------
# Timing: a frame's components on the GPU's own clock (CUDA events), or the host clock on a CPU.

COMPONENTS = ("inputs", "raft", "vae_encoder", "controlnet", "unet", "vae_decoder")


class Timeline:
    """Spans (name, start, end) per frame; on CUDA, events on the stream the span ran on.

    ``install(engine)`` wraps the engine's component calls (instance attributes and module hooks:
    the eager path only; compiled or graphed networks are timed as a whole). A span on a stream
    other than the main one (RAFT under flow-prefetch) is reported as ``<name>_side``.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.frames: list[list[tuple[str, Any, Any]]] = []
        self._main: Any = torch.cuda.current_stream() if cuda else None

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _name(self, name: str) -> str:
        return f"{name}_side" if self.cuda and torch.cuda.current_stream() != self._main else name

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[None]:
        start = self.mark()
        try:
            yield
        finally:
            if self.frames:
                self.frames[-1].append((self._name(name), start, self.mark()))

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.span(name):
                return inner(*args, **kwargs)

        setattr(owner, attr, timed)

    def hook(self, module: torch.nn.Module, name: str) -> None:
        starts: list[Any] = []

        def before(*_: Any) -> None:
            starts.append(self.mark())

        def after(*_: Any) -> None:
            start = starts.pop()
            if self.frames:
                self.frames[-1].append((self._name(name), start, self.mark()))

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def install(self, engine: Any) -> None:
        self.wrap(engine, "_inputs", "inputs")
        self.wrap(engine, "_flow", "raft")
        self.wrap(engine.vae, "encoder_features", "vae_encoder")
        self.wrap(engine.vae, "decode", "vae_decoder")
        self.wrap(engine.artg, "condition", "controlnet")
        self.wrap(engine.artg, "trunk", "controlnet")
        self.hook(engine.unet, "unet")
        self.wrap(engine, "process_tensor", "process_tensor")
        self.wrap(engine, "process", "frame")

    def begin_frame(self) -> None:
        self.frames.append([])

    def summary(self, skip: int) -> dict[str, float]:
        """Median milliseconds per frame of each component over the frames after ``skip``."""
        if self.cuda:
            torch.cuda.synchronize()
        per_frame: list[dict[str, float]] = []
        for spans in self.frames[skip:]:
            totals: dict[str, float] = {}
            for name, start, end in spans:
                ms = start.elapsed_time(end) if self.cuda else (end - start) * 1000
                totals[name] = totals.get(name, 0.0) + ms
            frame = totals.get("frame", 0.0)
            totals["download"] = frame - totals.get("process_tensor", frame)
            parts = sum(totals.get(n, 0.0) for n in COMPONENTS) + totals["download"]
            totals["other_and_idle"] = frame - parts
            per_frame.append(totals)
        names = sorted({n for f in per_frame for n in f} - {"process_tensor"})
        return {n: round(statistics.median(f.get(n, 0.0) for f in per_frame), 3) for n in names}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_stream(engine: Any, frames: list[np.ndarray], *, timeline: Timeline | None = None,
               keep: bool = False, seed: int = 7) -> dict[str, Any]:
    """Stream ``frames`` through ``engine`` as the job does (one-frame look-ahead); timings and outputs.

    The last frame is only announced (``prefetch``), never processed, so every timed frame is a
    mid-video frame: with flow-prefetch a video's very last frame has no next flow to start and is
    cheaper, which would flatter a short run's median."""
    device = engine.device
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    started = time.perf_counter()
    engine.start_stream(seed)
    seconds, outputs, first, nonfinite = [], [], 0.0, 0
    for i, rgb in enumerate(frames[:-1]):
        engine.prefetch(frames[i + 1])
        tick = time.perf_counter()
        if timeline is not None:
            timeline.begin_frame()
        out = engine.process(rgb)
        seconds.append(time.perf_counter() - tick)
        if i == 0:
            first = time.perf_counter() - started
        nonfinite += not bool(torch.isfinite(engine.state.previous_output).all())
        if keep:
            outputs.append(out)
    steady = seconds[WARM_FRAMES:] or seconds
    result: dict[str, Any] = {
        "frames": len(seconds), "steady_frames": len(steady),
        "s_per_frame": round(statistics.median(steady), 5),
        "fps": round(1 / max(statistics.median(steady), 1e-9), 2),
        "first_frame_s": round(first, 4),
        "first_controlnet_frame_s": round(seconds[1], 4) if len(seconds) > 1 else None,
        "spread_s": [round(min(steady), 5), round(max(steady), 5)],
        "nonfinite_frames": nonfinite,  # frames whose decoder output held NaN or inf (a broken optimisation)
    }
    if device.type == "cuda":
        result["peak_gb"] = round((torch.cuda.max_memory_allocated(device) - before) / 2**30 + _weights_gb(engine), 3)
    if timeline is not None:
        result["breakdown_ms"] = timeline.summary(WARM_FRAMES)
    if keep:
        result["outputs"] = outputs
    return result


def _weights_gb(engine: Any) -> float:
    nets = (engine.unet, engine.controlnet, engine.vae, engine.raft)
    return sum(p.numel() * p.element_size() for m in nets for p in m.parameters()) / 2**30


