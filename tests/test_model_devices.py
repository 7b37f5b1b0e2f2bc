"""Device and precision resolution, attention options, reduced precision against fp32, and CUDA (gpu marker)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_helpers import FIXTURE_SEED, expected_frames, lr_frames
from vsr.model import load_engine
from vsr.model import devices
from vsr.model.errors import DeviceError


def test_cpu_and_auto_device() -> None:
    assert devices.resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert devices.resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_missing_cuda_is_refused_with_the_fix() -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU is available. Fix: use device 'auto' or 'cpu'"):
        devices.resolve_device("cuda:0")


@pytest.mark.parametrize(
    "flags, expected",
    [
        (frozenset({"avx512f", "avx512_bf16"}), torch.bfloat16),  # e.g. AMD EPYC (Zen 4), Intel Cooper Lake
        (frozenset({"avx512f", "amx_bf16", "amx_tile"}), torch.bfloat16),  # Intel Sapphire Rapids
        (frozenset({"avx2", "fma"}), torch.float32),
        (frozenset(), torch.float32),  # not Linux / unknown
    ],
)
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(devices, "cpu_flags", lambda: flags)
    assert devices.resolve_precision("auto", torch.device("cpu")) == expected
    assert devices.resolve_precision("fp32", torch.device("cpu")) == torch.float32


def test_auto_precision_on_cuda_is_fp16() -> None:
    assert devices.resolve_precision("auto", torch.device("cuda")) == torch.float16


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(DeviceError, match="fp16.*CPU.*Fix: use bf16 or fp32"):
        devices.resolve_precision("fp16", torch.device("cpu"))


def test_this_cpu_flags_are_read() -> None:
    flags = devices.cpu_flags()
    if Path("/proc/cpuinfo").is_file():
        assert flags, "no flags line parsed from /proc/cpuinfo"
        assert devices.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def _engine(fixture_dir: Path, **kw):
    return load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"),
                       flow_weights=fixture_dir / "raft_large.safetensors", seed=FIXTURE_SEED, **kw)


def test_xformers_without_the_package_is_refused(fixture_dir: Path) -> None:
    try:
        import xformers  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceError, match="pip install xformers"):
            _engine(fixture_dir, device="cpu", precision="fp32", attention="xformers")
    else:
        pytest.skip("xformers is installed here")


def test_sliced_attention_gives_the_same_pixels(fixture_dir: Path, model_threads) -> None:
    frames = lr_frames(fixture_dir)[:2]
    sliced = _engine(fixture_dir, device="cpu", precision="fp32", attention="sliced")
    assert sliced.describe()["attention"] == "sliced"
    outs = [sliced.process(f) for f in frames]
    for out, exp in zip(outs, expected_frames(fixture_dir)):
        assert np.abs(out.astype(int) - exp).max() <= 1


def test_bf16_stays_close_to_fp32(fixture_dir: Path, model_threads) -> None:
    """bf16 on the CPU (measured on AMD EPYC: decoded max 0.027, mean 0.0035; PNG mean 0.40 steps)."""
    engine = _engine(fixture_dir, device="cpu", precision="bf16")
    assert engine.describe()["precision"] == "bf16"
    decoded = np.load(fixture_dir / "expected" / "decoded.npy")
    for i, (frame, exp) in enumerate(list(zip(lr_frames(fixture_dir), expected_frames(fixture_dir)))[:3]):
        out = engine.process(frame)
        raw = engine.state.previous_output.numpy()
        assert np.abs(raw - decoded[i]).max() < 0.1
        assert np.abs(raw - decoded[i]).mean() < 0.01
        assert np.abs(out.astype(int) - exp).mean() < 1.0


@pytest.mark.gpu
@pytest.mark.parametrize("precision, max_tol, mean_tol", [("fp32", 2e-2, 2e-3), ("fp16", 0.1, 0.01)])
def test_fixture_on_cuda(fixture_dir: Path, precision: str, max_tol: float, mean_tol: float) -> None:
    """CUDA fp32 (cuDNN may use TF32 for convolutions) and fp16 against the CPU fp32 recording."""
    engine = _engine(fixture_dir, device="cuda", precision=precision)
    assert engine.describe()["device"].startswith("cuda")
    decoded = np.load(fixture_dir / "expected" / "decoded.npy")
    for i, frame in enumerate(lr_frames(fixture_dir)):
        out = engine.process(frame)
        assert out.shape == (128, 192, 3)
        raw = engine.state.previous_output.cpu().numpy()
        assert np.abs(raw - decoded[i]).max() < max_tol, f"frame {i + 1}"
        assert np.abs(raw - decoded[i]).mean() < mean_tol, f"frame {i + 1}"
