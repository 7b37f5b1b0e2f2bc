"""The speed switches (vsr.switches / acceleration): parsing, and on the CPU the same pixels as the plain path.

CUDA-only switches named explicitly run in their CPU form (lookup-table upload, synchronous
prefetch, static-buffer loop without a graph), so their bookkeeping is checked here bit for bit
against the plain path on the fixture model; their speed is measured by bench/gpu.py on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.model_helpers import FIXTURE_SEED, lr_frames
from vsr import switches
from vsr.model import load_engine
from vsr.model.stream import StreamDiffVSRUpscaler, postprocess, preprocess
from vsr.model.transfers import Uploader, to_uint8
from vsr.options import OptionsError, build_options

pytestmark = [pytest.mark.usefixtures("model_threads"), pytest.mark.slow]
CPU_FORMS = "none,device-postprocess,pinned-uploads,flow-prefetch,cuda-graphs,tf32,cudnn-benchmark"


def test_switch_lists_parse_and_resolve() -> None:
    assert switches.parse(None) == ("auto",)
    assert switches.parse("Auto, compile ,-flow_prefetch") == ("auto", "compile", "-flow-prefetch")
    assert switches.resolve("auto", "cuda") == switches.AUTO["cuda"]
    assert switches.resolve("auto", "cpu") == switches.AUTO["cpu"]
    assert switches.resolve("auto,-flow-prefetch,compile", "cuda") == (switches.AUTO["cuda"] - {"flow-prefetch"}) | {
        "compile"}
    assert switches.resolve("none", "cuda") == frozenset()
    assert switches.resolve("auto,none,channels-last", "cpu") == {"channels-last"}
    assert not switches.AUTO["cpu"] & switches.CUDA_ONLY
    assert switches.text({"tf32", "device-postprocess"}) == "device-postprocess,tf32"


@pytest.mark.parametrize("bad, message", [("turbo", "unknown optimisation 'turbo'"),
                                          ("compile,aot", "cannot be combined"),
                                          ("-nope", "unknown optimisation")])
def test_bad_switch_lists_name_the_fix(bad: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        build_options({"optimisations": bad}, env={})
    with pytest.raises(OptionsError, match="STREAM_DIFFVSR_OPTIMISATIONS"):
        build_options({}, env={"STREAM_DIFFVSR_OPTIMISATIONS": bad})


def test_options_carry_the_switches() -> None:
    assert build_options({}, env={}).optimisations == ("auto",)
    assert build_options({}, env={"STREAM_DIFFVSR_OPTIMISATIONS": "none"}).optimisations == ("none",)
    assert build_options({"optimisations": "auto,compile"}, env={}).optimisations == ("auto", "compile")


def test_lookup_table_upload_is_preprocess_exactly() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    rgb[0, :4, 0] = [0, 1, 254, 255]
    ours, ref = Uploader(torch.device("cpu"), pinned=True).frame(rgb), preprocess(rgb)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape and ours.stride() == ref.stride()
    assert torch.equal(ours, ref)


def test_a_read_only_frame_is_uploaded_without_torchs_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.asarray of a PIL image is read-only: torch.from_numpy takes it with a warning on the terminal
    (once per process, so the test refuses it instead of waiting for the warning)."""
    rgb = np.asarray(Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)))
    assert not rgb.flags.writeable
    original = torch.from_numpy

    def strict(array: np.ndarray) -> torch.Tensor:
        assert array.flags.writeable, "a read-only array reached torch.from_numpy"
        return original(array)

    monkeypatch.setattr(torch, "from_numpy", strict)
    assert torch.equal(Uploader(torch.device("cpu"), pinned=True).frame(rgb), preprocess(rgb.copy()))


def test_device_uint8_is_postprocess_exactly() -> None:
    decoded = torch.randn(1, 3, 24, 36) * 1.2
    decoded[0, 0, 0, :3] = torch.tensor([-1.0, 1.0, 0.0])
    ours = to_uint8(decoded, 22, 35).numpy()
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, postprocess(decoded)[:22, :35])


@pytest.fixture(scope="module")
def engines(fixture_dir: Path) -> dict[str, StreamDiffVSRUpscaler]:
    def make(optimisations: str, precision: str = "fp32") -> StreamDiffVSRUpscaler:
        return load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"), device="cpu", precision=precision,
                           flow_weights=fixture_dir / "raft_large.safetensors", seed=FIXTURE_SEED,
                           optimisations=optimisations)

    return {"plain": make("none"), "forms": make(CPU_FORMS), "raft-half": make("raft-half", "bf16")}


def _stream(engine: StreamDiffVSRUpscaler, frames: list[np.ndarray], cut_at: int | None = None) -> list[np.ndarray]:
    """As the job calls it: reset at a cut, prefetch of the next frame, then process."""
    engine.start_stream(FIXTURE_SEED)
    out = []
    for i, rgb in enumerate(frames):
        if i == cut_at:
            engine.reset()
        if i + 1 < len(frames) and hasattr(engine, "prefetch"):
            engine.prefetch(frames[i + 1])
        out.append(engine.process(rgb))
    return out


def test_cpu_forms_of_every_transfer_switch_give_the_same_pixels(engines, fixture_dir: Path) -> None:
    frames = lr_frames(fixture_dir)[:4]
    forms = engines["forms"]
    assert forms.describe()["optimisations"] == ("device-postprocess,pinned-uploads,flow-prefetch,tf32,"
                                                 "cudnn-benchmark,cuda-graphs")
    plain, ours = _stream(engines["plain"], frames), _stream(forms, frames)
    for i, (a, b) in enumerate(zip(plain, ours)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i}")
    assert forms.accel.graphs is not None and len(forms.accel.graphs._graphs) == 2  # first frame + ControlNet
    plain_cut, ours_cut = _stream(engines["plain"], frames, cut_at=2), _stream(forms, frames, cut_at=2)
    for i, (a, b) in enumerate(zip(plain_cut, ours_cut)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {i} (scene cut at 2)")


def test_prefetch_of_a_frame_that_never_comes_changes_nothing(engines, fixture_dir: Path) -> None:
    frames = lr_frames(fixture_dir)[:3]
    forms = engines["forms"]
    expected = _stream(engines["plain"], frames)
    forms.start_stream(FIXTURE_SEED)
    forms.prefetch(frames[2][::-1].copy())  # a wrong guess, then the real frames
    forms.prefetch(np.zeros((5, 5), np.uint8))  # not a frame: ignored
    got = [forms.process(f) for f in frames]
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_raft_half_runs_raft_in_the_model_precision_and_stays_close(engines, fixture_dir: Path) -> None:
    frames = lr_frames(fixture_dir)[:2]
    engine = engines["raft-half"]
    with torch.inference_mode():
        ups = [engine._inputs(f)[1] for f in frames]
        full = engine._flow(ups[1], ups[0])
        half = engine.accel.compute_flow(ups[1], ups[0])
    assert full.dtype == half.dtype == torch.float32 and not torch.equal(full, half)
    epe = (half - full).norm(dim=-1)
    assert float(epe.mean()) < 0.5 and torch.isfinite(half).all()
