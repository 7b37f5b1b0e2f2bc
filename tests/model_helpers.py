"""Helpers shared by the tests of the model (tests/test_model_*.py): fixture frames and loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FIXTURE_SEED = 1234  # the fixture's noise generator seed (FIXTURE.md section 1)


def lr_frames(fixture_dir: Path) -> list[np.ndarray]:
    """The six 48x32 low-res fixture frames, (32, 48, 3) uint8 RGB."""
    return [np.array(Image.open(fixture_dir / "lr" / f"frame_{i:04d}.png").convert("RGB")) for i in range(1, 7)]


def expected_frames(fixture_dir: Path) -> list[np.ndarray]:
    """The six expected 192x128 outputs, (128, 192, 3) uint8 RGB."""
    return [np.array(Image.open(fixture_dir / "expected" / f"frame_{i:04d}.png").convert("RGB")) for i in range(1, 7)]


def intermediate(fixture_dir: Path, name: str) -> np.ndarray:
    return np.load(fixture_dir / "intermediates" / name)
