"""GPU benchmark of the Stream-DiffVSR engine: one prepared run on a lent GPU machine, under 6 minutes.

Builds the full-size stand-in (../shared/docs/BENCH-MODEL.md configs, random weights initialised on
the device: nothing is loaded or transferred) and measures, at 320x180 -> 1280x720 and
480x270 -> 1920x1080, for bf16, fp16 and fp32 (TF32):

- ``eager``: the plain path (no optimisation), with a per-component breakdown from CUDA events
  (RAFT, UNet, ControlNet, VAE encoder, VAE decoder, inputs/uploads, download, and the rest: DDIM
  steps, warps and the GPU's idle gaps between launches);
- ``auto``: the product's defaults on CUDA; ``each``: every optimisation switch alone (fp16);
  ``best``: all the cheap switches together per precision;
- ``compile`` / ``compile-max`` / ``aot``: torch.compile (default, max-autotune) and AOTInductor,
  with their compile times (and a second, cache-warm compile);
- ``drift``: bf16, fp16 and TF32 against strict fp32 over 60 frames (8-bit max and mean per frame),
  and RAFT's flow drift in half precision;
- ``job``: a whole job (decode, upscale, encode, mux, verify) against its model time, when PyAV is there.

Each measurement: seconds per frame (median of >= 20 steady frames, after a first frame and a first
ControlNet frame), time to the first frame, peak CUDA memory of the engine. Phases run in order
until the time budget is spent; what does not fit is recorded as skipped (and a hard alarm stops a
compile that overruns). Results: bench/results/gpu.json (and ``--out``), a markdown report printed
last, and the README's GPU block (between its markers) rewritten.

``--smoke`` runs every phase's code on the CPU with the fixture-sized configs in a minute or so
(CUDA-only switches in their CPU form, torch.compile with the ``eager`` backend, AOT export only); the
test suite runs it (tests/test_bench_gpu.py). ``--device cpu`` measures what a CPU can (compile,
channels-last, device-side uint8) with the tiny or full stand-in.

On the device machine (Python 3.12, torch 2.11, no diffusers or PyAV there), from the repository
root; here, once, fetch the wheels into the ignored folder ``.carry/wheels``::

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/wheels \\
        diffusers==0.42.1 av==18.1.0 scenedetect==0.7.2 platformdirs==4.14.9

then one device ``run`` with ``carry: [".carry"]`` and ``timeout_s: 480``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \\
        .carry/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
        PYTHONUNBUFFERED=1 python3 bench/gpu.py --budget 330 --out $OUT 2>&1 | tee $OUT/gpu.log | tail -80

and back here: copy the returned gpu.json to bench/results/gpu.json and run
``python bench/gpu.py --report bench/results/gpu.json`` to rewrite the README block. ``--phases``
runs only some phases (a second call for what the first skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

# Run as a script, Python puts bench/ first on the path, where bench/media.py would shadow the
# media package: drop exactly that entry and put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

logger = logging.getLogger("bench.gpu")

RESULTS = ROOT / "bench" / "results" / "gpu.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench-gpu:begin -->", "<!-- bench-gpu:end -->"
SIZES = {"720p": (180, 320), "1080p": (270, 480)}  # LR (height, width) -> 4x
SMOKE_SIZES = {"128x192": (32, 48)}
PRECISIONS = ("bf16", "fp16", "fp32")
CHEAP = ("device-postprocess", "pinned-uploads", "flow-prefetch", "cudnn-benchmark", "channels-last",
         "cuda-graphs", "raft-half")
BEST = "auto,cudnn-benchmark,channels-last,cuda-graphs"
PHASES = ("eager", "auto", "copies", "each", "compile", "best", "drift", "job", "compile-max", "aot")
CPU_PHASES = ("copies", "side-by-side")  # --device cpu: what a CPU can tell (README "CPU figures of the switches")
SMOKE_PHASES = (*PHASES[:3], "side-by-side", *PHASES[3:])
WARM_FRAMES = 2  # frame 0 (no ControlNet) and frame 1 (first ControlNet frame: autotune, capture, compile)


# ---------------------------------------------------------------------------------------------
# The stand-in, built on the device.

TINY_UNET = {
    "act_fn": "silu", "attention_head_dim": 2, "block_out_channels": [16, 16, 32, 32],
    "center_input_sample": False, "cross_attention_dim": 32,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 7, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 8, "num_class_embeds": None, "only_cross_attention": [True, True, True, False],
    "out_channels": 4, "sample_size": 32,
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}  # the golden fixture's UNet (tests/fixtures/stream-diffvsr-tiny)
SCHEDULER = {
    "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "v_prediction", "timestep_spacing": "trailing", "steps_offset": 1,
    "set_alpha_to_one": False, "clip_sample": False,
}  # the published scheduler config (MODEL.md section 1)


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

    if tiny:
        unet_config, cond_channels, vae_widths = TINY_UNET, (8, 16, 32), (16, 16, 16)
    else:
        from bench.standin import UNET_CONFIG

        unet_config, cond_channels, vae_widths = UNET_CONFIG, (64, 128, 256), (64, 64, 64)
    with torch.device(device):
        torch.manual_seed(20240611)
        unet = UNet2DConditionModel(**unet_config)
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
    return StreamDiffVSRUpscaler(
        copy.deepcopy(master.unet), copy.deepcopy(master.controlnet), copy.deepcopy(master.vae),
        DDIMScheduler(**SCHEDULER), master.text, master.raft, device=device, precision=precision,
        source="bench-standin-tiny" if master.tiny else "bench-standin", optimisations=optimisations,
        cache_dir=cache_dir,
    )


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
    seconds, outputs, first = [], [], 0.0
    for i, rgb in enumerate(frames[:-1]):
        engine.prefetch(frames[i + 1])
        tick = time.perf_counter()
        if timeline is not None:
            timeline.begin_frame()
        out = engine.process(rgb)
        seconds.append(time.perf_counter() - tick)
        if i == 0:
            first = time.perf_counter() - started
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


# ---------------------------------------------------------------------------------------------
# Budget and the measured runs.


class OutOfTime(BaseException):
    """The hard time limit fired (a BaseException, so no phase's error handling swallows it)."""


@dataclass
class Context:
    """Everything the phases share; ``results`` is what lands in gpu.json."""

    device: torch.device
    master: Master
    sizes: dict[str, tuple[int, int]]
    frames: int
    drift_frames: int
    job_frames: int
    deadline: float
    cache_dir: Path
    smoke: bool
    results: dict[str, Any]
    save: Callable[[], None]
    speeds: dict[tuple[str, str], float] = field(default_factory=dict)
    only: tuple[str, ...] = PRECISIONS

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main_precision(self) -> str:
        """The precision of the per-switch and compile phases: auto's (fp16) on CUDA, fp32 on a CPU."""
        return "fp16" if self.cuda else "fp32"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if (self.cuda or p != "fp16") and p in self.only]

    def guess(self, label: str, precision: str, frames: int) -> float:
        """Seconds a run of ``frames`` frames should take, from the eager figures so far."""
        speed = self.speeds.get((label, precision))
        if speed is None:
            h, w = self.sizes[label]
            speed = (0.35 if self.cuda else 3e-4) * (h * w) / (180 * 320) * (3 if precision == "fp32" else 1)
        return 2.0 + 1.3 * speed * (frames + WARM_FRAMES)

    def phase(self, name: str) -> dict[str, Any]:
        return self.results["phases"].setdefault(name, {"runs": {}})


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(ctx: Context, phase: str, key: str, precision: str, optimisations: str, label: str, *,
            frames: int | None = None, timeline: bool = False, keep: bool = False,
            need: float | None = None) -> dict[str, Any] | None:
    """One run in a fresh engine, recorded under ``phase``/``key``; None when skipped or failed."""
    runs = ctx.phase(phase)["runs"]
    frames = frames or ctx.frames + WARM_FRAMES
    need = need if need is not None else ctx.guess(label, precision, frames)
    if ctx.left() < need:
        runs[key] = {"skipped": f"needs about {need:.0f} s, {max(ctx.left(), 0):.0f} s left"}
        return None
    engine = None
    try:
        engine = make_engine(ctx.master, precision, optimisations, ctx.cache_dir)
        recorder = Timeline(ctx.cuda) if timeline else None
        if recorder is not None:
            recorder.install(engine)
        h, w = ctx.sizes[label]
        result = run_stream(engine, clip(h, w, frames + 1), timeline=recorder, keep=keep)
        result.update(_engine_facts(engine), precision=precision, size=label, lr=f"{w}x{h}", hr=f"{4 * w}x{4 * h}")
    except Exception as exc:  # noqa: BLE001 - one failed configuration must not end the benchmark
        logger.exception("run %s/%s failed", phase, key)
        runs[key] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}", "optimisations": optimisations}
        return None
    finally:
        del engine
        release()
    runs[key] = {k: v for k, v in result.items() if k != "outputs"}
    logger.info("%s %s: %.4f s/frame, first frame %.2f s", phase, key, result["s_per_frame"], result["first_frame_s"])
    ctx.save()
    return result


def _engine_facts(engine: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"optimisations": engine.accel.describe()}
    graphs = engine.accel.graphs
    if graphs is not None:
        facts["cuda_graphs"] = {"captured": graphs.captured, "failed": graphs.failed}
    if engine.accel.unet_aot is not None:
        facts["aot_compile_s"] = {k: round(v, 2) for k, v in engine.accel.unet_aot.compile_seconds.items()}
    return facts


def baseline(precision: str, cuda: bool) -> str:
    """The plain path's switches: none (fp32 on CUDA with TF32, as upstream runs it)."""
    return "tf32" if precision == "fp32" and cuda else "none"


# ---------------------------------------------------------------------------------------------
# Phases.


def phase_eager(ctx: Context) -> None:
    """The plain path per size and precision, with the component breakdown."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            result = measure(ctx, "eager", f"{label}/{precision}", precision, baseline(precision, ctx.cuda), label,
                             timeline=True)
            if result is not None:
                ctx.speeds[(label, precision)] = result["s_per_frame"]


def phase_auto(ctx: Context) -> None:
    """The product's defaults (``auto``) per size and precision."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            measure(ctx, "auto", f"{label}/{precision}", precision, "auto", label, timeline=True)


def _median_ms(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        tick = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - tick) * 1000)
    return round(statistics.median(times), 3)


def phase_copies(ctx: Context) -> None:
    """Host <-> device per frame: the plain pre/post-processing against the switches' versions (at the
    720p and 1080p outputs whatever ``--sizes`` says: no model is involved; the tiny size with --smoke)."""
    from vsr.model.stream import postprocess, preprocess
    from vsr.model.transfers import Uploader, download

    runs, repeats = ctx.phase("copies")["runs"], 5 if ctx.smoke else 30
    uploader = Uploader(ctx.device, pinned=ctx.cuda)
    for label, (h, w) in (ctx.sizes if ctx.smoke else SIZES).items():
        rgb = clip(h, w, 1)[0]
        decoded = torch.rand((1, 3, 4 * h, 4 * w), device=ctx.device) * 2.2 - 1.1
        runs[label] = {
            "upload_plain_ms": _median_ms(lambda: preprocess(rgb).to(ctx.device), ctx.device, repeats),
            "upload_pinned_uint8_ms": _median_ms(lambda: uploader.frame(rgb), ctx.device, repeats),
            "download_plain_ms": _median_ms(lambda: postprocess(decoded), ctx.device, repeats),
            "download_device_uint8_ms": _median_ms(lambda: download(decoded, 4 * h, 4 * w, pinned=ctx.cuda),
                                                   ctx.device, repeats),
        }
    ctx.save()


SIDE_BY_SIDE = ("none", "none,channels-last", "none,device-postprocess", "none,compile")


def phase_side_by_side(ctx: Context, rounds: int | None = None) -> None:
    """Configurations in one run, frame by frame in turn (a load spike on a shared machine hits one frame
    of each, not one configuration): per-frame ratios to the first, medians, per size and precision."""
    rounds = rounds or max(ctx.frames, 1)
    configs = SIDE_BY_SIDE[:-1] if ctx.smoke else SIDE_BY_SIDE  # the compile phase runs dynamo's tracing already
    for label, (h, w) in ctx.sizes.items():
        for precision in ["fp32"] if ctx.smoke else [p for p in ("bf16", "fp32") if p in ctx.precisions()]:
            if ctx.left() < len(SIDE_BY_SIDE) * ctx.guess(label, precision, rounds) + 60:
                ctx.phase("side-by-side")["runs"][f"{label}/{precision}"] = {"skipped": "out of time"}
                continue
            _side_by_side(ctx, label, precision, configs, clip(h, w, rounds + WARM_FRAMES + 1))
            torch._dynamo.reset()
            release()


def _side_by_side(ctx: Context, label: str, precision: str, configs: tuple[str, ...],
                  frames: list[np.ndarray]) -> None:
    engines = {name: make_engine(ctx.master, precision, name, ctx.cache_dir) for name in configs}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        engine.start_stream(7)
    for i, rgb in enumerate(frames[:-1]):
        for name, engine in engines.items():
            engine.prefetch(frames[i + 1])
            tick = time.perf_counter()
            engine.process(rgb)
            times[name].append(time.perf_counter() - tick)
    base = times[configs[0]][WARM_FRAMES:]
    ctx.phase("side-by-side")["runs"][f"{label}/{precision}"] = {
        name: {"s_per_frame": round(statistics.median(t[WARM_FRAMES:]), 4),
               "first_two_frames_s": round(t[0] + t[1], 2),
               "speedup_vs_none": round(statistics.median(b / x for b, x in zip(base, t[WARM_FRAMES:])), 3)}
        for name, t in times.items()
    }
    ctx.save()


def phase_each(ctx: Context) -> None:
    """Every cheap switch alone on the plain path, at the main precision."""
    precision = ctx.main_precision
    for label in ctx.sizes:
        for switch in CHEAP:
            if switch == "raft-half" and precision == "fp32":
                continue  # no half precision to run RAFT in
            optimisations = f"{baseline(precision, ctx.cuda)},{switch}"
            measure(ctx, "each", f"{label}/{precision}/{switch}", precision, optimisations, label,
                    timeline=switch != "cuda-graphs")


def phase_best(ctx: Context) -> None:
    """All the cheap switches together (``BEST``) per size and precision."""
    for label in ctx.sizes:
        for precision in ctx.precisions():
            measure(ctx, "best", f"{label}/{precision}", precision, BEST, label)


def compile_need(ctx: Context, mode: str) -> float:
    if ctx.smoke or not ctx.cuda:
        return 30.0
    return {"compile": 120.0, "compile-max": 300.0, "aot": 240.0}[mode]


def _compiled_runs(ctx: Context, phase: str, precision: str, optimisations: str, labels: list[str],
                   tag: str = "") -> None:
    """One engine through several sizes: a compile per resolution. ``tag`` names a repeat."""
    runs = ctx.phase(phase)["runs"]
    need = compile_need(ctx, phase) / (3 if tag else 1)
    if ctx.left() < need:
        runs[optimisations + tag] = {"skipped": f"needs about {need:.0f} s, {max(ctx.left(), 0):.0f} s left"}
        return
    engine = None
    torch._dynamo.utils.counters.clear()
    try:
        engine = make_engine(ctx.master, precision, optimisations, ctx.cache_dir)
        for label in labels:
            key = f"{label}/{precision}/{optimisations}{tag}"
            if ctx.left() < need / 2:
                runs[key] = {"skipped": f"{max(ctx.left(), 0):.0f} s left"}
                continue
            h, w = ctx.sizes[label]
            result = run_stream(engine, clip(h, w, ctx.frames + WARM_FRAMES + 1))
            result.update(_engine_facts(engine), precision=precision, size=label)
            result["compile_s"] = round(result["first_frame_s"] + result["first_controlnet_frame_s"]
                                        - 2 * result["s_per_frame"], 2)
            result["dynamo"] = _dynamo_counts()
            runs[key] = result
            ctx.save()
    except Exception as exc:  # noqa: BLE001
        logger.exception("compiled run %s failed", optimisations)
        runs[optimisations + tag] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    finally:
        del engine
        torch._dynamo.reset()
        release()


def _dynamo_counts() -> dict[str, Any]:
    """Graph breaks (with their reasons) and graphs compiled so far, from dynamo's counters."""
    counters = torch._dynamo.utils.counters
    breaks = dict(counters.get("graph_break", {}))
    return {"graph_breaks": sum(breaks.values()), "break_reasons": [str(k)[:200] for k in list(breaks)[:5]],
            "unique_graphs": int(counters.get("stats", {}).get("unique_graphs", 0))}


def phase_compile(ctx: Context) -> None:
    """torch.compile at every size in one engine, then again in a new one (inductor's cache warm), then
    compile + CUDA graphs."""
    precision, labels = ctx.main_precision, list(ctx.sizes)
    _compiled_runs(ctx, "compile", precision, "auto,compile", labels)
    if ctx.smoke:  # the repeats run the same code; dynamo's tracing alone takes a while on a CPU
        return
    _compiled_runs(ctx, "compile", precision, "auto,compile", labels[:1], tag=" (new engine, warm cache)")
    _compiled_runs(ctx, "compile", precision, "auto,compile,cuda-graphs", labels[:1])


def phase_compile_max(ctx: Context) -> None:
    if ctx.smoke:
        ctx.phase("compile-max")["runs"]["auto,compile-max"] = {"skipped": "smoke: the eager backend has no modes"}
        return
    _compiled_runs(ctx, "compile-max", ctx.main_precision, "auto,compile-max", list(ctx.sizes)[:1])


def phase_aot(ctx: Context) -> None:
    """AOTInductor UNet: built (cold), then loaded from the package cache by a new engine."""
    labels = list(ctx.sizes)[:1]
    _compiled_runs(ctx, "aot", ctx.main_precision, "auto,aot", labels)
    if not ctx.smoke:  # the smoke run builds no package to load
        _compiled_runs(ctx, "aot", ctx.main_precision, "auto,aot", labels, tag=" (new engine, package cached)")


def phase_drift(ctx: Context) -> None:
    """8-bit drift of each faster precision from strict fp32, per frame over ``drift_frames`` frames."""
    label = next(iter(ctx.sizes))
    n = ctx.drift_frames
    runs = ctx.phase("drift")["runs"]
    reference = measure(ctx, "drift", "fp32-strict", "fp32", "none", label, frames=n, keep=True)
    if reference is None:
        return
    ref = reference.pop("outputs")
    others = [("fp32-tf32", "fp32", "tf32")] if ctx.cuda else []
    others += [(p, p, "none") for p in ctx.precisions() if p != "fp32"]
    for key, precision, optimisations in others:
        result = measure(ctx, "drift", key, precision, optimisations, label, frames=n, keep=True)
        if result is None:
            continue
        diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(result.pop("outputs"), ref)]
        runs[key]["vs_fp32_8bit"] = {
            "max_per_frame": [int(d.max()) for d in diffs],
            "mean_per_frame": [round(float(d.mean()), 4) for d in diffs],
        }
    flow_drift(ctx, label)
    ctx.save()


def flow_drift(ctx: Context, label: str, pairs: int = 4) -> None:
    """RAFT in half precision (``raft-half``) against fp32 RAFT on the same frame pairs (end-point error)."""
    runs = ctx.phase("drift")["runs"]
    h, w = ctx.sizes[label]
    frames = clip(h, w, pairs + 1)
    for precision in [p for p in ctx.precisions() if p != "fp32"]:
        if ctx.left() < 10:
            runs[f"raft-{precision}"] = {"skipped": "out of time"}
            continue
        engine = make_engine(ctx.master, precision, "raft-half", ctx.cache_dir)
        errors, magnitudes = [], []
        with torch.inference_mode():
            ups = [engine._inputs(f)[1] for f in frames]
            for a, b in zip(ups[1:], ups[:-1]):
                half, full = engine.accel.compute_flow(a, b), engine._flow(a, b).float()
                errors.append((half - full).norm(dim=-1))
                magnitudes.append(float(full.norm(dim=-1).mean()))
        epe = torch.stack(errors)
        runs[f"raft-{precision}"] = {"pairs": pairs, "epe_mean_px": round(float(epe.mean()), 5),
                                     "epe_max_px": round(float(epe.max()), 4),
                                     "flow_mean_magnitude_px": round(statistics.mean(magnitudes), 4)}
        del engine
        release()


def make_video(path: Path, frames: list[np.ndarray], rate: int = 30) -> Path:
    """An H.264 file of ``frames`` (PyAV)."""
    import av

    height, width, _ = frames[0].shape
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@dataclass(frozen=True)
class _KnownSpeed:
    """A plan's estimator that measures nothing (the benchmark times the job itself)."""

    description: dict[str, Any]

    def engine(self) -> dict[str, Any]:
        return self.description

    def will_measure(self, width: int, height: int) -> bool:
        return False

    def calibration(self, width: int, height: int) -> Any:
        from vsr.job.estimate import Calibration

        return Calibration("bench-gpu", ((width * height, 0.1),), cached=True)


def phase_job(ctx: Context) -> None:
    """A whole job (decode, upscale, encode, mux, verify) against the model time inside it."""
    runs = ctx.phase("job")["runs"]
    try:
        import av  # noqa: F401
    except ImportError:
        runs["job"] = {"skipped": "PyAV is not importable here"}
        return
    label = next(iter(ctx.sizes))
    precision = ctx.main_precision
    if ctx.left() < ctx.guess(label, precision, ctx.job_frames) + 10:
        runs["job"] = {"skipped": f"{max(ctx.left(), 0):.0f} s left"}
        return
    engine = None
    try:
        engine = make_engine(ctx.master, precision, "auto", ctx.cache_dir)
        runs["job"] = _time_job(ctx, engine, label)
    except Exception as exc:  # noqa: BLE001
        logger.exception("job run failed")
        runs["job"] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    finally:
        del engine
        release()
    ctx.save()


def _time_job(ctx: Context, engine: Any, label: str) -> dict[str, Any]:
    from vsr import job
    from vsr.options import build_options

    h, w = ctx.sizes[label]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-job-") as tmp:
        work = Path(tmp)
        video = make_video(work / "in.mp4", clip(h, w, ctx.job_frames))
        options = build_options({"engine": "stream-diffvsr", "device": ctx.device.type, "seed": 7,
                                 "precision": engine.describe()["precision"], "scene_cuts": "off",
                                 "tmp_dir": work / "tmp", "cache_dir": work / "cache"}, env={})
        plan = job.plan(video, options, estimator=_KnownSpeed(engine.describe()), output=work / "out.mp4")
        run_stream(engine, clip(h, w, WARM_FRAMES + 2))  # compile/autotune/capture outside the timed job
        started = time.perf_counter()
        result = job.run(plan, work / "out.mp4", processor=engine)
        wall = time.perf_counter() - started
    return {"size": label, "frames": result.frames, "optimisations": engine.describe()["optimisations"],
            "job_s": round(wall, 3), "model_s": round(result.model_seconds, 3),
            "overhead_pct": round(100 * (wall / result.model_seconds - 1), 2),
            "fps": round(result.frames / wall, 2), "verified": bool(result.report.ok)}


PHASE_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "eager": phase_eager, "auto": phase_auto, "copies": phase_copies, "side-by-side": phase_side_by_side,
    "each": phase_each, "compile": phase_compile, "best": phase_best,
    "drift": phase_drift, "job": phase_job, "compile-max": phase_compile_max, "aot": phase_aot,
}


# ---------------------------------------------------------------------------------------------
# Report: markdown for the terminal and the README block.


def _runs(results: dict, phase: str) -> dict[str, dict]:
    return results.get("phases", {}).get(phase, {}).get("runs", {})


def _split(key: str) -> tuple[str, str]:
    size, _, rest = key.partition("/")
    return size, rest


def recommend(results: dict) -> dict[str, float]:
    """Speed-up of each cheap switch alone over the plain path, at the slowest-gaining size."""
    eager, gains = _runs(results, "eager"), {}
    for key, run in _runs(results, "each").items():
        size, rest = _split(key)
        precision, _, switch = rest.partition("/")
        base = eager.get(f"{size}/{precision}", {}).get("s_per_frame")
        if base and "s_per_frame" in run:
            ratio = base / run["s_per_frame"]
            gains[switch] = round(min(gains.get(switch, ratio), ratio), 3)
    return gains


def speed_table(results: dict) -> list[str]:
    sizes = list(results.get("sizes", {}))
    rows: dict[tuple[str, str], dict[str, dict]] = {}
    for phase in ("eager", "auto", "each", "best", "compile", "compile-max", "aot"):
        for key, run in _runs(results, phase).items():
            size, rest = _split(key)
            if size in sizes:
                rows.setdefault((phase, rest), {})[size] = run
    head = "| phase | precision / switches | " + " | ".join(f"{s} s/frame (fps) | {s} first frame s | {s} peak GB"
                                                        for s in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 3 * len(sizes))]
    for (phase, rest), by_size in rows.items():
        cells = []
        for size in sizes:
            run = by_size.get(size, {})
            if "s_per_frame" in run:
                extra = f", compile {run['compile_s']} s" if "compile_s" in run else ""
                cells += [f"{run['s_per_frame']:.4f} ({run['fps']}){extra}", f"{run['first_frame_s']:.2f}",
                          str(run.get("peak_gb", "-"))]
            else:
                cells += [run.get("skipped") or (run.get("error", "-")[:60]), "", ""]
        lines.append(f"| {phase} | {rest} | " + " | ".join(cells) + " |")
    return lines


def breakdown_table(results: dict) -> list[str]:
    names = ("inputs", "raft", "raft_side", "vae_encoder", "controlnet", "unet", "vae_decoder", "download",
             "other_and_idle", "frame")
    lines = ["| run | " + " | ".join(names) + " |", "|" + "---|" * (1 + len(names))]
    for phase in ("eager", "auto", "each"):
        for key, run in _runs(results, phase).items():
            parts = run.get("breakdown_ms")
            if parts:
                lines.append(f"| {phase} {key} | " + " | ".join(f"{parts.get(n, 0):.1f}" for n in names) + " |")
    return lines


def drift_lines(results: dict) -> list[str]:
    lines = []
    for key, run in _runs(results, "drift").items():
        drift = run.get("vs_fp32_8bit")
        if drift:
            means = drift["mean_per_frame"]
            lines.append(f"- {key} vs strict fp32 over {len(means)} frames: max {max(drift['max_per_frame'])}, "
                         f"mean {statistics.mean(means):.3f} (frame 1: {means[0]:.3f}, last: {means[-1]:.3f})")
        elif "epe_mean_px" in run:
            lines.append(f"- RAFT {key}: end-point error vs fp32 RAFT mean {run['epe_mean_px']} px, max "
                         f"{run['epe_max_px']} px (flows average {run['flow_mean_magnitude_px']} px)")
    return lines


def report(results: dict) -> str:
    info = results.get("machine", {})
    out = [f"Measured {results.get('date', '?')} on {info.get('device', '?')} ({info.get('torch', '?')}, CUDA "
           f"{info.get('cuda', '-')}), stand-in {'tiny (smoke)' if results.get('smoke') else 'full size'}, "
           f"{results.get('frames')} steady frames per run, wall {results.get('wall_s', '?')} s of a "
           f"{results.get('budget_s')} s budget.", "", *speed_table(results), "",
           "Per component, ms per frame (median; CUDA events; `other_and_idle` = DDIM steps, warps and the GPU's "
           "idle gaps):", "", *breakdown_table(results), ""]
    out += drift_lines(results)
    for label, c in _runs(results, "copies").items():
        out.append(f"- Copies per frame at {label}: upload {c['upload_plain_ms']} ms plain vs "
                   f"{c['upload_pinned_uint8_ms']} ms pinned uint8; download {c['download_plain_ms']} ms plain vs "
                   f"{c['download_device_uint8_ms']} ms device uint8.")
    job = _runs(results, "job").get("job", {})
    if "job_s" in job:
        out.append(f"- Whole job ({job['size']}, {job['frames']} frames, `{job['optimisations']}`): {job['job_s']} s "
                   f"against {job['model_s']} s of model time ({job['overhead_pct']:+.1f} %), {job['fps']} fps.")
    for key, configs in _runs(results, "side-by-side").items():
        if "skipped" not in configs:
            out.append(f"- Side by side, {key} (frame by frame in turn): " + ", ".join(
                f"`{name}` {c['s_per_frame']} s/frame ({c['speedup_vs_none']}x)" for name, c in configs.items()))
    gains = results.get("recommended", {})
    if gains:
        out.append("- Each switch alone vs the plain path (speed-up, worst size): "
                   + ", ".join(f"`{k}` {v:.2f}x" for k, v in sorted(gains.items(), key=lambda kv: -kv[1])))
    stopped = results.get("stopped")
    if stopped:
        out.append(f"- Stopped early: {stopped}")
    return "\n".join(out)


def update_readme(text: str, readme: Path = README) -> bool:
    """Replace the README's GPU block (between the markers) with ``text``; False if it has no block."""
    content = readme.read_text(encoding="utf-8")
    if BEGIN not in content or END not in content:
        return False
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")
    return True


# ---------------------------------------------------------------------------------------------
# Main.


def machine(device: torch.device) -> dict[str, Any]:
    from vsr.model.devices import cpu_flags

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                            "cpu_flags": sorted(f for f in cpu_flags()
                                                if f.startswith(("avx512", "amx")) or f == "avx2")}
    if device.type == "cuda":
        info.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every phase on the CPU, tiny configs, seconds")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--model", choices=("full", "tiny"), help="stand-in size (default: full; tiny with --smoke)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run, hard stop 20 s later "
                        "(default 320; 1200 with --smoke, which is meant to run everything)")
    parser.add_argument("--phases", help=f"comma list, in order, from {','.join(SMOKE_PHASES)} (default: all but "
                        "side-by-side on CUDA; all with --smoke; copies,side-by-side with --device cpu)")
    parser.add_argument("--sizes", help="comma list of LR sizes WxH (default 320x180,480x270)")
    parser.add_argument("--frames", type=int, help="steady frames per run (default 20; 2 with --smoke)")
    parser.add_argument("--drift-frames", type=int, help="frames of the drift runs (default 60)")
    parser.add_argument("--job-frames", type=int, help="frames of the job run (default 60)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list (default bf16,fp16,fp32)")
    parser.add_argument("--out", type=Path, help="also write gpu.json and README-gpu.md here")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite README.md's GPU block")
    parser.add_argument("--report", type=Path, help="only print the report of a results file (and update the README)")
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> dict[str, tuple[int, int]]:
    if args.sizes:
        pairs = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
        return {f"{4 * w}x{4 * h}": (h, w) for w, h in pairs}
    return dict(SMOKE_SIZES if args.smoke else SIZES)


def _writer(results: dict, paths: list[Path]) -> Callable[[], None]:
    def save() -> None:
        text = json.dumps(results, indent=1, default=str)
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    return save


def _on_alarm(signum: int, frame: Any) -> None:
    raise OutOfTime("the hard time limit fired")


def setup(args: argparse.Namespace) -> tuple[torch.device, bool]:
    from vsr.model import acceleration, aot

    device = torch.device("cpu" if args.smoke else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA device here; use --smoke or --device cpu")
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    tiny = args.model == "tiny" or (args.smoke and args.model != "full")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its note on every fp32 -> half cast of the copies
    if args.smoke:
        acceleration.COMPILE_BACKEND = "eager"  # dynamo's tracing without inductor's minutes of C++ builds
        aot.PACKAGE = False  # torch.export only
    return device, tiny


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        text = report(results)
        print(text)
        if not args.no_readme and not results.get("smoke"):
            update_readme(text)
        return 0
    started = time.monotonic()
    args.budget = args.budget or (1200.0 if args.smoke else 320.0)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(args.budget + 20))
    device, tiny = setup(args)
    sizes = _sizes(args)
    results: dict[str, Any] = {"schema": 1, "smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M"),
                               "budget_s": args.budget, "machine": machine(device), "phases": {},
                               "sizes": {k: {"lr": f"{w}x{h}", "hr": f"{4 * w}x{4 * h}"}
                                         for k, (h, w) in sizes.items()}}
    paths = [args.out / "gpu.json"] if args.out else []
    if not args.smoke:
        paths.append(RESULTS if device.type == "cuda" else RESULTS.with_name("gpu-cpu.json"))
    save = _writer(results, paths)
    frames = args.frames or (1 if args.smoke else 20)
    results["frames"] = frames
    with tempfile.TemporaryDirectory(prefix="bench-gpu-cache-") as cache:
        try:
            tick = time.perf_counter()
            master = build_master(device, tiny)
            sync(device)
            results["build_s"] = round(time.perf_counter() - tick, 2)
            ctx = Context(device, master, sizes, frames, args.drift_frames or (4 if args.smoke else 60),
                          args.job_frames or (6 if args.smoke else 60), started + args.budget, Path(cache),
                          args.smoke, results, save, only=tuple(args.precisions.split(",")))
            default = SMOKE_PHASES if args.smoke else PHASES if device.type == "cuda" else CPU_PHASES
            names = args.phases.split(",") if args.phases else default
            run_phases(ctx, [p.strip() for p in names if p.strip()])
        except OutOfTime:
            results["stopped"] = "the hard time limit fired; later phases did not run"
        finally:
            signal.alarm(0)
    results["recommended"] = recommend(results)
    results["wall_s"] = round(time.monotonic() - started, 1)
    save()
    text = report(results)
    if args.out:
        (args.out / "README-gpu.md").write_text(text + "\n")
    if not args.smoke and not args.no_readme and device.type == "cuda" and update_readme(text):
        logger.info("README.md GPU block rewritten")
    print(text)
    return 0


def run_phases(ctx: Context, names: list[str]) -> None:
    unknown = [n for n in names if n not in PHASE_FUNCTIONS]
    if unknown:
        raise SystemExit(f"bench/gpu.py: unknown phases {unknown}; use {', '.join(SMOKE_PHASES)}")
    for name in names:
        tick = time.perf_counter()
        phase = ctx.phase(name)
        try:
            PHASE_FUNCTIONS[name](ctx)
            phase["status"] = "ok"
        except OutOfTime:
            phase["status"] = "stopped by the hard time limit"
            raise
        except Exception as exc:  # noqa: BLE001 - record and go on with the next phase
            logger.exception("phase %s failed", name)
            phase["status"] = f"error: {type(exc).__name__}: {str(exc)[:600]}"
        finally:
            phase["seconds"] = round(time.perf_counter() - tick, 2)
            ctx.save()


if __name__ == "__main__":
    sys.exit(main())
