"""Streaming behaviour of StreamDiffVSRUpscaler on the tiny fixture model (fp32, CPU).

Streaming equals the reference's whole-clip structure; reset() and start_stream(seed) semantics;
constant state; exact 4x sizes for any input size through the padding path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.model_helpers import FIXTURE_SEED, lr_frames
from vsr.model import FrameProcessor, load_engine
from vsr.model.flow import compute_flow
from vsr.model.stream import StreamDiffVSRUpscaler, postprocess, preprocess

pytestmark = pytest.mark.usefixtures("model_threads")


@pytest.fixture(scope="module")
def engine(fixture_dir: Path) -> StreamDiffVSRUpscaler:
    return load_engine(
        "stream-diffvsr",
        model_id=str(fixture_dir / "model"),
        flow_weights=fixture_dir / "raft_large.safetensors",
        device="cpu",
        precision="fp32",
        seed=FIXTURE_SEED,
    )


@pytest.fixture(scope="module")
def frames(fixture_dir: Path) -> list[np.ndarray]:
    return lr_frames(fixture_dir)


@pytest.fixture(scope="module")
def streamed(engine: StreamDiffVSRUpscaler, frames) -> list[np.ndarray]:
    engine.start_stream(FIXTURE_SEED)
    return [engine.process(f) for f in frames]


def whole_clip(engine: StreamDiffVSRUpscaler, frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """The reference's structure: all inputs, noise and flows first, then denoise; diffusers' own ControlNet call."""
    with torch.inference_mode():
        lrs = [preprocess(f) for f in frames]
        ups = [F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False) for x in lrs]
        gen = torch.Generator("cpu").manual_seed(seed)
        noise = [torch.randn((1, 4, *f.shape[:2]), generator=gen) for f in frames]
        flows = [compute_flow(engine.raft, ups[i], ups[i - 1]) for i in range(1, len(frames))]
        out, prev = [], None
        for i, lr in enumerate(lrs):
            warped = feats = None
            if i:
                warped = engine.warp(prev, flows[i - 1])
                feats = engine.vae.encoder_features(warped)
            latents = noise[i]
            for t in engine.timesteps:
                sample = torch.cat([latents, lr], dim=1)
                down = mid = None
                if warped is not None:
                    down, mid = engine.controlnet(sample, t, encoder_hidden_states=engine.text, controlnet_cond=warped,
                                                  conditioning_scale=1.0, return_dict=False)
                pred = engine.unet(sample, t, encoder_hidden_states=engine.text, down_block_additional_residuals=down,
                                   mid_block_additional_residual=mid, return_dict=False)[0]
                latents = engine.scheduler.step(pred, t, latents, eta=0.0, return_dict=False)[0]
            prev = engine.vae.decode(latents, feats)
            out.append(postprocess(prev))
    return out


def test_is_a_frame_processor(engine: StreamDiffVSRUpscaler) -> None:
    assert isinstance(engine, FrameProcessor)
    info = engine.describe()
    assert info["engine"] == "stream-diffvsr" and info["precision"] == "fp32" and info["device"] == "cpu"
    assert info["steps"] == 4 and info["scale"] == 4
    assert engine.output_size(48, 32) == (192, 128)
    assert engine.flush() == []


def test_streaming_equals_whole_clip(engine, frames, streamed) -> None:
    reference = whole_clip(engine, frames, FIXTURE_SEED)
    for i, (ours, ref) in enumerate(zip(streamed, reference)):
        np.testing.assert_array_equal(ours, ref, err_msg=f"frame {i + 1}")


def test_first_output_after_one_frame_and_state_stays_small(engine, frames) -> None:
    engine.start_stream(5)
    first = engine.process(frames[0])
    assert first.shape == (128, 192, 3)
    assert engine.state.frames == 1

    def held_bytes() -> int:
        tensors = [engine.state.previous_output, engine.state.previous_upscaled]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    engine.process(frames[1])
    after_two = (held_bytes(), len(engine.artg._time), tuple(engine.warp._grid.shape))
    for f in frames[2:5]:
        engine.process(f)
    assert (held_bytes(), len(engine.artg._time), tuple(engine.warp._grid.shape)) == after_two
    assert held_bytes() == 2 * 3 * 128 * 192 * 4  # one HR output + one HR bicubic frame, nothing per frame
    assert engine.state.frames == 5


def test_same_seed_repeats_and_other_seed_differs(engine, frames, streamed) -> None:
    assert engine.start_stream(FIXTURE_SEED) == FIXTURE_SEED
    again = [engine.process(f) for f in frames[:2]]
    np.testing.assert_array_equal(again[1], streamed[1])
    engine.start_stream(FIXTURE_SEED + 1)
    assert np.abs(engine.process(frames[0]).astype(int) - streamed[0]).mean() > 1.0


def test_no_seed_gives_a_reported_random_seed_that_reproduces(engine, frames) -> None:
    seed = engine.start_stream(None)
    assert isinstance(seed, int) and engine.describe()["seed"] == seed
    first = engine.process(frames[0])
    assert engine.start_stream(None) != seed
    engine.start_stream(seed)
    np.testing.assert_array_equal(engine.process(frames[0]), first)


def test_reset_makes_the_next_frame_a_first_frame(engine, frames, streamed) -> None:
    # Frame k after reset() depends only on its own pixels and its noise draw k, not on earlier frames.
    engine.start_stream(FIXTURE_SEED)
    for f in frames[:3]:
        engine.process(f)
    engine.reset()
    after_reset = engine.process(frames[3])
    assert engine.state.since_reset == 1 and engine.state.frames == 4
    engine.start_stream(FIXTURE_SEED)
    for f in (frames[5], frames[0][::-1].copy(), frames[2]):
        engine.process(f)
    engine.reset()
    np.testing.assert_array_equal(engine.process(frames[3]), after_reset)
    # ... and without the reset frame 4 uses the temporal context, so it differs.
    assert np.abs(after_reset.astype(int) - streamed[3]).max() > 20


def test_a_stream_started_at_frame_k_takes_frame_ks_noise(engine, frames, streamed) -> None:
    # A segment of a job on several workers starts at frame k: after a reset (a scene cut) there, or
    # with its warm-up frames, it must make what one whole run makes, so frame k's noise is the k-th
    # draw wherever the stream starts, and a saved stream goes on from the draw it reached.
    engine.start_stream(FIXTURE_SEED)
    for f in frames[:3]:
        engine.process(f)
    engine.reset()
    whole = engine.process(frames[3])
    engine.start_stream(FIXTURE_SEED, frame=3)
    np.testing.assert_array_equal(engine.process(frames[3]), whole)
    assert engine.state.frames == 4
    engine.start_stream(FIXTURE_SEED, frame=2)  # warm up from frame 2 and go on past 3: the whole run's frame 4
    engine.process(frames[2])
    saved = engine.save_stream()
    engine.start_stream(FIXTURE_SEED, frame=1)
    engine.load_stream(saved)
    engine.process(frames[3])
    assert np.abs(engine.process(frames[4]).astype(int) - streamed[4]).mean() < 2.0  # warmed state: close, not exact
    engine.start_stream(FIXTURE_SEED, frame=5)
    engine.start_stream(FIXTURE_SEED)  # a later start at 0 draws from the start again
    np.testing.assert_array_equal(engine.process(frames[0]), streamed[0])
    with pytest.raises(ValueError, match="frame must be 0 or more"):
        engine.start_stream(FIXTURE_SEED, frame=-1)


def test_size_change_needs_reset(engine, frames) -> None:
    engine.start_stream(1)
    engine.process(frames[0])
    with pytest.raises(ValueError, match="reset"):
        engine.process(frames[1][:16, :24].copy())
    engine.reset()
    assert engine.process(frames[1][:16, :24].copy()).shape == (64, 96, 3)


def test_padding_path_reproduces_an_edge_replicated_frame_exactly(engine, frames) -> None:
    # A 32x48 frame whose last row/column already repeat their neighbours is exactly what padding
    # the 31x47 crop produces, so the crop's output must equal the full output, cropped to 124x188.
    full = frames[0].copy()
    full[-1] = full[-2]
    full[:, -1] = full[:, -2]
    engine.start_stream(9)
    whole = engine.process(full)
    engine.start_stream(9)
    cropped = engine.process(full[:31, :47].copy())
    assert cropped.shape == (124, 188, 3)
    np.testing.assert_array_equal(cropped, whole[:124, :188])


def test_unpadded_size_is_untouched(engine, frames) -> None:
    engine.start_stream(3)
    out = engine.process(frames[0])
    engine.start_stream(3)
    raw = engine.process_tensor(frames[0])
    assert raw.shape == (1, 3, 128, 192)
    np.testing.assert_array_equal(out, postprocess(raw))


@settings(max_examples=5, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_any_size_gives_exactly_4x(engine, h: int, w: int, seed: int) -> None:
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    engine.start_stream(seed)
    out = engine.process(rgb)
    out2 = engine.process(rgb)  # second frame: the temporal path at the padded size
    assert out.shape == out2.shape == (4 * h, 4 * w, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("optimisations", ["none", "device-postprocess"])
def test_a_frame_with_nan_or_inf_values_is_an_error_not_a_garbage_frame(fixture_dir: Path, frames,
                                                                          optimisations: str) -> None:
    """Overflow (fp16) or a miscompiled kernel (torch.compile in bf16 on the CPU gave NaN frames in
    bench/gpu.py's side-by-side run) must not become a silently black or noisy frame."""
    from vsr.model.errors import NonFiniteOutput

    up = load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"),
                     flow_weights=fixture_dir / "raft_large.safetensors", device="cpu", precision="fp32",
                     seed=FIXTURE_SEED, optimisations=optimisations)
    up.start_stream(FIXTURE_SEED)
    good = up.process(frames[0])
    assert good.shape == (128, 192, 3)
    decode = up.vae.decode

    def poisoned(*args, **kwargs):
        out = decode(*args, **kwargs)
        out[..., :3, :5] = float("nan")
        out[..., -1, -1] = float("inf")
        return out

    up.vae.decode = poisoned
    with pytest.raises(NonFiniteOutput) as caught:
        up.process(frames[1])
    text = str(caught.value)
    assert "NaN or infinite values" in text and "fp32" in text and "on cpu" in text
    assert f"optimisations {optimisations}" in text and "Fix:" in text
