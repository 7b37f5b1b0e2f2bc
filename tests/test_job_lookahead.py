"""The job's one-frame look-ahead: an engine with ``prefetch`` hears of frame k+1 just before it gets frame k."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from job_support import RecordingEngine, plan
from media_factory import make_video
from vsr.job import run
from vsr.job.runner import _with_next
from vsr.options import build_options


class PrefetchingEngine(RecordingEngine):
    """Records ("prefetch", frame) and keeps the frames it was shown and given."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[np.ndarray] = []
        self.given: list[np.ndarray] = []

    def prefetch(self, rgb: np.ndarray) -> None:
        self.calls.append(("prefetch", self.processed + 1))
        self.shown.append(rgb.copy())

    def process(self, rgb: np.ndarray) -> np.ndarray:
        self.given.append(rgb.copy())
        return super().process(rgb)


def test_with_next_pairs_each_item_with_its_successor() -> None:
    assert list(_with_next(iter([1, 2, 3]))) == [(1, 2), (2, 3), (3, None)]
    assert list(_with_next([])) == []


def test_the_job_announces_each_next_frame_before_processing(tmp_path: Path) -> None:
    src = make_video(tmp_path / "cut.mp4", 64, 48, Fraction(30), 24, audio=None, scene_cut_at=16)
    options = build_options({"engine": "bicubic", "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache",
                             "seed": 5, "scene_threshold": 45, "preset": "ultrafast"}, env={})
    engine = PrefetchingEngine()
    job = plan(src, options, processor=engine)
    engine.calls.clear()
    engine.shown.clear()
    engine.given.clear()
    result = run(job, tmp_path / "out.mp4", processor=engine)
    assert result.frames == 24 and result.scene_cuts == (16,)
    calls = [c for c in engine.calls if c[0] != "start"]
    for k in range(23):
        at = calls.index(("process", k))
        assert calls[at - 1] == ("prefetch", k + 1), calls[at - 2:at + 1]
    assert ("prefetch", 24) not in calls  # nothing after the last frame
    assert calls.index(("reset", 16)) < calls.index(("prefetch", 17)) < calls.index(("process", 16))
    for shown, given in zip(engine.shown, engine.given[1:]):
        np.testing.assert_array_equal(shown, given)
