"""The estimate's media measurement (``vsr.job.pipeline``): it works wherever the writer works, over
sizes, pixel aspects and codecs, and a measurement that fails never fails the plan."""

from __future__ import annotations

import io
import logging
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import media
from job_support import plan
from media import CODEC_SPECS, EncodeSettings
from media.packets import flush
from media_factory import make_video, pattern
from vsr.job import pipeline
from vsr.model.bicubic import BicubicUpscaler
from vsr.options import build_options

PIXEL_ASPECTS = st.tuples(st.integers(1, 100), st.integers(1, 100)).map(lambda t: Fraction(*t)).filter(
    lambda sar: Fraction(1, 4) <= sar <= 4)


@pytest.mark.slow  # five encoders, five sizes each
@pytest.mark.parametrize("codec", list(CODEC_SPECS))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sar=PIXEL_ASPECTS, width=st.sampled_from([8, 11, 32, 40, 64, 96]), height=st.sampled_from([8, 24, 48, 64]),
       rate=st.sampled_from([Fraction(30000, 1001), Fraction(25), Fraction(60)]))
@example(sar=Fraction(128, 117), width=176, height=144, rate=Fraction(30000, 1001))  # QCIF "carphone"
@example(sar=Fraction(1), width=40, height=24, rate=Fraction(25))  # 160 wide, its crop 64x64
def test_the_encode_sample_measures_every_codec_size_and_pixel_aspect(codec: str, sar: Fraction, width: int,
                                                                     height: int, rate: Fraction) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = make_video(Path(tmp) / "s.mp4", width, height, rate, 12, audio=None, sample_aspect_ratio=sar,
                         pix_fmt="yuv444p" if width % 2 or height % 2 else "yuv420p")
        costs = pipeline.measure_media(media.probe(src), EncodeSettings(codec, preset="ultrafast" if codec == "hevc"
                                                                        else None))
    assert costs.measured
    assert costs.encode.per_pixel > 0 and costs.verify.per_pixel > 0 and costs.decode.per_pixel > 0


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_a_very_short_hevc_stream_gets_decoding_times_a_muxer_accepts(frames: int) -> None:
    # libx265 takes its B-frame delay from the stream's third picture: one or two pictures had their
    # decoding times from an uninitialised field (3280168836610928007 for pts 0 in one process).
    container = av.open(io.BytesIO(), "w", format="matroska")
    with container:
        stream = container.add_stream("libx265", rate=25, options={"x265-params": "log-level=error"})
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        sent = []
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(64, 64, index), format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            sent += stream.encode(frame)
        packets = sent + flush(stream, frames)
        times = [(int(p.pts), int(p.dts)) for p in packets]
        for packet in packets:
            container.mux(packet)
    assert sorted(pts for pts, _ in times) == list(range(frames))
    dts = [dts for _, dts in times]
    assert dts == sorted(dts) and all(-2 <= dts <= pts for pts, dts in times)


def test_a_failed_measurement_leaves_the_estimate_to_the_calibration(tmp_path: Path, monkeypatch, caplog) -> None:
    def broken(*args: object) -> tuple[float, float]:
        raise av.error.ArgumentError(22, "Invalid argument")

    src = make_video(tmp_path / "in.mp4", 32, 24, 25, 6, audio=None)
    options = build_options({"engine": "bicubic", "cache_dir": str(tmp_path / "cache"), "codec": "hevc"})
    monkeypatch.setattr(pipeline, "_encode_sample", broken)
    with caplog.at_level(logging.WARNING, logger="vsr.job.pipeline"):
        job_plan = plan(src, options, processor=BicubicUpscaler())
    assert not job_plan.media.measured
    assert job_plan.stages.encode == 0 and job_plan.stages.engine > 0 and job_plan.estimate_seconds > 0
    (record,) = [r for r in caplog.records if r.name == "vsr.job.pipeline"]
    assert record.levelno == logging.WARNING and "in.mp4" in record.getMessage()
    assert "Invalid argument" in record.getMessage() and "engine only" in record.getMessage()
