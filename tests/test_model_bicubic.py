"""The bicubic engine: exact 4x sizes, values, the FrameProcessor protocol and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsr.model import BicubicUpscaler, FrameProcessor, load_engine


def test_is_a_frame_processor_and_loads_by_name() -> None:
    engine = load_engine("bicubic", seed=7)
    assert isinstance(engine, FrameProcessor)
    assert isinstance(engine, BicubicUpscaler)
    info = engine.describe()
    assert info["engine"] == "bicubic" and info["seed"] == 7 and info["scale"] == 4
    assert engine.flush() == []


@settings(max_examples=12, deadline=None)
@given(h=st.integers(1, 37), w=st.integers(1, 37), seed=st.integers(0, 2**32 - 1))
def test_output_is_exactly_4x_uint8(h: int, w: int, seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    engine = BicubicUpscaler()
    out = engine.process(rgb)
    assert out.shape == (4 * h, 4 * w, 3)
    assert out.dtype == np.uint8
    assert engine.output_size(w, h) == (4 * w, 4 * h)


def test_values_match_torch_bicubic_rounded_and_clamped() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    out = BicubicUpscaler().process(rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    ref = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    ref = ref.clamp(0, 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out, ref)
    # Overshoot near hard edges is clamped, not wrapped around.
    edge = np.zeros((4, 4, 3), np.uint8)
    edge[:, 2:] = 255
    big = BicubicUpscaler().process(edge)
    assert big[:, :6].max() <= 5 and big[:, -6:].min() >= 250


def test_flat_frame_stays_flat_and_seed_is_reported() -> None:
    engine = BicubicUpscaler()
    seed = engine.start_stream(None)
    assert isinstance(seed, int) and engine.describe()["seed"] == seed
    assert engine.start_stream(123) == 123
    flat = np.full((5, 6, 3), (10, 128, 250), np.uint8)
    out = engine.process(flat)
    assert (out == np.array([10, 128, 250], np.uint8)).all()
    engine.reset()
    np.testing.assert_array_equal(engine.process(flat), out)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((4, 4), np.uint8), "(H, W, 3)"),
        (np.zeros((4, 4, 4), np.uint8), "(H, W, 3)"),
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_frames_are_refused_with_the_fix(bad, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        BicubicUpscaler().process(bad)


def test_unknown_engine_name() -> None:
    with pytest.raises(ValueError, match="stream-diffvsr, bicubic"):
        load_engine("lanczos")
