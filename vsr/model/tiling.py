"""Tiled denoising and decoding: frames too large for the memory budget, in overlapping latent tiles.

The latent grid is the low-res grid (h, w); the HR image, the warped previous output and the VAE's
stage-0 features are 4x that. A ``Tiling`` is decided once per video (from the frame size and the
memory budget, ``vsr.job.memory``) and stays fixed for the whole video, so every frame is cut the
same way (temporal consistency). Three tiled paths:

- ``condition``: the ControlNet conditioning embedding of the warped HR image, computed per tile on
  the HR crop with a halo wider than the embedding's receptive field, then cropped: the same numbers
  as the whole-frame embedding (a pure convolution stack), in a fraction of the memory.
- ``denoise``: the DDIM loop with the UNet (+ ControlNet residuals) run per overlapping tile at every
  step; the tiles' v-predictions are blended with smooth (sin^2) weights that sum to one, and the
  DDIM step runs on the whole latent. The latent, the LR frame and the conditioning are cut to the
  same tile.
- ``decode``: per decode tile, the VAE encoder features of the warped previous output (computed on a
  crop with a halo of the encoder's receptive field, so they are exact) and the decoder on the tile
  plus a context halo; the halo is thrown away and the tiles are blended over their overlap with
  sin^2 ramps at HR.

Tiling changes results slightly (the UNet's deepest attention is global, the decoder's receptive
field is wide): tests/test_model_tiling.py and bench/memory.py measure by how much. A tiling whose
single tile covers the frame is the untiled path, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from vsr.options import MIN_TILE, SCALE, TILE_MULTIPLE

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

    from vsr.model.artg import ARTGBranch
    from vsr.model.temporal_vae import TemporalAutoencoderTiny

ALIGN = 4
"""Tile edges lie on multiples of 4 latent px: the TPM pools 4x4 at every decoder stage."""
CONDITION_HALO = 8
"""Latent px of context around a conditioning tile: > the embedding's receptive field (3 px published)."""
DECODE_HALO = 8
"""Latent px of decoder context around each decode tile, computed and thrown away."""
DECODE_OVERLAP = 8
"""Latent px over which neighbouring decode tiles are blended."""


def default_overlap(size: int) -> int:
    """Denoising overlap for tiles of ``size`` latent px: a quarter of the side, at least 8, multiple of 4."""
    return max(8, size // 4 // ALIGN * ALIGN)


def check_tile_size(size: int) -> int:
    """``size`` if it is a usable latent tile side; ValueError naming the fix otherwise."""
    if size < MIN_TILE or size % TILE_MULTIPLE:
        raise ValueError(f"A latent tile side must be a multiple of {TILE_MULTIPLE} of at least {MIN_TILE}; got "
                         f"{size}. Use e.g. 64 or 128 (or tile 'auto').")
    return size


def spans(length: int, size: int, overlap: int) -> tuple[tuple[int, int], ...]:
    """(start, stop) of tiles of ``size`` covering 0..``length`` with at least ``overlap`` in common.

    One span of the whole length when it fits. Starts are evenly spread and lie on multiples of
    ``ALIGN``; the last tile ends exactly at ``length`` (a multiple of 4, as padded frames are).
    """
    if length <= size:
        return ((0, length),)
    if overlap >= size:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile side {size}.")
    count = max(2, math.ceil((length - overlap) / (size - overlap)))
    while True:
        starts = [round(i * (length - size) / (count - 1) / ALIGN) * ALIGN for i in range(count)]
        starts[-1] = length - size
        if all(a + size - b >= overlap for a, b in zip(starts, starts[1:])):
            return tuple((s, s + size) for s in starts)
        count += 1


def _ramp(n: int, device: torch.device) -> torch.Tensor:
    """n weights rising smoothly from ~0 to ~1 (sin^2 at pixel centres); ramp + its mirror image = 1."""
    x = (torch.arange(n, device=device, dtype=torch.float64) + 0.5) / n
    return torch.sin(x * (math.pi / 2)) ** 2


def axis_weights(axis: Sequence[tuple[int, int]], scale: int, device: torch.device) -> list[torch.Tensor]:
    """Per span, its 1-D blend weights at ``scale`` x the latent grid, normalised to sum to 1 per pixel."""
    raw = []
    for i, (start, stop) in enumerate(axis):
        w = torch.ones((stop - start) * scale, device=device, dtype=torch.float64)
        if i > 0:
            left = (axis[i - 1][1] - start) * scale
            w[:left] *= _ramp(left, device)
        if i < len(axis) - 1:
            right = (stop - axis[i + 1][0]) * scale
            w[w.numel() - right:] *= _ramp(right, device).flip(0)
        raw.append(w)
    total = torch.zeros(axis[-1][1] * scale, device=device, dtype=torch.float64)
    for (start, stop), w in zip(axis, raw):
        total[start * scale: stop * scale] += w
    return [(w / total[start * scale: stop * scale]).float() for (start, stop), w in zip(axis, raw)]


@dataclass(frozen=True)
class Tile:
    """One tile, latent coordinates [y0, y1) x [x0, x1), and its place in the grid."""

    y0: int
    y1: int
    x0: int
    x1: int
    row: int
    col: int

    def latent(self) -> tuple[slice, slice, slice, slice]:
        """Index of this tile in an NCHW tensor on the latent grid."""
        return (slice(None), slice(None), slice(self.y0, self.y1), slice(self.x0, self.x1))

    def scaled(self, scale: int) -> tuple[slice, slice, slice, slice]:
        """Index of this tile in an NCHW tensor on ``scale`` x the latent grid."""
        return (slice(None), slice(None), slice(self.y0 * scale, self.y1 * scale),
                slice(self.x0 * scale, self.x1 * scale))


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles over a (height, width) latent grid: the product of ``rows`` and ``cols`` spans."""

    height: int
    width: int
    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, height: int, width: int, size: int, overlap: int) -> "TileGrid":
        return cls(height, width, spans(height, size, overlap), spans(width, size, overlap))

    @property
    def tiles(self) -> list[Tile]:
        return [Tile(y0, y1, x0, x1, r, c) for r, (y0, y1) in enumerate(self.rows)
                for c, (x0, x1) in enumerate(self.cols)]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def weights(self, scale: int, device: torch.device) -> list[torch.Tensor]:
        """Per tile (order of ``tiles``), its (1, 1, h, w) blend weights at ``scale`` x; they sum to 1 everywhere."""
        wy, wx = axis_weights(self.rows, scale, device), axis_weights(self.cols, scale, device)
        return [(wy[t.row][:, None] * wx[t.col][None, :])[None, None] for t in self.tiles]

    def borders(self, scale: int = SCALE) -> tuple[list[int], list[int]]:
        """Interior tile edges (rows, columns) at ``scale`` x: where a seam would show, if any."""
        def edges(axis: tuple[tuple[int, int], ...], length: int) -> list[int]:
            found = {e * scale for span in axis for e in span if 0 < e < length}
            return sorted(found)
        return edges(self.rows, self.height), edges(self.cols, self.width)


@dataclass(frozen=True)
class Tiling:
    """How every frame of one video is cut: latent tile sides for denoising and for decoding
    (None: that phase runs on the whole frame). Fixed for the whole video."""

    denoise: int | None = None
    decode: int | None = None
    overlap: int | None = None
    """Denoising overlap in latent px (default ``default_overlap(denoise)``)."""

    def __post_init__(self) -> None:
        for size in (self.denoise, self.decode):
            if size is not None:
                check_tile_size(size)

    @property
    def enabled(self) -> bool:
        return self.denoise is not None or self.decode is not None

    def denoise_grid(self, height: int, width: int) -> TileGrid | None:
        """The denoising grid for a (height, width) latent, or None when one tile would cover it."""
        if self.denoise is None or (height <= self.denoise and width <= self.denoise):
            return None
        overlap = self.overlap if self.overlap is not None else default_overlap(self.denoise)
        return _grid(height, width, self.denoise, overlap)

    def decode_grid(self, height: int, width: int) -> TileGrid | None:
        """The decoding grid for a (height, width) latent, or None when one tile would cover it."""
        if self.decode is None or (height <= self.decode and width <= self.decode):
            return None
        return _grid(height, width, self.decode, DECODE_OVERLAP)

    def describe(self) -> str:
        def side(size: int | None) -> str:
            return "whole frame" if size is None else f"{size}x{size} latent tiles"
        return f"denoise {side(self.denoise)}, decode {side(self.decode)}"


@lru_cache(maxsize=16)
def _grid(height: int, width: int, size: int, overlap: int) -> TileGrid:
    return TileGrid.build(height, width, size, overlap)


def _expand(start: int, stop: int, by: int, length: int) -> tuple[int, int]:
    return max(0, start - by), min(length, stop + by)


# ---------------------------------------------------------------------------------------------
# The three tiled paths.


def condition(artg: "ARTGBranch", warped: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """ControlNet conditioning embedding of ``warped`` (1, 3, 4h, 4w) -> (1, C, h, w), tile by tile.

    Each tile's core (the grid without overlap) is computed on an HR crop widened by
    ``CONDITION_HALO`` latent px, more than the embedding's receptive field, so the result equals
    the whole-frame embedding up to float rounding.
    """
    out: torch.Tensor | None = None
    rows = _cores(grid.rows)
    cols = _cores(grid.cols)
    for y0, y1 in rows:
        for x0, x1 in cols:
            ey0, ey1 = _expand(y0, y1, CONDITION_HALO, grid.height)
            ex0, ex1 = _expand(x0, x1, CONDITION_HALO, grid.width)
            part = artg.condition(warped[:, :, ey0 * SCALE: ey1 * SCALE, ex0 * SCALE: ex1 * SCALE])
            if out is None:
                out = part.new_empty((1, part.shape[1], grid.height, grid.width))
            out[:, :, y0:y1, x0:x1] = part[:, :, y0 - ey0: y1 - ey0, x0 - ex0: x1 - ex0]
    assert out is not None
    return out


def _cores(axis: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """Non-overlapping pieces of the axis: each span up to the middle of its overlap with the next."""
    cuts = [0] + [((a[1] + b[0]) // 2) // ALIGN * ALIGN for a, b in zip(axis, axis[1:])] + [axis[-1][1]]
    return list(zip(cuts, cuts[1:]))


def denoise(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    scheduler: "DDIMScheduler",
    timesteps: torch.Tensor,
    latents: torch.Tensor,
    lr: torch.Tensor,
    cond: torch.Tensor | None,
    grid: TileGrid,
) -> torch.Tensor:
    """DDIM loop with tiled noise predictions. ``predict(sample, t, cond_tile)`` is the engine's
    UNet (+ ControlNet) call on a (1, 7, th, tw) input; latents (1, 4, h, w) float32, lr (1, 3, h, w)
    and cond (1, C, h, w) in the model dtype. Returns the final latents, float32."""
    weights = grid.weights(1, latents.device)
    for t in timesteps:
        noise_pred = torch.zeros_like(latents)
        for tile, weight in zip(grid.tiles, weights):
            index = tile.latent()
            sample = torch.cat([latents[index].to(lr.dtype), lr[index]], dim=1)
            part = predict(sample, t, None if cond is None else cond[index])
            noise_pred[index] += part.float() * weight
        latents = scheduler.step(noise_pred, t, latents, eta=0.0, return_dict=False)[0]
    return latents


def encoder_reach(blocks: Sequence[int]) -> int:
    """Latent px of receptive field of the VAE encoder's deepest features (rounded up to ALIGN), for
    an encoder with ``blocks`` temporal blocks per stage.

    Stage k runs at 1/2^k of HR: its opening conv (3x3, at the previous stage's resolution) and
    three 3x3 convs per temporal block each reach one pixel further at their resolution.
    """
    reach = sum(2 ** max(stage - 1, 0) + 3 * count * 2**stage for stage, count in enumerate(blocks))
    return math.ceil(reach / SCALE / ALIGN) * ALIGN


def decode(
    vae: "TemporalAutoencoderTiny",
    latents: torch.Tensor,
    warped: torch.Tensor | None,
    grid: TileGrid,
) -> torch.Tensor:
    """Decode (1, 4, h, w) latents (model dtype, already divided by scaling_factor) tile by tile.

    ``warped`` (1, 3, 4h, 4w) model dtype is the warped previous output whose encoder features the
    decoder's temporal blocks take, or None (a stream's first frame). Returns (1, 3, 4h, 4w) float32
    in the [-1, 1] convention, unclamped.
    """
    out = torch.zeros((1, 3, grid.height * SCALE, grid.width * SCALE), device=latents.device, dtype=torch.float32)
    halo = encoder_reach(vae.config.num_encoder_blocks)
    for tile, weight in zip(grid.tiles, grid.weights(SCALE, latents.device)):
        ry0, ry1 = _expand(tile.y0, tile.y1, DECODE_HALO, grid.height)
        rx0, rx1 = _expand(tile.x0, tile.x1, DECODE_HALO, grid.width)
        features = None
        if warped is not None:
            features = _features(vae, warped, (ry0, ry1, rx0, rx1), halo, grid)
        image = vae.decode(latents[:, :, ry0:ry1, rx0:rx1], features).float()
        oy, ox = (tile.y0 - ry0) * SCALE, (tile.x0 - rx0) * SCALE
        part = image[:, :, oy: oy + (tile.y1 - tile.y0) * SCALE, ox: ox + (tile.x1 - tile.x0) * SCALE]
        out[tile.scaled(SCALE)] += part * weight
    return out


def _features(vae: "TemporalAutoencoderTiny", warped: torch.Tensor, region: tuple[int, int, int, int], halo: int,
              grid: TileGrid) -> list[torch.Tensor]:
    """Encoder features (decoder order) of ``region`` (latent y0, y1, x0, x1), exact: computed on a
    crop widened by the encoder's receptive field ``halo`` and cut back at every feature's scale."""
    y0, y1, x0, x1 = region
    ey0, ey1 = _expand(y0, y1, halo, grid.height)
    ex0, ex1 = _expand(x0, x1, halo, grid.width)
    crop = warped[:, :, ey0 * SCALE: ey1 * SCALE, ex0 * SCALE: ex1 * SCALE]
    features = vae.encoder_features(crop)
    cut = []
    for feat in features:
        s = feat.shape[-1] // (ex1 - ex0)  # this feature's scale relative to the latent grid (4, 2 or 1)
        cut.append(feat[:, :, (y0 - ey0) * s: (y1 - ey0) * s, (x0 - ex0) * s: (x1 - ex0) * s])
    return cut
