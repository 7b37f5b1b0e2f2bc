"""Time estimates: measured on the real engine, cached per device/engine, extrapolated by pixel count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vsr.job import estimate as calibration
from vsr.model.bicubic import BicubicUpscaler
from vsr.job.estimate import Calibration, calibrate


def test_estimates_interpolate_and_extrapolate_linearly_in_pixels() -> None:
    cal = Calibration("k", ((1000, 1.0), (2000, 1.5), (4000, 2.0)), cached=True)
    assert cal.seconds_per_frame(50, 20) == 1.0  # measured point: exact
    assert cal.seconds_per_frame(30, 50) == pytest.approx(1.25)  # between 1000 and 2000 px
    assert cal.seconds_per_frame(100, 80) == pytest.approx(3.0)  # beyond: slope of the two largest (0.25 s/kpx)
    assert cal.seconds_per_frame(10, 50) == pytest.approx(0.75)  # below: slope of the two smallest
    assert cal.seconds_per_frame(1, 1) >= 0.0


class CountingEngine(BicubicUpscaler):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def process(self, rgb):
        self.sizes.append(rgb.shape[:2])
        return super().process(rgb)


def test_calibration_runs_the_engine_once_then_comes_from_the_cache(tmp_path: Path) -> None:
    engine = CountingEngine()
    first = calibrate(engine, tmp_path, 160, 120)
    assert not first.cached
    measured = {(h, w) for h, w in engine.sizes}
    # Both base sizes, then the job's shape on the way up to its own size, because bicubic is cheap there.
    assert measured == {(24, 32), (48, 64), (60, 80), (120, 160)}
    # A warm-up, then 4 sizes, each in rounds of an untimed first frame and TIMED_FRAMES timed ones (a cheap
    # engine gets more rounds, up to MAX_ROUNDS, so that one slow moment does not decide).
    per_round = 1 + calibration.TIMED_FRAMES
    assert 2 + 4 * per_round <= len(engine.sizes) <= 2 + 4 * calibration.MAX_ROUNDS * per_round
    assert len(engine.sizes) % per_round == 2
    assert {p for p, _ in first.points} == {32 * 24, 64 * 48, 80 * 60, 160 * 120}
    assert all(s > 0 for _, s in first.points)

    engine.sizes.clear()
    again = calibrate(engine, tmp_path, 160, 120)
    assert again.cached and engine.sizes == []
    assert again.points == first.points
    cache = json.loads((tmp_path / calibration.CACHE_FILE).read_text())
    (key,) = cache
    assert json.loads(key)["engine"] == "bicubic" and "hardware" in json.loads(key) and "seed" not in json.loads(key)
    assert [p.name for p in tmp_path.iterdir()] == [calibration.CACHE_FILE]  # no temporary file left


def test_an_expensive_real_size_is_extrapolated_not_measured(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(calibration, "REAL_SIZE_BUDGET", 0.0)
    engine = CountingEngine()
    cal = calibrate(engine, tmp_path, 1920, 1080)
    assert {(h, w) for h, w in engine.sizes} == {(24, 32), (48, 64)}
    assert cal.seconds_per_frame(1920, 1080) >= cal.seconds_per_frame(64, 48)


def test_a_damaged_cache_is_measured_again(tmp_path: Path) -> None:
    (tmp_path / calibration.CACHE_FILE).write_text("{not json")
    engine = CountingEngine()
    cal = calibrate(engine, tmp_path, 64, 48)
    assert not cal.cached and engine.sizes
    assert json.loads((tmp_path / calibration.CACHE_FILE).read_text())


def test_calibration_waits_for_a_job_using_the_same_engine(tmp_path: Path) -> None:
    import threading

    from vsr.model.engines import engine_lock

    engine = CountingEngine()
    done = threading.Event()
    with engine_lock(engine):  # a job is streaming through this engine
        worker = threading.Thread(target=lambda: (calibrate(engine, tmp_path, 32, 24), done.set()))
        worker.start()
        assert not done.wait(0.5) and engine.sizes == []  # it did not touch the engine's temporal state
    worker.join(30)
    assert done.is_set() and engine.sizes


@pytest.mark.parametrize("slow_base", [0.004, 0.05])  # 64x48 as it is, and measured 12x too slow (a busy moment)
def test_the_way_up_to_a_large_size_stops_where_it_gets_expensive(tmp_path: Path, monkeypatch, slow_base) -> None:
    """Sizes of the job's shape are measured on the way up while the line says the next is cheap, so a
    large size is estimated from nearby points; a slow small measurement is corrected, not multiplied."""
    per_pixel = 1.3e-6  # the engine's real cost: 2.7 s per 1920x1080 frame, over the 2 s budget
    monkeypatch.setattr(calibration, "_cached_points", lambda cache_dir, key: {768: 0.001, 3072: slow_base})
    measured: list[tuple[int, int]] = []
    monkeypatch.setattr(calibration, "measure", lambda engine, w, h: measured.append((w, h)) or w * h * per_pixel)
    cal = calibrate(CountingEngine(), tmp_path, 1920, 1080)
    assert measured == [(120, 67), (240, 135), (480, 270), (960, 540)]  # not 1920x1080 itself: too expensive
    assert cal.seconds_per_frame(1920, 1080) == pytest.approx(1920 * 1080 * per_pixel)
    assert calibration._rungs(64, 48, 700) == [(32, 24), (64, 48)] and calibration._rungs(64, 48, 3072) == []
