"""`vsr frames` (the reference's frame-folder interface) and `vsr upscale` with the tiny fixture model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import media
import vsr.model.engines
from job_support import RecordingEngine, decode, files_under, isolate_environment
from media_factory import make_video
from vsr.model.bicubic import BicubicUpscaler
from vsr.cli import main
from vsr.options import build_options


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def test_frames_one_stream_per_sequence_named_like_the_inputs(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    rng = np.random.default_rng(0)
    inputs = {
        "seq_a/f1.png": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
        "seq_a/f2.png": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
        "seq_a/f10.png": rng.integers(0, 256, (12, 16, 3), dtype=np.uint8),
        "seq_b/0001.bmp": rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
        "seq_b/0002.bmp": rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
    }
    for name, rgb in inputs.items():
        _write(tmp_path / "in" / name, rgb)
    (tmp_path / "in" / "seq_a" / "notes.txt").write_text("not a frame")
    engine = RecordingEngine()
    monkeypatch.setattr(vsr.model.engines, "get_processor", lambda options: engine)
    code = main(["frames", "--in_path", str(tmp_path / "in"), "--out_path", str(tmp_path / "out"), "--seed", "7"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    outputs = sorted(str(p.relative_to(tmp_path / "out")) for p in files_under(tmp_path / "out"))
    assert outputs == ["seq_a/f1.png", "seq_a/f10.png", "seq_a/f2.png", "seq_b/0001.png", "seq_b/0002.png"]
    reference = BicubicUpscaler()
    for name, rgb in inputs.items():
        out = _png(tmp_path / "out" / Path(name).with_suffix(".png"))
        assert np.array_equal(out, reference.process(rgb))
    # Each sequence is one stream, started with the seed, never reset; frames in natural name order.
    assert engine.calls == [("start", 7), ("process", 0), ("process", 1), ("process", 2),
                            ("start", 7), ("process", 0), ("process", 1)]
    assert "Sequence: seq_a: 3 frames" in captured.out and "(seed 7)" in captured.out


def test_frames_refuses_mixed_sizes_and_missing_folders(tmp_path: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")
    assert main(["frames", "--in_path", str(tmp_path / "nope"), "--out_path", str(tmp_path / "out")]) == 3
    assert "nope: no such folder" in capsys.readouterr().err
    _write(tmp_path / "in" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path / "in" / "b.png", np.zeros((8, 10, 3), np.uint8))
    assert main(["frames", "--in_path", str(tmp_path / "in"), "--out_path", str(tmp_path / "out")]) == 3
    assert "b.png: the frame is 10x8 but the sequence's first frame is 8x8" in capsys.readouterr().err


@pytest.mark.slow
def test_frames_on_the_fixture_reproduces_the_reference(tmp_path: Path, fixture_dir: Path, monkeypatch,
                                                        capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    code = main([
        "frames", "--in_path", str(fixture_dir / "lr"), "--out_path", str(tmp_path / "out"),
        "--model_id", str(fixture_dir / "model"), "--num_inference_steps", "4", "--seed", "1234",
        "--flow-weights", str(fixture_dir / "raft_large.safetensors"), "--device", "cpu", "--precision", "fp32",
    ])
    assert code == 0, capsys.readouterr().err
    for index in range(1, 7):
        got = _png(tmp_path / "out" / "lr" / f"frame_{index:04d}.png").astype(int)
        want = _png(fixture_dir / "expected" / f"frame_{index:04d}.png").astype(int)
        assert got.shape == want.shape == (128, 192, 3)
        assert np.abs(got - want).max() <= 1, f"frame {index} differs from the reference by more than one step"


@pytest.mark.slow
def test_upscale_a_clip_with_the_fixture_model(tmp_path: Path, fixture_dir: Path, monkeypatch, capsys) -> None:
    isolate_environment(monkeypatch, tmp_path)
    vsr.model.engines.clear_processors()
    src = make_video(tmp_path / "in.mkv", 32, 24, 24, 3, audio="aac")
    out = tmp_path / "out.mkv"
    model = ["--model-id", str(fixture_dir / "model"), "--flow-weights", str(fixture_dir / "raft_large.safetensors")]
    code = main(["upscale", str(src), "-o", str(out), "--engine", "stream-diffvsr", *model, "--device", "cpu",
                 "--precision", "fp32", "--seed", "1234", "--codec", "ffv1", "--scene-cuts", "off"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Engine:   stream-diffvsr on cpu (fp32, 4 steps)" in captured.out and "seed 1234" in captured.out
    info = media.probe(out)
    assert (info.video.width, info.video.height, info.video.frame_count) == (128, 96, 3)
    assert [a.codec for a in info.audio] == ["aac"]
    # The job streams the frames through the model exactly as one continuous stream would. The engine
    # is the one the job used (loaded once per process), started again on a fresh stream.
    engine = vsr.model.engines.get_processor(build_options({
        "engine": "stream-diffvsr", "model_id": str(fixture_dir / "model"), "device": "cpu", "precision": "fp32",
        "flow_weights": str(fixture_dir / "raft_large.safetensors")}))
    assert engine.describe()["model"] == str(fixture_dir / "model")
    engine.start_stream(1234)
    for lo, hi in zip(decode(src), decode(out), strict=True):
        assert np.array_equal(hi.rgb, engine.process(lo.rgb))
    assert files_under(tmp_path / "tmp") == []
    vsr.model.engines.clear_processors()
