"""The memory model: a job's peak memory on its device, predicted before any work, and the tiling it needs.

Pure and cheap: nothing is loaded or run. The networks are described by their config.json files
and the tensor shapes in their safetensors headers (``model_sizes``), or by the published model's
figures when the files are not on this machine yet. The prediction is

    peak = baseline + weights + flow-resident + max(phase peaks),

each phase being the frame-sized buffers alive at that point (exact byte counts: the carried
state, the bicubic frame, the warped previous output, the conditioning, encoder features, the
decoded frame) plus a component's working memory: a measured per-pixel coefficient times the
config's channel count times the pixels it runs on (the whole frame, or one tile) times the
element size. ``COEFFICIENTS`` holds the measured values and says how they were measured
(``bench/memory.py --calibrate`` measures them again).

``plan_memory`` turns that into a decision: whole frames when they fit the budget, else the
largest tiles that do (``vsr.model.tiling``), else ``NotEnoughMemory`` naming the largest input of
this shape that fits. The budget is ``--max-memory`` / STREAM_DIFFVSR_MAX_MEMORY when set, else
the free memory of the GPU (plus what this process already holds there), or on a CPU
``CPU_SHARE`` of the RAM this process could have (MemAvailable, a cgroup limit, this process's RSS).
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from vsr.job.errors import NotEnoughMemory, OutOfMemory
from vsr.model.tiling import CONDITION_HALO, DECODE_HALO, TileGrid, Tiling
from vsr.options import MIN_TILE, UpscaleOptions

logger = logging.getLogger(__name__)

GB = 1e9
SCALE = 4
CPU_SHARE = 0.7
"""On a CPU the budget is this share of the memory this process could have (the rest: the system,
page cache, other programs)."""
TILE_CHOICES = (256, 192, 160, 128, 96, 80, 64, 48, 40, 32)
"""Latent tile sides ``auto`` tries, largest (fewest tiles, least overlap work) first."""
ELEMENT = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class Coefficients:
    """Working memory of each component, measured (see ``COEFFICIENTS``).

    Per-pixel coefficients are in feature maps: bytes = coefficient x channels x pixels x element
    size, with the channels of ``ModelSizes`` (``unet``: skip channels per latent px; ``condition``:
    first conditioning width per HR px; ``encoder`` / ``decoder``: first / last VAE width per HR px).
    ``*_fixed`` are per-call bytes that do not grow with the frame, as a share of the component's
    weight bytes (weight reorders, scratch buffers). ``load`` is the peak while loading, as a
    multiple of the weight bytes. ``baseline_*``: the process with its libraries, before weights.
    """

    unet: float
    unet_fixed: float
    condition: float
    encoder: float
    decoder: float
    vae_fixed: int
    load: float
    baseline_cpu: int
    baseline_cuda: int


COEFFICIENTS = Coefficients(
    # Measured with `bench/memory.py --only calibrate` on the full-size stand-in (bench/standin.py), bf16
    # (what auto picks on this CPU), 2 threads, AMD EPYC, at LR 80x48 and 160x96: each component's call
    # once untimed, then peak RSS during a second call (VmHWM reset through /proc/self/clear_refs) minus
    # RSS before it, glibc's mmap threshold at 64 KiB so freed tensors leave RSS at once; the per-pixel
    # slope between the two sizes in the units above, the fixed part from the intercept. Returned
    # outputs (encoder features, the decoded image) are counted separately, not in the coefficient.
    unet=3.89,  # UNet + ControlNet residuals, per skip channel (x 11.5 channels/latent px published)
    unet_fixed=0.014,
    condition=2.0,
    encoder=2.07,
    decoder=3.95,
    vae_fixed=16 * 2**20,
    load=0.76,  # loading converts each fp32 file to the model dtype: 0.76 x the largest fp32 network extra
    baseline_cpu=1010 * 2**20,  # torch, diffusers, transformers, torchvision imported (RSS after load - weights)
    baseline_cuda=600 * 2**20,  # CUDA context, cuDNN/cuBLAS workspaces: an estimate, not measured here
)


# ---------------------------------------------------------------------------------------------
# What the networks look like, from their files.


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts and the channel counts the memory model scales with."""

    source: str
    unet_params: int
    controlnet_params: int
    vae_params: int
    text_params: int
    raft_params: int
    unet_widths: tuple[int, ...]
    unet_layers: int
    condition_width: int
    vae_encoder: tuple[tuple[int, int], ...]  # (width, blocks) per stage
    vae_decoder_width: int

    @property
    def skip_channels(self) -> float:
        """Channels per latent px of the UNet's skip features (= the ControlNet's residuals)."""
        return sum((self.unet_layers + 1) * c / 4**level for level, c in enumerate(self.unet_widths))

    @property
    def feature_channels(self) -> float:
        """Channels per HR px of the VAE encoder features the decoder takes (stage k at 1/2^k)."""
        return sum(width * blocks / 4**stage for stage, (width, blocks) in enumerate(self.vae_encoder))


PUBLISHED = ModelSizes(
    source="the published model's sizes (its files are not on this machine yet)",
    unet_params=472_374_020, controlnet_params=207_699_264, vae_params=2_052_501,
    text_params=340_000_000, raft_params=5_257_536,
    unet_widths=(256, 512, 512, 1024), unet_layers=2, condition_width=64,
    vae_encoder=((64, 1), (64, 3), (64, 3)), vae_decoder_width=64,
)
"""BENCH-MODEL.md: the SD x4 upscaler layout (UNet, ControlNet from it), the published VAE config,
OpenCLIP ViT-H's text tower (about 340 M parameters), RAFT large."""


def model_sizes(model_id: str, flow_weights: Path | None = None) -> ModelSizes:
    """The sizes of ``model_id`` (a local folder, or a hub id already in the Hugging Face cache),
    read from config.json files and safetensors headers; ``PUBLISHED`` for what is not found."""
    def find(name: str) -> Path | None:
        return _model_file(model_id, name)

    unet, controlnet, vae = (_read_json(find(f"{sub}/config.json")) for sub in ("unet", "controlnet", "vae"))
    if unet is None or controlnet is None or vae is None:
        return PUBLISHED
    encoder = tuple(zip(vae.get("encoder_block_out_channels", (64, 64, 64)), vae.get("num_encoder_blocks", (1, 3, 3))))
    counts = {sub: _param_count(find, sub) for sub in ("unet", "controlnet", "vae", "text_encoder")}
    raft = _header_params(flow_weights) if flow_weights is not None else None
    return ModelSizes(
        source=f"configs of {model_id}",
        unet_params=counts["unet"] or PUBLISHED.unet_params,
        controlnet_params=counts["controlnet"] or PUBLISHED.controlnet_params,
        vae_params=counts["vae"] or PUBLISHED.vae_params,
        text_params=counts["text_encoder"] or PUBLISHED.text_params,
        raft_params=raft or PUBLISHED.raft_params,
        unet_widths=tuple(unet.get("block_out_channels", PUBLISHED.unet_widths)),
        unet_layers=int(unet.get("layers_per_block", 2)),
        condition_width=int(tuple(controlnet.get("conditioning_embedding_out_channels", (64,)))[0]),
        vae_encoder=tuple((int(w), int(n)) for w, n in encoder),
        vae_decoder_width=int(tuple(vae.get("decoder_block_out_channels", (64,)))[-1]),
    )


def _model_file(model_id: str, name: str) -> Path | None:
    local = Path(model_id).expanduser()
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model_id, name)
    return Path(found) if isinstance(found, str) else None


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _param_count(find: Callable[[str], Path | None], sub: str) -> int | None:
    """Elements of a component's weights, from the safetensors header(s); None when not readable."""
    for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        path = find(f"{sub}/{name}")
        if path is not None:
            return _header_params(path)
    for name in ("diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json"):
        index = _read_json(find(f"{sub}/{name}"))
        if index and isinstance(index.get("weight_map"), dict):
            shards = [find(f"{sub}/{shard}") for shard in sorted(set(index["weight_map"].values()))]
            counts = [_header_params(p) if p is not None else None for p in shards]
            return sum(counts) if all(c is not None for c in counts) else None  # type: ignore[misc]
    return None


def _header_params(path: Path) -> int | None:
    """Elements of every floating-point tensor in a safetensors file, read from its header only."""
    if path.suffix != ".safetensors":
        try:
            return path.stat().st_size // 4  # a .pth of float32 weights: close enough
        except OSError:
            return None
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return sum(math.prod(t["shape"]) for k, t in header.items()
               if k != "__metadata__" and str(t.get("dtype", "")).startswith(("F", "BF")))


# ---------------------------------------------------------------------------------------------
# Optical flow: the correlation's bytes come from the flow modules (vsr.model.flow.all_pairs_bytes,
# vsr.model.raft_lookup.on_demand_bytes); what RAFT's encoders take around them is measured here.

FLOW_ALL_PAIRS = "all-pairs"
FLOW_ON_DEMAND = "on-demand"
RAFT_LEVELS = 4
RAFT_FEATURES = 256  # channels of RAFT large's feature and context maps, at 1/8 of the input
FLOW_BYTES_PER_PIXEL = 665.0
"""torchvision's RAFT large (the all-pairs path): its feature encoder on both frames at once (batch 2,
64 channels at 1/2 scale), its peak per HR pixel, the largest of the flow call apart from the
all-pairs volume. Measured by bench/memory.py's flow cases (1280x720: 0.62 GB, 2560x1440: 2.45 GB;
CPU, fp32, 2 threads): the slope between them."""
ENCODER_BYTES_PER_PIXEL = 230.0
"""One RAFT encoder pass (feature or context) on one frame as ``vsr.model.raft_encoder`` runs it
(striped convolutions, in-place norms): its peak per HR pixel, about three and a half 64-channel maps
at 1/2 scale. The on-demand path runs the three passes one after another, before the correlation is
built (vsr.model.raft_lookup), so this plus two finished 1/8-scale maps is its peak. Measured on the
CPU (fp32, 2 threads): 781 MiB for one pass at 2560x1440 (torchvision's module: 1,125 MiB); the whole
on-demand call 1,159 MiB at 2560x1440 and 3,554 MiB at 5120x2880 (bench/flow.py's pair case)."""
FLOW_FIXED = 16 * 2**20
ON_DEMAND_FIXED = 128 * 2**20
"""What the on-demand call holds beside the encoders at every size (the update block's working set,
the final upsampling, allocator slack): the residual of bench/memory.py's three on-demand pairs
(0.39 GB at 1280x720, 1.17 GB at 2560x1440, 3.66 GB at 5120x2880) after ``ENCODER_BYTES_PER_PIXEL``."""


def flow_bytes(hr_width: int, hr_height: int, method: str = FLOW_ALL_PAIRS) -> tuple[int, int]:
    """(peak bytes during one RAFT call, bytes that stay allocated after it) at HR ``hr_width`` x ``hr_height``.

    RAFT encodes both frames first (``FLOW_BYTES_PER_PIXEL``), then builds the correlation and
    encodes the context (half that) next to it. All pairs (torchvision): the matrix product and its
    scaled copy (``all_pairs_bytes``: 2 V for the V = 4 n^2 bytes of the volume, n = (H/8)(W/8)) next
    to the feature maps; its 4-level pyramid (V (1 + 1/4 + 1/16 + 1/64)) stays on the module
    (``corr_block.corr_pyramid``) until the next call replaces it, so it is allocated between frames.
    On demand (``vsr.model.raft_lookup``): the three encoder passes one at a time, the last next to
    two finished maps (``ENCODER_BYTES_PER_PIXEL``), then ``on_demand_bytes`` next to the context
    maps, whichever is larger (linear in the area); nothing kept after the call.
    """
    from vsr.model.flow import all_pairs_bytes
    from vsr.model.raft_lookup import on_demand_bytes

    n = (hr_height // 8) * (hr_width // 8)
    encoders = FLOW_BYTES_PER_PIXEL * hr_width * hr_height + FLOW_FIXED
    if method == FLOW_ALL_PAIRS:
        volume = 4 * n * n
        pyramid = volume * sum(4.0**-level for level in range(RAFT_LEVELS))
        return int(max(encoders, all_pairs_bytes(hr_height, hr_width) + 3 * 4 * RAFT_FEATURES * n)), int(pyramid)
    if method == FLOW_ON_DEMAND:
        maps = 4 * RAFT_FEATURES * n  # one 1/8-scale map of 256 float32 channels
        encoder = ENCODER_BYTES_PER_PIXEL * hr_width * hr_height + 2 * maps
        return int(ON_DEMAND_FIXED + max(encoder, on_demand_bytes(hr_height, hr_width) + maps)), 0
    raise ValueError(f"unknown flow method {method!r}; use {FLOW_ALL_PAIRS!r} or {FLOW_ON_DEMAND!r}.")


def flow_method(engine: dict[str, Any], hr_width: int, hr_height: int) -> str:
    """The correlation the engine's RAFT uses at this output size: the one its description names
    (``flow_correlation``), else the flow module's own automatic choice (``choose_correlation``)."""
    named = engine.get("flow_correlation")
    if named in (FLOW_ALL_PAIRS, FLOW_ON_DEMAND):
        return str(named)
    from vsr.model.flow import choose_correlation

    return choose_correlation(hr_height, hr_width)


def flow_size(hr_width: int, hr_height: int, scale: float = 1.0) -> tuple[int, int]:
    """(width, height) RAFT runs at: the output size times ``flow_scale``, padded as compute_flow pads."""
    width, height = max(1, round(hr_width * scale)), max(1, round(hr_height * scale))
    return max(128, -(-width // 8) * 8), max(128, -(-height // 8) * 8)


# ---------------------------------------------------------------------------------------------
# One frame's peak.


@dataclass(frozen=True)
class FrameMemory:
    """Predicted bytes of one steady-state frame (a frame after the first), by part.

    ``phases``: the frame buffers alive plus the working memory at each step of a frame (flow,
    condition, denoise, encode, decode, output). ``load``: the peak while the model loads.
    """

    baseline: int
    weights: int
    resident: int
    phases: dict[str, int]
    load: int

    @property
    def frame_peak(self) -> int:
        return self.baseline + self.weights + self.resident + max(self.phases.values())

    @property
    def peak(self) -> int:
        return max(self.load, self.frame_peak)

    @property
    def largest_phase(self) -> str:
        return max(self.phases, key=self.phases.__getitem__)


def predict_frame(sizes: ModelSizes, width: int, height: int, *, element: int = 4, tiling: Tiling = Tiling(),
                  device: str = "cpu", flow: str = FLOW_ALL_PAIRS, flow_scale: float = 1.0,
                  coefficients: Coefficients = COEFFICIENTS) -> FrameMemory:
    """Peak memory of the engine on ``width`` x ``height`` LR frames (padded to multiples of 4)
    with networks of ``element`` bytes per value, cut as ``tiling`` says; RAFT with correlation
    ``flow`` on the output frames scaled by ``flow_scale``."""
    k = coefficients
    h, w = -(-height // SCALE) * SCALE, -(-width // SCALE) * SCALE
    px, hr = h * w, h * w * SCALE * SCALE
    net_bytes = (sizes.unet_params + sizes.controlnet_params) * element
    weights = net_bytes + sizes.vae_params * element + sizes.raft_params * 4
    base = 24 * hr + 12 * hr + 12 * px  # carried state (2 HR fp32 images) + this frame's bicubic + LR
    warped = 3 * hr * element
    cond = sizes.unet_widths[0] * px * element
    flow_peak, resident = flow_bytes(*flow_size(w * SCALE, h * SCALE, flow_scale), flow)
    dn, dc = tiling.denoise_grid(h, w), tiling.decode_grid(h, w)
    unet_px = _tile_area(dn, tiling.denoise, px)
    cond_px = px if dn is None else min(px, (tiling.denoise + 2 * CONDITION_HALO) ** 2)
    phases = {
        "flow": base + flow_peak + 8 * hr,
        "condition": base + warped + cond + int(k.condition * sizes.condition_width * cond_px * 16 * element),
        "denoise": base + warped + cond + 64 * px
        + int(k.unet_fixed * net_bytes + k.unet * sizes.skip_channels * unet_px * element),
        **_vae_phases(sizes, h, w, element, dc, tiling.decode, base + warped, k),
        "output": 24 * hr + 39 * hr,  # the new state, post-processing's float copies and the uint8 frame
    }
    if device.startswith("cuda"):  # loading happens in RAM; the GPU only receives the finished networks
        baseline, load = k.baseline_cuda, k.baseline_cuda + weights
    else:
        largest = max(sizes.unet_params, sizes.controlnet_params, sizes.text_params) * 4
        baseline = k.baseline_cpu
        load = baseline + weights + sizes.text_params * 4 + int(k.load * largest)
    return FrameMemory(baseline, weights, resident, phases, load)


def _tile_area(grid: TileGrid | None, size: int | None, whole: int) -> int:
    return whole if grid is None or size is None else min(whole, size * size)


def _vae_phases(sizes: ModelSizes, h: int, w: int, element: int, grid: TileGrid | None, tile: int | None, alive: int,
                k: Coefficients) -> dict[str, int]:
    """Encoder-features and decoder peaks (bytes), whole frame or per decode tile."""
    from vsr.model.tiling import encoder_reach

    reach = encoder_reach([blocks for _, blocks in sizes.vae_encoder])
    if grid is None or tile is None:
        region_h, region_w, crop_h, crop_w, out = h, w, h, w, 0
    else:
        region_h, region_w = min(h, tile + 2 * DECODE_HALO), min(w, tile + 2 * DECODE_HALO)
        crop_h, crop_w = min(h, region_h + 2 * reach), min(w, region_w + 2 * reach)
        out = 12 * h * w * 16  # the blended HR result, float32
    region, crop = region_h * region_w * 16, crop_h * crop_w * 16  # HR px
    features = int(sizes.feature_channels * crop * element)
    encoder_width = sizes.vae_encoder[0][0]
    return {
        "encode": alive + out + k.vae_fixed + features + int(k.encoder * encoder_width * crop * element),
        "decode": alive + out + k.vae_fixed + features
        + int(k.decoder * sizes.vae_decoder_width * region * element) + 3 * region * (element + 4),
    }


# ---------------------------------------------------------------------------------------------
# The budget.

MEDIA_BYTES_PER_PIXEL = 400
"""RAM of decoding and encoding per output pixel (the encoder's look-ahead and reference frames,
the bounded frame queues), from bench/memory.py's end-to-end CLI run; counted on CPU jobs only."""


@dataclass(frozen=True)
class Budget:
    """The memory a job may use on its device: ``bytes`` (None: unknown, not checked) and where it came from."""

    bytes: int | None
    text: str


def memory_budget(device: str, max_memory: int | None = None) -> Budget:
    """The budget on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``ZeroGPU``): ``max_memory``
    bytes when given, else the free GPU memory plus what this process already holds there, or on a
    CPU (and MPS, whose memory is the system's) ``CPU_SHARE`` of the RAM this process could have."""
    if max_memory is not None:
        return Budget(int(max_memory), f"{_gb(max_memory)} allowed on {device} (--max-memory / "
                                       "STREAM_DIFFVSR_MAX_MEMORY)")
    if device.startswith("cuda"):
        return _cuda_budget(device)
    if device.lower() == "zerogpu":
        return Budget(None, "ZeroGPU: the GPU's memory is known only inside the GPU call, so it is not checked")
    available = cpu_available_bytes()
    if available is None:
        return Budget(None, f"{device}: this system does not report its free memory, so it is not checked")
    share = int(available * CPU_SHARE)
    return Budget(share, f"{_gb(share)} usable on {device} ({CPU_SHARE:.0%} of {_gb(available)} available RAM)")


def _cuda_budget(device: str) -> Budget:
    import torch

    if not torch.cuda.is_available():
        return Budget(None, f"{device} is not available here, so its memory is not checked")
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    held = torch.cuda.memory_reserved(index)  # this process's own cache (e.g. the loaded model): reusable
    return Budget(int(free + held), f"{_gb(free + held)} free on cuda:{index} ({_gb(total)} in all)")


def cpu_available_bytes() -> int | None:
    """RAM this process could use: MemAvailable (or the cgroup's remaining limit, when lower) plus
    this process's own resident memory. None off Linux."""
    meminfo = _read_kib("/proc/meminfo", "MemAvailable:")
    if meminfo is None:
        return None
    available = meminfo
    limit = _cgroup_free()
    if limit is not None:
        available = min(available, limit)
    return available + _own_rss()


def _read_kib(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_free() -> int | None:
    """cgroup v2: limit - usage + page cache (reclaimable); None without a limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        current = int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    stat = {}
    try:
        stat = dict(line.split() for line in (root / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        pass
    return max(0, int(limit) - current + int(stat.get("file", 0)))


def _own_rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _gb(value: float) -> str:
    return f"{value / GB:.1f} GB"


# ---------------------------------------------------------------------------------------------
# The decision a plan records.


@dataclass(frozen=True)
class MemoryPlan:
    """A job's predicted peak memory on its device, its budget, and the tiling chosen to fit it."""

    device: str
    precision: str
    flow: str
    peak_bytes: int
    untiled_peak_bytes: int
    budget_bytes: int | None
    budget_text: str
    tiling: Tiling
    largest_phase: str
    sizes_source: str
    notes: tuple[str, ...] = field(default=())

    def to_text(self) -> str:
        """'peak memory about 6.1 GB of 16.8 GB free on cuda:0 (24.0 GB in all); whole frames'."""
        where = f"of {self.budget_text}" if self.budget_bytes is not None else f"({self.budget_text})"
        cut = "whole frames" if not self.tiling.enabled else f"tiled: {self.tiling.describe()}"
        untiled = (f" (whole frames would need {_gb(self.untiled_peak_bytes)})" if self.tiling.enabled else "")
        return f"peak memory about {_gb(self.peak_bytes)} {where}; {cut}{untiled}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tiling"] = asdict(self.tiling)
        data["notes"] = list(self.notes)
        return data


def element_size(precision: str, device: str) -> int:
    """Bytes per value of the networks for a precision name ('auto' resolves as vsr.model.devices does)."""
    if precision in ELEMENT:
        return ELEMENT[precision]
    return 4 if device == "cpu" else 2  # 'auto' or unknown: fp16 on a GPU, fp32 (or bf16: smaller) on a CPU


def plan_memory(sizes: ModelSizes, width: int, height: int, *, device: str, precision: str, tile: int | str,
                budget: Budget, flow: str = FLOW_ALL_PAIRS, flow_scale: float = 1.0,
                media: bool | None = None) -> MemoryPlan:
    """Predict the job's peak and choose its tiling; ``NotEnoughMemory`` when nothing fits ``budget``.

    ``tile``: ``"auto"`` (whole frames when they fit, else the largest tiles that do), ``"off"`` or a
    latent tile side. ``media`` (default: on a CPU or MPS) adds the RAM of decoding and encoding.
    """
    element = element_size(precision, device)
    extra = MEDIA_BYTES_PER_PIXEL * width * height * 16 if (device in ("cpu", "mps") if media is None else media) else 0

    def peak(tiling: Tiling, w: int = width, h: int = height) -> FrameMemory:
        return predict_frame(sizes, w, h, element=element, tiling=tiling, device=device, flow=flow,
                             flow_scale=flow_scale)

    untiled = peak(Tiling())
    limit = None if budget.bytes is None else budget.bytes - extra
    if tile == "off" or (tile == "auto" and (limit is None or untiled.peak <= limit)):
        tiling = Tiling()
    elif tile == "auto":
        tiling = _fitting_tiling(peak, width, height, limit)
    else:
        tiling = Tiling(denoise=int(tile), decode=int(tile))
    chosen = peak(tiling)
    if limit is not None and chosen.peak > limit:
        raise _not_enough(peak, width, height, chosen, budget, extra, tile)
    return MemoryPlan(device, precision, flow, chosen.peak + extra, untiled.peak + extra, budget.bytes, budget.text,
                      tiling, chosen.largest_phase if chosen.frame_peak >= chosen.load else "loading", sizes.source)


def _fitting_tiling(peak: Callable[..., FrameMemory], width: int, height: int, limit: int) -> Tiling:
    """The largest denoise and decode tiles (whole frames first) whose phases fit ``limit``; the
    smallest tiles when none does (the caller then refuses)."""
    side = max(-(-width // SCALE), -(-height // SCALE)) * SCALE
    choices: list[int | None] = [None, *(t for t in TILE_CHOICES if t < side)]

    def first(phases: tuple[str, ...], make) -> int | None:
        for size in choices:
            memory = peak(make(size))
            if memory.frame_peak - max(memory.phases.values()) + max(memory.phases[p] for p in phases) <= limit:
                return size
        return TILE_CHOICES[-1]

    denoise = first(("condition", "denoise"), lambda s: Tiling(denoise=s, decode=TILE_CHOICES[-1]))
    decode = first(("encode", "decode"), lambda s: Tiling(denoise=TILE_CHOICES[-1], decode=s))
    return Tiling(denoise=denoise, decode=decode)


def _not_enough(peak: Callable[..., FrameMemory], width: int, height: int, chosen: FrameMemory, budget: Budget,
                extra: int, tile: int | str) -> NotEnoughMemory:
    """The refusal, naming the largest input of this aspect ratio that fits with the smallest tiles.
    ``peak(tiling, width, height)`` predicts a frame of another size."""
    smallest = Tiling(denoise=MIN_TILE, decode=MIN_TILE)

    def size(scale: float) -> tuple[int, int]:
        return max(SCALE, int(width * scale) // SCALE * SCALE), max(SCALE, int(height * scale) // SCALE * SCALE)

    def fits(scale: float) -> bool:
        w, h = size(scale)
        media = MEDIA_BYTES_PER_PIXEL * w * h * 16 if extra else 0
        return budget.bytes is not None and peak(smallest, w, h).peak + media <= budget.bytes

    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    largest = size(low) if low > 0 and fits(low) else None
    where = f"the {chosen.largest_phase} step" if chosen.frame_peak >= chosen.load else "loading the model"
    reach = (f"The largest input of this shape that fits is about {largest[0]}x{largest[1]}." if largest else
             "Not even a small input fits: the model itself needs more than that.")
    tiled = "" if tile == "auto" else f" With --tile {tile} it does not fit; --tile auto picks tiles that do, if any."
    fix = ("Fix: use a smaller input (downscale the video first; --height resizes only after the model), "
           "--precision bf16 or fp16 where available, --flow-scale 0.5 when the flow step is the largest, or "
           "raise --max-memory / STREAM_DIFFVSR_MAX_MEMORY if more memory is free.")
    return NotEnoughMemory(
        f"This job needs about {_gb(chosen.peak + extra)} of memory (most at {where}), more than "
        f"{budget.text}.{tiled} {reach} {fix}",
        needed_bytes=chosen.peak + extra, budget_bytes=budget.bytes or 0, largest=largest,
    )


def job_memory(options: UpscaleOptions, engine: dict[str, Any], width: int, height: int) -> MemoryPlan:
    """The ``MemoryPlan`` of a job on ``width`` x ``height`` input frames with the engine described by
    ``engine`` (``FrameProcessor.describe()``); raises ``NotEnoughMemory`` when it cannot fit."""
    device = str(engine.get("device") or options.device)
    precision = str(engine.get("precision") or options.precision)
    budget = memory_budget(device, options.max_memory)
    if engine.get("engine") == "bicubic":
        return _bicubic_memory(width, height, device, precision, budget)
    sizes = model_sizes(options.model_id, options.flow_weights)
    scale = float(engine.get("flow_scale") or options.flow_scale)
    flow = flow_method(engine, *flow_size(width * SCALE, height * SCALE, scale))
    return plan_memory(sizes, width, height, device=device, precision=precision, tile=options.tile,
                       budget=budget, flow=flow, flow_scale=scale)


def _bicubic_memory(width: int, height: int, device: str, precision: str, budget: Budget) -> MemoryPlan:
    """Bicubic needs the libraries, a few HR frames and the media pipeline; it is never tiled."""
    hr = width * height * 16
    peak = COEFFICIENTS.baseline_cpu + 40 * hr + MEDIA_BYTES_PER_PIXEL * hr
    plan = MemoryPlan(device, precision, "none", peak, peak, budget.bytes, budget.text, Tiling(), "output",
                      "bicubic (no model)")
    if budget.bytes is not None and peak > budget.bytes:
        raise NotEnoughMemory(
            f"Even bicubic upscaling of {width}x{height} needs about {_gb(peak)}, more than {budget.text}. Fix: use a "
            "smaller input, or raise --max-memory / STREAM_DIFFVSR_MAX_MEMORY if more memory is free.",
            needed_bytes=peak, budget_bytes=budget.bytes, largest=None)
    return plan


# ---------------------------------------------------------------------------------------------
# Out of memory during a plan or a job: a job error that names the fix, not a crash.

_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA), MemoryError, and the RuntimeErrors torch raises when the
    CPU or MPS allocator fails ("DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory")."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXTS)


def out_of_memory(exc: BaseException, *, where: str, device: str, frame: int | None = None,
                  plan: MemoryPlan | None = None, left: str = "Nothing was written.") -> OutOfMemory | None:
    """The ``OutOfMemory`` job error for ``exc`` when it is an out-of-memory error, else None.

    ``where`` says what ran out ("frame 12 (0.480 s) of clip.mp4", "loading the model"); ``plan`` is
    the job's memory plan, whose prediction and tiling the message quotes; ``left`` what the caller
    leaves behind.
    """
    if not is_out_of_memory(exc):
        return None
    _release_cached(device)
    needed = plan.peak_bytes if plan is not None else None
    known = (f" The plan predicted about {_gb(needed)} of {plan.budget_text}"
             f" ({'tiled: ' + plan.tiling.describe() if plan.tiling.enabled else 'whole frames'})."
             if plan is not None and needed is not None else "")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return OutOfMemory(
        f"Out of memory on {device} while {where} ({type(exc).__name__}: {first}).{known} This is a memory limit, "
        "not a bug. Fix: set a smaller --max-memory / STREAM_DIFFVSR_MAX_MEMORY (the plan then cuts frames into "
        "tiles) or a smaller --tile (e.g. 64 or 32), use --precision bf16 or fp16 where available, close other "
        f"programs using that memory, or use a smaller input. {left}",
        frame=frame, device=device, needed_bytes=needed,
    )


def device_label(name: str) -> str:
    """The device an option names, resolved (``auto`` -> ``cpu`` / ``cuda`` / ``mps``) when it can be."""
    from vsr.model.devices import resolve_device
    from vsr.model.errors import DeviceError

    try:
        return str(resolve_device(name))
    except DeviceError:
        return name


def _release_cached(device: str) -> None:
    """Give cached GPU memory back after an out-of-memory error, so the process can go on."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
