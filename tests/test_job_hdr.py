"""A 10-bit HDR source through the job and both engines: more than 256 levels survive, the default
codec keeps the depth (HEVC Main 10, said in the plan) and h264 is allowed with a warning (issue 20)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import media
from hdr_factory import MAX_CLL, distinct_levels, gradient, make_hdr_video
from job_support import plan
from media_factory import make_video
from vsr.job import run
from vsr.model.bicubic import BicubicUpscaler
from vsr.options import build_options

W, H = 64, 48


@pytest.fixture
def options(tmp_path: Path):
    def make(**overrides):
        values = {"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache", "seed": 5}
        values.update(overrides)
        return build_options(values, env={})

    return make


@pytest.fixture
def hdr10(tmp_path: Path) -> Path:
    return make_hdr_video(tmp_path / "hdr10.mkv", W, H, frames=3)


def test_default_codec_for_a_deep_hdr_source_is_hevc_main_10_and_the_plan_says_so(hdr10: Path, options,
                                                                                   tmp_path: Path) -> None:
    job = plan(hdr10, options())
    assert job.options.codec == "hevc" and job.container_suffix == ".mp4"
    text = job.to_text()
    assert "HDR10 (PQ, BT.2020, 10-bit): kept" in text
    assert "hevc" in text and "10-bit" in text


def test_default_codec_for_an_8_bit_source_stays_h264(tmp_path: Path, options) -> None:
    src = make_video(tmp_path / "sdr.mp4", W, H, Fraction(24), 3, audio=None)
    job = plan(src, options())
    assert job.options.codec == "h264" and "HDR" not in job.to_text() and "8-bit" not in job.to_text()


def test_explicit_h264_on_a_deep_source_is_allowed_with_a_warning(hdr10: Path, options) -> None:
    job = plan(hdr10, options(codec="h264"))
    assert job.options.codec == "h264"
    (note,) = [n for n in job.notes if "8-bit" in n]
    assert "10-bit" in note and "hevc" in note


@pytest.mark.parametrize(("codec", "name", "want"), [("auto", "up.mp4", "hevc"), ("prores", "up.mov", "prores"),
                                                     ("ffv1", "up.mkv", "ffv1")])
def test_bicubic_job_keeps_10_bits_and_hdr10(hdr10: Path, options, tmp_path: Path, codec: str, name: str,
                                             want: str) -> None:
    out = tmp_path / name
    result = run(plan(hdr10, options(codec=codec), output=out), out)  # segments joined: the job's own path
    assert result.frames == 3
    v = media.probe(out).video
    assert (v.codec, v.bit_depth, v.color_transfer, v.color_primaries) == (want, 10, "smpte2084", "bt2020")
    assert v.hdr.content_light is not None and (v.hdr.content_light.max_cll, v.hdr.content_light.max_fall) == MAX_CLL
    assert v.hdr.mastering == media.probe(hdr10).video.hdr.mastering
    with media.FrameReader(out) as frames:
        first = next(iter(frames)).rgb
    assert first.dtype == np.uint16 and distinct_levels(first) > 256


def test_bicubic_engine_keeps_16_bit_frames() -> None:
    frame = gradient(W, H)
    out = BicubicUpscaler().process(frame)
    assert out.dtype == np.uint16 and out.shape == (4 * H, 4 * W, 3)
    assert distinct_levels(out) > 256
    # the same arithmetic as for 8 bits: a frame of 8-bit values scaled by 257 gives the 8-bit result x 257 (+-1)
    eight = (frame // 257).astype(np.uint8)
    assert np.abs(BicubicUpscaler().process((eight.astype(np.uint16) * 257)).astype(np.int64)
                  - BicubicUpscaler().process(eight).astype(np.int64) * 257).max() <= 257


def test_fixture_model_keeps_more_than_256_levels(fixture_dir: Path, model_threads) -> None:
    from vsr.model.engines import load_engine

    engine = load_engine("stream-diffvsr", model_id=str(fixture_dir / "model"),
                         flow_weights=fixture_dir / "raft_large.safetensors", device="cpu", precision="fp32", seed=7)
    engine.start_stream(7)
    outputs = [engine.process(gradient(48, 32, i)) for i in range(2)]
    assert all(o.dtype == np.uint16 and o.shape == (128, 192, 3) for o in outputs)
    assert distinct_levels(outputs[-1]) > 256


def test_the_page_report_says_the_browser_preview_cannot_show_hdr(hdr10: Path) -> None:
    from types import SimpleNamespace

    from vsr.web import texts

    report = SimpleNamespace(ok=True, path=Path("/x/clip_4x.mp4"), checks=())
    info = media.probe(hdr10)
    with_preview = SimpleNamespace(report=report, scene_cuts=(), preview=Path("/x/clip_4x.preview.mp4"))
    text = texts.report_markdown(with_preview, SimpleNamespace(temporal=False, info=info))
    assert "cannot show this HDR10 (PQ, BT.2020, 10-bit) video as HDR" in text
    plays = SimpleNamespace(report=report, scene_cuts=(), preview=None)  # no preview: nothing to say
    assert "HDR" not in texts.report_markdown(plays, SimpleNamespace(temporal=False, info=info))
