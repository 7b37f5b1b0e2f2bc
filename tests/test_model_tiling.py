"""Tiled denoising and decoding (vsr.model.tiling) against the whole-frame path, on the tiny fixture model.

The grid and its blend weights are checked exactly; the conditioning embedding and the encoder
features, computed per tile with a halo wider than their receptive field, equal the whole-frame
values; a two-frame stream at a size where the tiles really split stays close to the untiled one
(bounds measured, see the numbers in each test) and shows no step at the tile borders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_helpers import FIXTURE_SEED, lr_frames
from vsr.model.artg import ARTGBranch
from vsr.model.flow import load_raft
from vsr.model.loading import load_checkpoint
from vsr.model.stream import StreamDiffVSRUpscaler
from vsr.model.tiling import (
    ALIGN,
    SCALE,
    TileGrid,
    Tiling,
    _features,
    axis_weights,
    condition,
    decode,
    encoder_reach,
    spans,
)

pytestmark = pytest.mark.usefixtures("model_threads")


@pytest.fixture(scope="module")
def ckpt(fixture_dir: Path):
    return load_checkpoint(str(fixture_dir / "model"))


@pytest.fixture(scope="module")
def engine(fixture_dir: Path, ckpt) -> StreamDiffVSRUpscaler:
    raft = load_raft(fixture_dir / "raft_large.safetensors")
    return StreamDiffVSRUpscaler(ckpt.unet, ckpt.controlnet, ckpt.vae, ckpt.scheduler, ckpt.prompt_embeds, raft,
                                 device="cpu", precision="fp32")


@pytest.mark.parametrize("length", [32, 36, 48, 64, 92, 180, 360])
@pytest.mark.parametrize(("size", "overlap"), [(32, 8), (48, 12), (64, 16), (128, 32)])
def test_spans_cover_the_axis_with_the_overlap(length: int, size: int, overlap: int) -> None:
    axis = spans(length, size, overlap)
    assert axis[0][0] == 0 and axis[-1][1] == length
    assert all(stop - start == min(size, length) for start, stop in axis)
    assert all(start % ALIGN == 0 for start, _ in axis)
    assert all(a[1] - b[0] >= overlap for a, b in zip(axis, axis[1:]))
    assert len(axis) == 1 or all(b[0] > a[0] for a, b in zip(axis, axis[1:]))


@pytest.mark.parametrize("scale", [1, SCALE])
def test_blend_weights_sum_to_one_and_ramp_smoothly(scale: int) -> None:
    axis = spans(92, 32, 8)
    weights = axis_weights(axis, scale, torch.device("cpu"))
    total = torch.zeros(92 * scale)
    for (start, stop), w in zip(axis, weights):
        total[start * scale: stop * scale] += w
        assert float(w.min()) > 0
        assert float(w.diff().abs().max()) < 0.25 / scale  # no jump inside a tile: a ramp over the overlap
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-6)
    grid = TileGrid.build(48, 92, 32, 8)
    summed = torch.zeros(1, 1, 48 * scale, 92 * scale)
    for tile, w in zip(grid.tiles, grid.weights(scale, torch.device("cpu"))):
        summed[tile.scaled(scale)] += w
    torch.testing.assert_close(summed, torch.ones_like(summed), rtol=0, atol=1e-6)


def test_a_tiling_that_covers_the_frame_is_the_untiled_path() -> None:
    tiling = Tiling(denoise=64, decode=64)
    assert tiling.denoise_grid(32, 48) is None and tiling.decode_grid(32, 48) is None  # the fixture's size
    assert tiling.denoise_grid(32, 72) is not None
    assert not Tiling().enabled and Tiling().denoise_grid(1000, 1000) is None
    with pytest.raises(ValueError, match="multiple of 8 of at least 32"):
        Tiling(denoise=20)


def _image(height: int, width: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    return torch.stack([torch.sin(x / 7), torch.cos(y / 5), torch.sin((x + y) / 11)])[None] * 0.9


def test_tiled_conditioning_equals_the_whole_frame(ckpt) -> None:
    warped = _image(4 * 48, 4 * 72)
    artg = ARTGBranch(ckpt.controlnet)
    with torch.inference_mode():
        whole = artg.condition(warped)
        tiled = condition(artg, warped, TileGrid.build(48, 72, 32, 8))
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-6


def test_tiled_encoder_features_equal_the_whole_frame(ckpt) -> None:
    vae = ckpt.vae
    assert encoder_reach(vae.config.num_encoder_blocks) == 16  # 61 HR px for (1, 3, 3) blocks, in latent px
    warped = _image(4 * 64, 4 * 96)
    grid = TileGrid.build(64, 96, 32, 8)
    with torch.inference_mode():
        whole = vae.encoder_features(warped)
        part = _features(vae, warped, (16, 48, 32, 64), encoder_reach(vae.config.num_encoder_blocks), grid)
    for full, cut in zip(whole, part):
        s = full.shape[-1] // 96
        assert float((cut - full[:, :, 16 * s: 48 * s, 32 * s: 64 * s]).abs().max()) < 1e-6


def test_tiled_decoding_without_temporal_features_matches(ckpt) -> None:
    """A first frame's decode: no TPM, so tiles with an 8 px halo give the whole-frame image (8-bit equal)."""
    latents = torch.randn(1, 4, 48, 72, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = ckpt.vae.decode(latents)
        tiled = decode(ckpt.vae, latents, None, TileGrid.build(48, 72, 32, 8))
    assert float((tiled - whole).abs().max()) < 2e-3  # measured 1.4e-6... 8-bit: identical


def panning_clip(height: int, width: int, frames: int) -> list[np.ndarray]:
    """A smooth random texture panning 2 px per frame (the clip bench/model.py uses), HWC uint8."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (height // 4 + 8, (width + 2 * frames) // 4 + 8, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(big, 4, axis=0), 4, axis=1).astype(np.float32)
    big = (big + np.roll(big, 1, 0) + np.roll(big, 1, 1) + np.roll(big, (1, 1), (0, 1))) / 4
    return [np.ascontiguousarray(big[i % 3: i % 3 + height, 2 * i: 2 * i + width].astype(np.uint8))
            for i in range(frames)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def seam_ratio(image: np.ndarray, grid: TileGrid) -> float:
    """Mean |step| between neighbouring pixels across tile borders / the same elsewhere (1 = no seam)."""
    rows, cols = grid.borders(SCALE)
    x = image.astype(np.float64)
    dx = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))  # dx[c]: step between columns c and c + 1
    dy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))
    at = np.concatenate([dx[[c - 1 for c in cols]], dy[[r - 1 for r in rows]]])
    elsewhere = np.concatenate([np.delete(dx, [c - 1 for c in cols]), np.delete(dy, [r - 1 for r in rows])])
    return float(at.mean() / elsewhere.mean())


@pytest.mark.slow
def test_tiled_stream_is_close_to_the_untiled_one_without_seams(engine) -> None:
    """64x48 LR (48x64 latent), 32-px tiles (2 x 3 tiles, overlap 8): two frames, the second with flow,
    ControlNet and temporal decoder. Measured on a 2-core EPYC: PSNR 39.0 / 40.2 dB, mean |diff| 2.1 /
    1.9 and max 25 / 17 (8-bit) against the untiled stream; the step across tile borders relative to
    elsewhere 1.07 / 1.13, as in the untiled image at the same places (1.07 / 1.12: the content's own)."""
    frames = panning_clip(48, 64, 2)

    def stream(tiling: Tiling | None) -> list[np.ndarray]:
        engine.set_tiling(tiling)
        engine.start_stream(FIXTURE_SEED)
        try:
            return [engine.process(f) for f in frames]
        finally:
            engine.set_tiling(None)

    whole, tiled = stream(None), stream(Tiling(denoise=32, decode=32))
    grid = Tiling(denoise=32).denoise_grid(48, 64)
    assert grid is not None and grid.count == 6
    for a, b in zip(whole, tiled):
        diff = np.abs(a.astype(np.int16) - b)
        assert _psnr(a, b) > 34.0 and diff.mean() < 4.0 and diff.max() < 64
        assert seam_ratio(b, grid) < seam_ratio(a, grid) * 1.1 + 0.02


@pytest.mark.slow
def test_fixture_parity_is_unchanged_with_tiling_on_at_fixture_size(engine, fixture_dir: Path) -> None:
    """At the fixture's 48x32 a 64-px tiling (what auto or --tile 64 give) takes the untiled path: same numbers."""
    frames = lr_frames(fixture_dir)[:2]
    outputs = []
    for tiling in (None, Tiling(denoise=64, decode=64)):
        engine.set_tiling(tiling)
        engine.start_stream(FIXTURE_SEED)
        outputs.append([engine.process(f) for f in frames])
        outputs[-1].append(engine.state.previous_output.clone())
    engine.set_tiling(None)
    for a, b in zip(*outputs):
        assert (a == b).all() if isinstance(a, np.ndarray) else torch.equal(a, b)
