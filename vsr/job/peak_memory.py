"""One frame's peak memory, predicted from the networks' sizes (pure: nothing is loaded or run).

    peak = baseline + weights + flow-resident + max(phase peaks),

each phase being the frame-sized buffers alive at that point (exact byte counts: the carried
state, the bicubic frame, the warped previous output, the conditioning, encoder features, the
decoded frame) plus a component's working memory: a measured per-pixel coefficient times the
config's channel count times the pixels it runs on (the whole frame, or one tile) times the
element size. ``COEFFICIENTS`` holds the measured values and says how they were measured
(``bench/memory.py --calibrate`` measures them again); ``flow_bytes`` is RAFT's share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vsr.job.model_sizes import ModelSizes
from vsr.model.tiling import CONDITION_HALO, DECODE_HALO, TileGrid, Tiling
from vsr.options import SCALE


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
