"""RAFT large with on-demand ("alternate") correlation: exact flow in memory linear in the frame's area.

torchvision's RAFT builds the all-pairs correlation volume, (H/8 * W/8)^2 values for an H x W input
(twice while it is built): 1.7 GB at 1280x720, 27 GB at 2560x1440. RAFT's paper (Teed & Deng 2020,
section 3.2) notes that the same features can be computed on demand: since pooling and the dot product
are both linear, level l of the pyramid is the dot product of each fmap1 pixel with the 2x2-average-
pooled (l times) fmap2, and only the 9x9 window around each pixel's centroid is ever looked up.

``LookupCorrBlock`` is a drop-in for torchvision's ``CorrBlock`` (same ``build_pyramid`` /
``index_pyramid`` / ``out_channels``) that does exactly that, with torchvision's conventions:
dot products divided by sqrt(channels); centroid (x, y) in pixels of the level (divided by 2 per
level); bilinear sampling with align_corners=True and zeros outside; window channel order
``dx * 9 + dy`` (x offset major, as torchvision's ``meshgrid(..., indexing="ij")`` gives).

How one lookup is computed. The offsets of the window are integers, so all 81 samples of a pixel share
its fractional position: bilinear sampling of the correlation is a fixed 2x2 blend of the dot products
with the 10x10 integer positions starting at floor(centroid) - radius. Those dot products come from
one of two paths:

- dense tiles: the fmap1 pixels are grouped in 4x4 tiles; when the 10x10 windows of a tile all fall
  in one P x P patch of the level (P at most ``patch_side``, and no more than the widest tile of the
  level needs; smooth flow: nearly always), the patch is copied once and the tile's 16 queries are
  multiplied with it in one batched matrix product (P*P dot products per pixel, but dense arithmetic);
- single pixels: the pixels of the other tiles gather their own 10x10 window (10 contiguous runs of
  10 positions) and take 100 dot products each.

Work is done in chunks of tiles / pixels sized from ``budget_bytes``, so the working memory is
bounded; what stays is linear in the area: the padded, pooled fmap2 pyramid (about 1.4x fmap2), a
tiled copy of fmap1 and the (levels * 81)-channel feature map that torchvision's block returns too.

``LookupRAFT`` is torchvision's ``RAFT`` (same modules, same weights, same call
``model(image1, image2, num_flow_updates=12)`` returning a list of upsampled predictions) with this
block; ``lookup_raft(raft)`` makes one that shares an existing model's modules (no weight copy). By
default it upsamples only the last prediction (the only one this project uses), which is the same
number torchvision returns last.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.optical_flow import RAFT
from torchvision.models.optical_flow._utils import make_coords_grid, upsample_flow

from vsr.model.raft_encoder import encode

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 64 * 2**20  # working memory of one chunk; beyond ~64 MiB larger chunks are not faster
TILE = 4  # fmap1 pixels per tile side on the dense path
PATCH_SLACK = 3  # patch side beyond what a tile with a constant flow needs (flow variation it tolerates)
_INDEX_BYTES = 8  # int64


@dataclass
class _Level:
    """One pyramid level: fmap2 pooled ``level`` times, zero-padded, channels last, batch flattened.

    ``table`` is (B * rows * cols, C) for a (B, rows, cols) padded grid; level pixel (x, y) of batch b
    is row ``(b * rows + y + pad) * cols + x + pad``. ``patch`` is the dense-path patch side.
    """

    table: Tensor
    rows: int
    cols: int
    height: int  # the level's own size, before padding
    width: int
    patch: int


def patch_side(level: int, *, radius: int = 4, tile: int = TILE) -> int:
    """Side of the dense-path patch at ``level``: a 10x10 window (radius 4) plus the tile's spread.

    A tile of ``tile`` pixels spans ``tile - 1`` pixels of fmap1, which is ``(tile - 1) / 2**level``
    pixels of level ``level`` for a constant flow; ``PATCH_SLACK`` more absorbs flow variation.
    """
    return 2 * radius + 2 + math.ceil((tile - 1) / 2**level) + PATCH_SLACK


def on_demand_bytes(height: int, width: int, *, channels: int = 256, itemsize: int = 4, levels: int = 4,
                    budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """Bytes the on-demand correlation holds for RAFT inputs of ``height`` x ``width`` (batch 1): the padded
    pooled fmap2 pyramid, the tiled fmap1, the features it returns (and their tiled copy) and one chunk.
    RAFT's own activations (the encoders at 1/2 to 1/8 scale) come on top, in both correlation modes.
    """
    rows, cols = height // 8, width // 8
    tiles = -(-rows // TILE) * -(-cols // TILE) * TILE * TILE
    total = tiles * channels * itemsize + 2 * tiles * levels * 81 * itemsize + budget_bytes
    for level in range(levels):
        after = max(patch_side(level), 10) + 1
        total += (rows // 2**level + 10 + after) * (cols // 2**level + 10 + after) * channels * itemsize
    return total


class LookupCorrBlock(nn.Module):
    """torchvision's ``CorrBlock`` computed on demand, in chunks bounded by ``budget_bytes``."""

    def __init__(self, *, num_levels: int = 4, radius: int = 4, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        super().__init__()
        if budget_bytes < 1:
            raise ValueError(f"budget_bytes must be positive; got {budget_bytes}.")
        self.num_levels = num_levels
        self.radius = radius
        self.budget_bytes = int(budget_bytes)
        self.out_channels = num_levels * (2 * radius + 1) ** 2
        self._levels: list[_Level] = []
        self._queries: Tensor | None = None  # (tiles, TILE * TILE, C)
        self._scratch: Tensor | None = None  # chunk buffer, see _copy_runs
        self._shape: tuple[int, int, int] = (0, 0, 0)  # batch, fmap height, fmap width

    # ---- sizes -----------------------------------------------------------------------------------

    @property
    def _window(self) -> int:
        return 2 * self.radius + 2  # integer positions a bilinear 9x9 window touches per side

    @property
    def _pad(self) -> int:
        """Zeros before the level (top/left): centroids are clamped so windows start at -(2r + 2)."""
        return 2 * self.radius + 2

    def tile_bytes(self, channels: int, itemsize: int, patch: int) -> int:
        """Working bytes of one tile on the dense path (patch copy, queries, dot products, blend)."""
        pixels, win = TILE * TILE, self._window
        return (patch * patch * channels * itemsize + pixels * channels * itemsize
                + pixels * patch * patch * itemsize + pixels * win * win * (_INDEX_BYTES + 2 * itemsize)
                + pixels * 81 * 4 * itemsize + patch * _INDEX_BYTES)

    def pixel_bytes(self, channels: int, itemsize: int) -> int:
        """Working bytes of one pixel on the single-pixel path (window copy, query, dot products, blend)."""
        win = self._window
        return (win * win * channels * itemsize + channels * itemsize + win * win * 3 * itemsize
                + win * _INDEX_BYTES + 81 * 4 * itemsize)

    def per_chunk(self, item_bytes: int) -> int:
        """How many items of ``item_bytes`` one chunk holds within the budget (at least one)."""
        return max(1, self.budget_bytes // item_bytes)

    # ---- CorrBlock interface -----------------------------------------------------------------------

    def build_pyramid(self, fmap1: Tensor, fmap2: Tensor) -> None:
        """Keep fmap1 (tiled) and the pooled, padded fmap2 pyramid; no correlation is computed here."""
        if fmap1.shape != fmap2.shape:
            raise ValueError(f"Input feature maps should have the same shape, got {fmap1.shape} != {fmap2.shape}")
        min_side = 2 * 2 ** (self.num_levels - 1)  # the coarsest level needs 2+ pixels (as torchvision)
        if any(side < min_side for side in fmap1.shape[-2:]):
            raise ValueError(f"Feature maps must be at least {min_side} pixels on a side (images at least "
                             f"{8 * min_side}); got {tuple(fmap1.shape[-2:])}.")
        batch, channels, height, width = fmap1.shape
        self._shape = (batch, height, width)
        # torchvision divides the products by sqrt(C); dividing the queries is the same for C = 4^k (exact roots)
        self._queries = _tiles(fmap1, TILE) / math.sqrt(channels)
        self._levels = []
        level_map = fmap2
        for level in range(self.num_levels):
            if level:
                level_map = F.avg_pool2d(level_map, kernel_size=2, stride=2)
            self._levels.append(self._padded(level_map, patch_side(level, radius=self.radius)))

    def _padded(self, level_map: Tensor, patch: int) -> _Level:
        batch, channels, height, width = level_map.shape
        pad = self._pad
        after = max(patch, self._window) + 1  # windows start at most at size + 1; dense patches reach patch - 1 past
        rows, cols = height + pad + after, width + pad + after
        table = level_map.new_zeros(batch, rows, cols, channels)
        table[:, pad:pad + height, pad:pad + width] = level_map.permute(0, 2, 3, 1)
        return _Level(table.view(batch * rows * cols, channels), rows, cols, height, width, patch)

    def release(self) -> None:
        """Drop the stored feature maps (they are linear in area, but need not outlive one forward)."""
        self._levels, self._queries, self._scratch = [], None, None

    def _copy_runs(self, table: Tensor, starts: Tensor, length: int) -> Tensor:
        """``_runs`` into a buffer reused by every chunk of one forward (fresh pages cost more than the copy)."""
        size = starts.numel() * length * table.shape[1]
        scratch = self._scratch
        if scratch is None or scratch.numel() < size or scratch.dtype != table.dtype or scratch.device != table.device:
            scratch = self._scratch = table.new_empty(size)
        out = scratch[:size].view(starts.numel(), length * table.shape[1])
        return _runs(table, starts, length, out=out)

    def index_pyramid(self, centroids_coords: Tensor) -> Tensor:
        """Correlation features (B, levels * 81, h, w) at ``centroids_coords`` (B, 2, h, w) [x, y]."""
        if self._queries is None:
            raise RuntimeError("index_pyramid called before build_pyramid")
        batch, height, width = self._shape
        if centroids_coords.shape != (batch, 2, height, width):
            raise ValueError(f"centroids_coords should be {(batch, 2, height, width)}; got {centroids_coords.shape}")
        coords = _tiles(centroids_coords.float(), TILE, replicate=True)  # (tiles, TILE*TILE, 2)
        queries = self._queries
        out = queries.new_empty(queries.shape[0], TILE * TILE, self.out_channels)
        per_level = (2 * self.radius + 1) ** 2
        for level, table in enumerate(self._levels):
            target = out[:, :, level * per_level:(level + 1) * per_level]
            self._lookup_level(table, coords / 2**level, target)
        return _untile(out, batch, height, width)

    # ---- one level -----------------------------------------------------------------------------

    def _lookup_level(self, level: _Level, coords: Tensor, target: Tensor) -> None:
        """Fill ``target`` (tiles, TILE*TILE, 81) with one level's features at ``coords`` (level pixels)."""
        r = self.radius
        # A centroid more than r + 1 pixels outside the level sees only zeros: clamping it there changes no
        # value, and keeps NaN or huge coordinates out of the integer arithmetic.
        limits = torch.tensor([level.width + r + 1, level.height + r + 1], dtype=coords.dtype, device=coords.device)
        coords = torch.minimum(torch.nan_to_num(coords, nan=-(r + 2.0)).clamp(min=-(r + 2.0)), limits)
        base = coords.floor()
        frac = (coords - base).to(target.dtype)
        origin = base.long() - r + self._pad  # window start in padded table coordinates, (tiles, TT, 2) [x, y]
        tiles = origin.shape[0]
        image = torch.arange(tiles, device=origin.device) // (tiles // self._shape[0])
        low = origin.amin(dim=1)
        spans = (origin.amax(dim=1) - low).amax(dim=1) + self._window  # patch side each tile needs
        side = min(level.patch, int(spans.max()))  # no wider than the widest tile needs (smooth flow: 11 to 14)
        fits = spans <= side
        step = self.per_chunk(self.tile_bytes(level.table.shape[1], level.table.element_size(), side))
        if side < level.patch or bool(fits.all()):  # the usual case: whole ranges of tiles, no index copies
            for start in range(0, tiles, step):
                sel = slice(start, min(start + step, tiles))
                target[sel] = self._dense(level, side, sel, origin[sel], low[sel], image[sel], frac[sel])
            return
        dense, sparse = fits.nonzero().flatten(), (~fits).nonzero().flatten()
        logger.debug("level %dx%d: %d tiles dense, %d single-pixel", level.width, level.height,
                     dense.numel(), sparse.numel())
        for ids in dense.split(step) if dense.numel() else ():
            target[ids] = self._dense(level, side, ids, origin[ids], low[ids], image[ids], frac[ids])
        self._sparse(level, sparse, origin, image, frac, target.view(-1, target.shape[-1]))

    def _dense(self, level: _Level, side: int, sel: slice | Tensor, origin: Tensor, low: Tensor, image: Tensor,
               frac: Tensor) -> Tensor:
        """Features of the tiles ``sel``, whose windows all fit the ``side``-wide patch at ``low`` [x, y]."""
        win, count = self._window, origin.shape[0]
        steps = torch.arange(side, device=origin.device)
        starts = (image[:, None] * level.rows + low[:, 1:2] + steps) * level.cols + low[:, 0:1]  # (n, side)
        patches = self._copy_runs(level.table, starts, side).view(count, side * side, level.table.shape[1])
        products = torch.bmm(self._queries[sel], patches.transpose(1, 2))  # (n, TT, side*side)
        offset = origin - low[:, None, :]  # (n, TT, 2): where each window starts inside the patch
        wsteps = torch.arange(win, device=origin.device)
        pattern = (wsteps * side + wsteps[:, None]).flatten()  # [dx, dy] -> dy * side + dx: x-major windows
        pick = (offset[..., 1:2] * side + offset[..., 0:1]) + pattern  # (n, TT, win * win)
        window = products.gather(2, pick)
        return _blend(window.view(count, -1, win, win), frac)

    def _sparse(self, level: _Level, tiles: Tensor, origin: Tensor, image: Tensor, frac: Tensor,
                target: Tensor) -> None:
        """Features of every pixel of ``tiles``, a 10x10 window each; ``target`` is (tiles * TT, 81)."""
        per_tile = TILE * TILE
        pixels = (tiles[:, None] * per_tile + torch.arange(per_tile, device=tiles.device)).flatten()
        origin, frac = origin.view(-1, 2), frac.view(-1, 2)
        queries = self._queries.view(-1, self._queries.shape[-1])
        channels, itemsize = level.table.shape[1], level.table.element_size()
        win = self._window
        steps = torch.arange(win, device=origin.device)
        for ids in pixels.split(self.per_chunk(self.pixel_bytes(channels, itemsize))):
            start, img = origin[ids], image[ids // per_tile]
            starts = (img[:, None] * level.rows + start[:, 1:2] + steps) * level.cols + start[:, 0:1]  # (n, win)
            windows = self._copy_runs(level.table, starts, win).view(ids.numel(), win * win, channels)
            products = torch.bmm(windows, queries[ids, :, None]).view(ids.numel(), win, win)  # [.., y, x]
            target[ids] = _blend(products.transpose(1, 2), frac[ids])


def _runs(table: Tensor, starts: Tensor, length: int, *, out: Tensor | None = None) -> Tensor:
    """Copy ``length`` consecutive table rows from each start: (n, k) starts -> (n * k, length * C)."""
    rows, channels = table.shape
    runs = table.as_strided((rows - length + 1, length * channels), (channels, 1))
    if out is None:
        return runs.index_select(0, starts.flatten())
    return torch.index_select(runs, 0, starts.flatten(), out=out)


def _blend(window: Tensor, frac: Tensor) -> Tensor:
    """Bilinear 9x9 samples from 10x10 integer-position values [.., x, y] at fraction ``frac`` [.., (x, y)].

    Returns (.., 81) with channel ``dx * 9 + dy`` (torchvision's order).
    """
    fx, fy = frac[..., 0, None, None], frac[..., 1, None, None]
    columns = torch.lerp(window[..., :-1, :], window[..., 1:, :], fx)  # (.., 9 [x], 10 [y])
    return torch.lerp(columns[..., :-1], columns[..., 1:], fy).flatten(-2)


def _tiles(grid: Tensor, tile: int, *, replicate: bool = False) -> Tensor:
    """(B, C, H, W) -> (B * ceil(H/t) * ceil(W/t), t * t, C), padded at the bottom/right (edge or zeros)."""
    batch, channels, height, width = grid.shape
    pad_h, pad_w = (-height) % tile, (-width) % tile
    if pad_h or pad_w:
        grid = F.pad(grid, (0, pad_w, 0, pad_h), mode="replicate" if replicate else "constant")
    rows, cols = grid.shape[-2] // tile, grid.shape[-1] // tile
    tiled = grid.reshape(batch, channels, rows, tile, cols, tile).permute(0, 2, 4, 3, 5, 1)
    return tiled.reshape(batch * rows * cols, tile * tile, channels)


def _untile(tiled: Tensor, batch: int, height: int, width: int) -> Tensor:
    """Inverse of ``_tiles``: (B * rows * cols, t * t, C) -> (B, C, height, width), contiguous."""
    tile = math.isqrt(tiled.shape[1])
    rows, cols = -(-height // tile), -(-width // tile)
    grid = tiled.view(batch, rows, cols, tile, tile, -1).permute(0, 5, 1, 3, 2, 4)
    return grid.reshape(batch, -1, rows * tile, cols * tile)[:, :, :height, :width].contiguous()


class LookupRAFT(RAFT):
    """torchvision's RAFT with ``LookupCorrBlock``: same modules, weights and call, linear memory.

    ``model(image1, image2, num_flow_updates=12)`` returns the upsampled flow predictions (B, 2, H, W);
    with ``keep_all=False`` (the default) only the last one, as a one-element list (the earlier ones
    cost an upsampling each and are not used here). Inputs: H and W multiples of 8, at least 128.
    Runs in the dtype of its parameters; the coordinates stay float32 as in torchvision.
    """

    def __init__(self, *, feature_encoder: nn.Module, context_encoder: nn.Module, update_block: nn.Module,
                 mask_predictor: nn.Module | None = None, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 keep_all: bool = False) -> None:
        super().__init__(feature_encoder=feature_encoder, context_encoder=context_encoder,
                         corr_block=LookupCorrBlock(budget_bytes=budget_bytes), update_block=update_block,
                         mask_predictor=mask_predictor)
        self.keep_all = keep_all

    def forward(self, image1: Tensor, image2: Tensor, num_flow_updates: int = 12) -> list[Tensor]:
        """Flow from ``image1`` to ``image2`` (both (B, 3, H, W) in [-1, 1]) after each update (or the last)."""
        batch, _, height, width = image1.shape
        if image2.shape[-2:] != (height, width):
            raise ValueError(f"input images should have the same shape; got {(height, width)} != {image2.shape[-2:]}")
        if height % 8 or width % 8:
            raise ValueError(f"input image H and W should be divisible by 8; got {height} (h) and {width} (w)")
        # The encoders' full-resolution activations are most of RAFT's memory, so they run one after
        # another, one frame at a time (torchvision encodes both frames as one batch; its instance norms
        # are per image, so this is the same computation), each with striped convolutions and in-place
        # norms (vsr.model.raft_encoder), and all before the correlation's structures are built: their
        # peaks never add up.
        fmap1 = encode(self.feature_encoder, image1)
        fmap2 = encode(self.feature_encoder, image2)
        context_out = encode(self.context_encoder, image1)
        self.corr_block.build_pyramid(fmap1, fmap2)
        del fmap1, fmap2  # the block keeps its own (tiled / pooled) copies
        try:
            return self._iterate(context_out, num_flow_updates)
        finally:
            self.corr_block.release()

    def _iterate(self, context_out: Tensor, num_flow_updates: int) -> list[Tensor]:
        hidden_size = self.update_block.hidden_state_size
        hidden, context = torch.split(context_out, [hidden_size, context_out.shape[1] - hidden_size], dim=1)
        hidden, context = torch.tanh(hidden), F.relu(context)
        coords0 = make_coords_grid(context_out.shape[0], *context_out.shape[-2:], device=context_out.device)
        coords1 = coords0.clone()
        dtype = hidden.dtype
        predictions: list[Tensor] = []
        for update in range(num_flow_updates):
            corr = self.corr_block.index_pyramid(coords1).to(dtype)
            hidden, delta = self.update_block(hidden, context, corr, (coords1 - coords0).to(dtype))
            coords1 = coords1 + delta.float()
            if self.keep_all or update == num_flow_updates - 1:
                mask = None if self.mask_predictor is None else self.mask_predictor(hidden)
                predictions.append(upsample_flow(flow=coords1 - coords0, up_mask=mask))
        return predictions


def lookup_raft(raft: RAFT, *, budget_bytes: int = DEFAULT_BUDGET_BYTES, keep_all: bool = False) -> LookupRAFT:
    """A ``LookupRAFT`` sharing ``raft``'s modules and weights (nothing is copied), in its train/eval mode."""
    model = LookupRAFT(feature_encoder=raft.feature_encoder, context_encoder=raft.context_encoder,
                       update_block=raft.update_block, mask_predictor=raft.mask_predictor,
                       budget_bytes=budget_bytes, keep_all=keep_all)
    return model.train(raft.training)
