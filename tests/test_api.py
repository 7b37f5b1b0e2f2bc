"""The Python API (``vsr.Upscaler``, ``vsr.upscale_file``; docs/python-api.md): each kind of picture in
gives the same kind out at exactly 4x; the fixture model through the API gives the golden frames and the
frames of a file job; ``reset()`` starts over; the documented example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import media
import vsr
from tests.media_factory import ROOT_DIR, make_video
from tests.model_helpers import FIXTURE_SEED, expected_frames, lr_frames
from vsr.model.bicubic import BicubicUpscaler
from vsr.model.engines import engine_lock

pytestmark = pytest.mark.usefixtures("model_threads")


@pytest.fixture(scope="module")
def model(fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The options that load the tiny fixture model on the CPU (its speed cached, so plans measure nothing)."""
    from vsr.job import estimate
    from vsr.model import load_engine

    cache = tmp_path_factory.mktemp("cache")
    options = {"model_id": str(fixture_dir / "model"), "flow_weights": fixture_dir / "raft_large.safetensors",
               "device": "cpu", "precision": "fp32", "cache_dir": cache}
    engine = load_engine("stream-diffvsr", **{k: v for k, v in options.items() if k != "cache_dir"})
    for width, height in (*estimate.BASE_SIZES, (48, 32)):
        estimate.record(cache, [estimate.cache_key(engine)], width, height, 1.0)
    return options


def _picture(height: int = 12, width: int = 16) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_importing_vsr_loads_neither_torch_nor_the_api() -> None:
    code = "import sys, vsr; print('torch' in sys.modules, 'vsr.api' in sys.modules, callable(vsr.Upscaler))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, timeout=120)
    assert out.stdout.split() == ["False", "False", "True"], out.stderr


def test_each_kind_of_picture_comes_back_as_that_kind_at_4x() -> None:
    up = vsr.Upscaler.from_pretrained(engine="bicubic")
    rgb = _picture()
    want = BicubicUpscaler().process(rgb)

    out = up(rgb)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, want)

    floats = up(rgb.astype(np.float64) / 255.0)
    assert floats.dtype == np.float64 and floats.shape == (48, 64, 3)
    np.testing.assert_array_equal(np.rint(floats * 255).astype(np.uint8), want)

    image = up(Image.fromarray(rgb).convert("RGBA"))  # any mode in, RGB out
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 48)
    np.testing.assert_array_equal(np.asarray(image), want)

    chw = torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32) / 255.0  # torchvision's convention
    tensor = up(chw)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (3, 48, 64)
    np.testing.assert_array_equal((tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), want)
    assert tuple(up(chw[None].to(torch.float16)).shape) == (1, 3, 48, 64)
    assert up(chw[None].to(torch.float16)).dtype == torch.float16
    as_bytes = up(torch.from_numpy(rgb).permute(2, 0, 1))
    assert as_bytes.dtype == torch.uint8
    np.testing.assert_array_equal(as_bytes.permute(1, 2, 0).numpy(), want)


def _refuse_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.from_numpy`` refusing a read-only array. torch takes one with the warning "The given NumPy
    array is not writable..." on the user's terminal, once per process: so once it has been given, no later
    test would see it again, and this makes each test see it."""
    original = torch.from_numpy

    def strict(array: np.ndarray) -> torch.Tensor:
        assert array.flags.writeable, "a read-only array reached torch.from_numpy (torch warns on the terminal)"
        return original(array)

    monkeypatch.setattr(torch, "from_numpy", strict)


def test_a_read_only_picture_upscales_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.asarray of a PIL image is read-only (so is a frame that vsr stream resized after its source
    changed size): the bicubic engine passed it to torch, which warned on the terminal."""
    rgb = _picture()
    read_only = np.asarray(Image.fromarray(rgb))
    assert not read_only.flags.writeable
    up = vsr.Upscaler.from_pretrained(engine="bicubic")
    _refuse_read_only(monkeypatch)
    np.testing.assert_array_equal(up(read_only), BicubicUpscaler().process(rgb.copy()))


@pytest.mark.parametrize("picture, words", [
    (np.zeros((8, 8), np.uint8), "(H, W, 3)"),
    (np.zeros((8, 8, 4), np.uint8), "RGBA"),
    (np.zeros((8, 8, 3), np.int32), "uint8"),
    (torch.zeros(8, 8, 3), "(3, H, W)"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
    ([[0, 0, 0]], "numpy array"),
])
def test_a_picture_of_the_wrong_shape_or_kind_is_refused_with_the_fix(picture: object, words: str) -> None:
    up = vsr.Upscaler.from_pretrained(engine="bicubic")
    with pytest.raises((ValueError, TypeError), match=re.escape(words)):
        up(picture)


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(vsr.OptionsError, match="precision"):
        vsr.Upscaler.from_pretrained(engine="bicubic", precision="fp8")


@pytest.mark.slow
def test_the_fixture_model_through_the_api_gives_the_golden_frames_and_reset_starts_over(fixture_dir: Path,
                                                                                       model: dict) -> None:
    frames = lr_frames(fixture_dir)[:3]
    up = vsr.Upscaler.from_pretrained(model["model_id"], seed=FIXTURE_SEED,
                                      **{k: v for k, v in model.items() if k != "model_id"})
    assert up.describe()["engine"] == "stream-diffvsr" and up.seed == FIXTURE_SEED
    streamed = [up(lr) for lr in frames]
    for index, (out, want) in enumerate(zip(streamed, expected_frames(fixture_dir))):
        diff = np.abs(out.astype(np.int16) - want)  # the recording's tolerance (tests/test_model_parity.py)
        assert diff.max() <= 1 and (diff > 0).sum() <= 10, f"frame {index + 1}"
    assert up.frames == 3
    up.reset()  # without it, frame 0 would meet frame 2's context and the fourth noise draw
    assert up.frames == 0
    read_only = np.asarray(Image.fromarray(frames[0]))  # the diffusion engine takes it without a warning too
    with pytest.MonkeyPatch.context() as patch:
        _refuse_read_only(patch)
        np.testing.assert_array_equal(up(read_only), streamed[0])


@pytest.mark.slow
def test_another_stream_on_the_shared_engine_makes_the_next_frame_start_over(fixture_dir: Path,
                                                                             model: dict) -> None:
    frames = lr_frames(fixture_dir)
    up = vsr.Upscaler.from_pretrained(seed=5, **model)
    other = vsr.Upscaler.from_pretrained(seed=6, **model)
    assert other._processor is up._processor  # one engine for the process
    up(frames[0])
    other(frames[0])  # another stream in between: up's temporal context is gone
    again = up(frames[1])
    np.testing.assert_array_equal(again, vsr.Upscaler.from_pretrained(seed=5, **model)(frames[1]))


def test_wait_false_drops_the_picture_while_the_engine_is_busy() -> None:
    up = vsr.Upscaler.from_pretrained(engine="bicubic")
    rgb = _picture()
    lock = engine_lock(up._processor)
    busy = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock:
            busy.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert busy.wait(10)
        assert up(rgb, wait=False) is None and up.frames == 0
    finally:
        release.set()
        holder.join(10)
    assert up(rgb, wait=False).shape == (48, 64, 3) and up.frames == 1


def _decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.slow
def test_frames_through_the_api_equal_the_frames_of_a_file_job(tmp_path: Path, model: dict) -> None:
    """Same clip, same seed: ``upscale_file`` (the file job, lossless FFV1) and ``Upscaler`` frame by frame agree
    exactly, and the file job reports its progress and returns its verification report."""
    clip = make_video(tmp_path / "clip.mp4", 48, 32, Fraction(25), 3, audio="aac")
    events: list = []
    report = vsr.upscale_file(clip, tmp_path / "up.mkv", on_progress=events.append, codec="ffv1", seed=42,
                              scene_cuts=False, tmp_dir=tmp_path / "tmp", **model)
    assert report.ok and "audio" in report.to_text().lower()
    assert [e.stage for e in events][-1] == "done" and max(e.done for e in events) == 3
    up = vsr.Upscaler.from_pretrained(seed=42, **model)
    with media.FrameReader(clip) as reader:
        ours = [up(frame.rgb) for frame in reader]
    theirs = _decoded(tmp_path / "up.mkv")
    assert len(theirs) == len(ours) == 3
    for index, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {index}")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        vsr.upscale_file(clip, tmp_path / "up.mkv", codec="ffv1", **model)


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path: Path) -> None:
    """docs/python-api.md includes docs/examples/python_api.py verbatim; it runs as written."""
    page = (ROOT_DIR / "docs" / "python-api.md").read_text(encoding="utf-8")
    example = (ROOT_DIR / "docs" / "examples" / "python_api.py").read_text(encoding="utf-8")
    assert example.strip() in page
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(25), 6, audio="aac")
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR), "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache"),
           "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp")}
    out = subprocess.run([sys.executable, str(ROOT_DIR / "docs" / "examples" / "python_api.py"), str(clip)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "(48, 64, 3) -> (192, 256, 3)" in out.stdout
    assert media.probe(tmp_path / "clip-4x.mp4").video.width == 256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clip-4x.mp4", "clip.mp4", "tmp"]
