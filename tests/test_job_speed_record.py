"""A finished job records its measured speed for later plans; a cached estimate never waits for a job."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from media_factory import make_video
from job_support import plan
from vsr import job
from vsr.job import estimate as calibration
from vsr.model.bicubic import BicubicUpscaler
from vsr.model.engines import engine_lock
from vsr.options import build_options


class PacedEngine(BicubicUpscaler):
    """Bicubic that takes ``first`` seconds on a stream's first frame and ``steady`` on the others."""

    def __init__(self) -> None:
        super().__init__()
        self.first = 0.0
        self.steady = 0.0
        self._fresh = True

    def start_stream(self, seed: int | None = None) -> int:
        self._fresh = True
        return super().start_stream(seed)

    def reset(self) -> None:
        self._fresh = True
        super().reset()

    def process(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(self.first if self._fresh else self.steady)
        self._fresh = False
        return super().process(rgb)


def _options(tmp_path: Path):
    return build_options({"engine": "bicubic", "cache_dir": str(tmp_path / "cache"), "tmp_dir": str(tmp_path / "t"),
                          "scene_cuts": False}, env={})


def test_a_finished_job_records_its_steady_speed_and_later_plans_use_it(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 6, audio=None)
    engine = PacedEngine()
    options = _options(tmp_path)
    before = plan(clip, options, processor=engine)  # calibrated while the engine has no delay

    engine.first, engine.steady = 1.0, 0.05  # now slow, and much slower on a stream's first frame
    job.run(before, tmp_path / "out.mp4", processor=engine)

    after = plan(clip, options, processor=engine)
    assert after.calibration.cached and not after.calibration.provisional
    # The median of the 5 steady frames (each sleeps 0.05 s); the first frame (1 s) does not count. On the
    # CPU the media threads' share of each frame is left out (vsr.job.pipeline.engine_seconds_alone).
    assert 0.025 <= after.seconds_per_frame < 1.0 and after.seconds_per_frame != before.seconds_per_frame
    assert after.stages.engine == after.seconds_per_frame
    assert after.estimate_seconds == pytest.approx(after.stages.total(6))
    points = dict(after.calibration.points)
    assert points[64 * 48] == after.seconds_per_frame


def test_a_cached_estimate_does_not_wait_for_the_job_holding_the_engine(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 3, audio=None)
    engine = PacedEngine()
    options = _options(tmp_path)
    first = plan(clip, options, processor=engine)  # measures and caches
    planned: list = []
    with engine_lock(engine):  # a job is running on the engine
        worker = threading.Thread(target=lambda: planned.append(plan(clip, options, processor=engine)))
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "the plan waited for the engine lock although its estimate was cached"
    assert planned[0].calibration.cached and planned[0].seconds_per_frame == first.seconds_per_frame
