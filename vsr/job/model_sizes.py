"""What the networks look like, read from their files without loading them: parameter counts from
safetensors headers and the channel counts the memory model scales with (``model_sizes``), or the
published model's figures (``PUBLISHED``) when the files are not on this machine yet."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


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
