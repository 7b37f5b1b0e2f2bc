"""Optical flow for ARTG: RAFT large from torchvision, its call convention, and the backward warp.

MODEL.md sections 5 and 8. Flow for frame i is RAFT(image1 = up[i], image2 = up[i-1]) on the x4
bicubic upscales of the low-res frames ([-1, 1] convention, not clamped, channels-last strides),
12 refinement iterations, last prediction only. The result (1, H, W, 2) in HR pixels says where
pixel (x, y) of frame i is found in frame i-1, so the previous output is backward-warped with it.

Correlation: torchvision's all-pairs volume takes (H/8 * W/8)^2 values (``all_pairs_bytes``), so above
a memory budget, or where it is slower, the same flow is computed with on-demand correlation
(``vsr.model.raft_lookup``, linear memory); ``choose_correlation`` decides. ``scale`` < 1 computes the flow
on downscaled frames and upsamples it (faster, approximate).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import RAFT, Raft_Large_Weights, raft_large

from vsr.model.errors import ConfigMismatchError, CorruptWeightsError, HubUnreachableError, ModelNotFoundError
from vsr.model.network import REACH_TIMEOUT_S, plain_reason, unreachable_reason
from vsr.model.raft_lookup import DEFAULT_BUDGET_BYTES, lookup_raft
from vsr.options import FLOW_SCALES

logger = logging.getLogger(__name__)

RAFT_ITERATIONS = 12
RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps of 16+ at 1/8 scale
CORRELATIONS = ("auto", "all-pairs", "on-demand")

FLOW_MEMORY_BUDGET = 2 * 2**30  # bytes the all-pairs volume may take; above it on-demand correlation is used
# Above this RAFT input area on-demand correlation is also the faster one. Correlation alone, CPU, 2 threads
# (bench/flow.py corr:*), on the machine this was chosen on: on demand took 1.6x all-pairs' time at 1280x720,
# 1.15x at 1920x1080; all-pairs grows with the square of the area, so they met at about 2.2 Mpx. CPUs
# differ: on a later EPYC they met at about 1 Mpx (docs/performance.md, "Optical flow"); GPUs are not measured yet.
ALL_PAIRS_MAX_PIXELS = 1920 * 1080


def default_raft_url() -> str:
    """URL of torchvision's default RAFT large weights (Raft_Large_Weights.DEFAULT)."""
    return Raft_Large_Weights.DEFAULT.url


def _cached_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(url).path).name


def _check_reachable(url: str, timeout: float) -> None:
    """Raise HubUnreachableError within ``timeout`` seconds if the URL's host does not accept a connection."""
    reason = unreachable_reason(url, timeout)
    if reason is not None:
        raise HubUnreachableError(
            f"Cannot download the RAFT optical-flow weights from {url}: {reason}. Fix: pass a local file with "
            f"--flow-weights / STREAM_DIFFVSR_FLOW_WEIGHTS (.pth or .safetensors), or put the file at "
            f"{_cached_path(url)} (torch hub cache) on a machine with internet access.",
            **_facts(url), reason=f"{reason}, and they are not in the download cache",
        )


def _facts(url: str) -> dict:
    """The facts of a failed RAFT download (see ``vsr.model.errors``)."""
    return {"subject": "the RAFT optical-flow weights", "setting": "flow_weights", "remedy": "download",
            "cache": str(_cached_path(url))}


def _download_state_dict(url: str, timeout: float) -> dict[str, torch.Tensor]:
    cached = _cached_path(url)
    if not cached.is_file():
        _check_reachable(url, timeout)
        logger.info("downloading RAFT weights from %s to %s", url, cached)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, check_hash=True)
    except (urllib.error.URLError, OSError) as exc:
        why = plain_reason(exc, urllib.parse.urlparse(url).hostname or url, timeout)
        raise HubUnreachableError(
            f"Downloading the RAFT weights from {url} failed: {why}. Fix: retry, or pass a local file with "
            "--flow-weights / STREAM_DIFFVSR_FLOW_WEIGHTS.",
            **_facts(url), reason=f"downloading them failed: {why}",
        ) from exc
    except RuntimeError as exc:  # hash mismatch or unreadable checkpoint
        raise CorruptWeightsError(
            f"The cached RAFT weights {cached} are damaged ({exc}). Fix: delete that file and run again."
        ) from exc


def _read_local(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelNotFoundError(
            f"Flow weights file {path} does not exist. Fix: give the path of a RAFT large .pth or .safetensors "
            "file, or leave --flow-weights empty to use torchvision's default weights.",
            subject=f"the flow weights file {path}", reason="it does not exist", setting="flow_weights", remedy="path",
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if path.suffix in (".pth", ".pt"):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors / pickle raise several unrelated types for a damaged file
        raise CorruptWeightsError(
            f"Flow weights file {path} cannot be read ({type(exc).__name__}: {exc}). Fix: download it again; "
            "it must be a torchvision RAFT large state_dict."
        ) from exc
    raise ModelNotFoundError(
        f"Flow weights file {path} has suffix {path.suffix!r}; use a .pth, .pt or .safetensors RAFT large state_dict."
    )


def load_raft(
    flow_weights: str | Path | None = None,
    *,
    url: str | None = None,
    timeout: float = REACH_TIMEOUT_S,
) -> RAFT:
    """RAFT large in eval mode with frozen weights, on the CPU in float32.

    ``flow_weights``: a local .pth/.pt/.safetensors state_dict, or None for torchvision's default
    weights (downloaded once into the torch hub cache; ``url`` overrides the address, for tests).
    """
    source = str(flow_weights) if flow_weights is not None else (url or default_raft_url())
    state = _read_local(Path(flow_weights)) if flow_weights is not None else _download_state_dict(source, timeout)
    model = raft_large(weights=None, progress=False)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigMismatchError(
            f"Flow weights {source} do not fit torchvision's RAFT large ({str(exc).splitlines()[0]}). Fix: use "
            "RAFT *large* weights (raft_small is not supported)."
        ) from exc
    model.eval().requires_grad_(False)
    logger.info("RAFT large loaded from %s", source)
    return model


def all_pairs_bytes(height: int, width: int, *, batch: int = 1, itemsize: int = 4) -> int:
    """Peak bytes of torchvision's all-pairs correlation for RAFT inputs of ``height`` x ``width``.

    With n = (height/8) * (width/8) feature pixels the volume holds n^2 values per image, and while it is
    built the matmul result and its copy divided by sqrt(channels) both exist: 2 * n^2 values (the
    pooled levels, n^2/3 more, come after the first copy is freed). 1280x720: 1.66 GB in float32.
    """
    pixels = (height // 8) * (width // 8)
    return 2 * batch * pixels * pixels * itemsize


def choose_correlation(height: int, width: int, budget_bytes: int = FLOW_MEMORY_BUDGET) -> str:
    """``"all-pairs"`` for RAFT inputs of ``height`` x ``width`` when its volume fits ``budget_bytes`` and
    it is the faster one (up to ``ALL_PAIRS_MAX_PIXELS``), else ``"on-demand"`` (same flow, linear memory)."""
    fits = all_pairs_bytes(height, width) <= budget_bytes
    return "all-pairs" if fits and height * width <= ALL_PAIRS_MAX_PIXELS else "on-demand"


def compute_flow(
    raft: RAFT,
    current: torch.Tensor,
    previous: torch.Tensor,
    *,
    correlation: str = "auto",
    memory_budget: int = FLOW_MEMORY_BUDGET,
    scale: float = 1.0,
) -> torch.Tensor:
    """Flow (1, H, W, 2) [x, y] in HR pixels from ``current`` to ``previous`` (both (1, 3, H, W), ~[-1, 1]).

    ``correlation``: ``"auto"`` (``choose_correlation`` with ``memory_budget``), ``"all-pairs"`` or
    ``"on-demand"``. ``scale`` (1, 0.5 or 0.25): RAFT runs on the frames area-downscaled by it, and the
    flow is upsampled bilinearly to H x W and multiplied by the size ratio (1 is the exact flow).
    RAFT needs sides that are multiples of 8 and at least 128: other sizes are edge-padded on the
    bottom/right for the flow and the flow is cropped back (the reference would fail on them).
    """
    if correlation not in CORRELATIONS:
        raise ValueError(f"Unknown correlation {correlation!r}. Use one of: {', '.join(CORRELATIONS)}.")
    if scale not in FLOW_SCALES:
        raise ValueError(f"Flow scale {scale!r} is not supported. Use one of: {', '.join(map(str, FLOW_SCALES))}.")
    height, width = current.shape[-2:]
    if scale == 1.0:
        return _raft_flow(raft, current, previous, correlation, memory_budget).permute(0, 2, 3, 1)
    small = (max(1, round(height * scale)), max(1, round(width * scale)))
    flow = _raft_flow(raft, F.interpolate(current, size=small, mode="area"),
                      F.interpolate(previous, size=small, mode="area"), correlation, memory_budget)
    flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    flow[:, 0] *= width / small[1]  # x and y in output pixels (Python scalars: no host-to-device copy)
    flow[:, 1] *= height / small[0]
    return flow.permute(0, 2, 3, 1)


def _raft_flow(raft: RAFT, current: torch.Tensor, previous: torch.Tensor, correlation: str,
               memory_budget: int) -> torch.Tensor:
    """RAFT's last prediction (1, 2, H, W) for any H, W (padded to a multiple of 8, at least 128)."""
    height, width = current.shape[-2:]
    pad_h = max(RAFT_MIN_SIDE, -(-height // 8) * 8) - height
    pad_w = max(RAFT_MIN_SIDE, -(-width // 8) * 8) - width
    if pad_h or pad_w:
        current = F.pad(current, (0, pad_w, 0, pad_h), mode="replicate")
        previous = F.pad(previous, (0, pad_w, 0, pad_h), mode="replicate")
    if correlation == "auto":
        correlation = choose_correlation(height + pad_h, width + pad_w, memory_budget)
    model = raft if correlation == "all-pairs" else lookup_raft(raft, budget_bytes=min(memory_budget,
                                                                                       DEFAULT_BUDGET_BYTES))
    return model(current, previous, num_flow_updates=RAFT_ITERATIONS)[-1][:, :, :height, :width]


class Warper:
    """Backward warp with the reference's normalisation (MODEL.md 8), pixel grid cached per size.

    Normalises by (W - 1) and (H - 1) but samples with align_corners False, so a zero flow is not the
    identity (the weights were trained with this; reproduced on purpose).
    """

    def __init__(self) -> None:
        self._grid: torch.Tensor | None = None

    def _base_grid(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        grid = self._grid
        if grid is None or grid.shape[1:3] != (height, width) or grid.device != like.device or grid.dtype != like.dtype:
            ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
            grid = torch.stack([xs, ys], dim=-1)[None].to(device=like.device, dtype=like.dtype)
            self._grid = grid
        return grid

    def __call__(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """image (B, C, H, W) any range, flow (B, H, W, 2) -> warped (B, C, H, W); outside samples are 0."""
        _, _, height, width = image.shape
        coords = self._base_grid(height, width, flow) + flow
        gx = 2.0 * coords[..., 0] / max(width - 1, 1) - 1.0
        gy = 2.0 * coords[..., 1] / max(height - 1, 1) - 1.0
        grid = torch.stack([gx, gy], dim=-1).to(image.dtype)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
