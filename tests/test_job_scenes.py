"""Scene cuts are decided frame by frame, at the frame where the new shot starts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from media_factory import pattern
from vsr.job.scenes import MIN_SCENE_FRAMES, SceneCutDetector


def _smooth(index: int, seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A smooth picture drifting 1 px per frame (a calm shot); ``seed`` picks the shot."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, phase = rng.uniform(0.02, 0.08, 3)
    base = rng.uniform(40, 200, 3)
    rgb = np.stack([base[c] + 40 * np.sin(fx * (x + index) + fy * y + phase * (c + 1)) for c in range(3)], axis=2)
    return rgb.clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("cut_at", [MIN_SCENE_FRAMES, 23, 40])
def test_a_hard_cut_is_reported_exactly_at_its_frame(cut_at: int) -> None:
    detector = SceneCutDetector(27.0, Fraction(30000, 1001))
    cuts = [i for i in range(50) if detector.is_cut(_smooth(i, 1 if i < cut_at else 2))]
    assert cuts == [cut_at]


def test_two_cuts_and_the_minimum_scene_length() -> None:
    detector = SceneCutDetector(27.0, Fraction(25))
    shots = [1] * 20 + [2] * 5 + [3] * 25  # the cut to shot 3 comes 5 frames after the previous one
    cuts = [i for i, shot in enumerate(shots) if detector.is_cut(_smooth(i, shot))]
    assert cuts == [20]  # the second cut is within MIN_SCENE_FRAMES of the first, as PySceneDetect does


def test_the_threshold_decides() -> None:
    frames = [pattern(64, 48, i, 1 if i >= 20 else 0) for i in range(30)]
    strict = SceneCutDetector(45.0, Fraction(30))
    assert [i for i, f in enumerate(frames) if strict.is_cut(f)] == [20]
    never = SceneCutDetector(200.0, Fraction(30))
    assert not any(never.is_cut(f) for f in frames)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold must be positive"):
        SceneCutDetector(0, Fraction(30))
    with pytest.raises(ValueError, match="HWC uint8 RGB"):
        SceneCutDetector(27, Fraction(30)).is_cut(np.zeros((8, 8), np.uint8))
