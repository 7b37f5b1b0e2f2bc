"""``SceneCutDetector``: PySceneDetect's content detector fed one frame at a time, decided causally.

The streaming job must decide *before* upscaling a frame whether that frame starts a new shot (a hard
cut makes the warped previous output meaningless, so the model's temporal context is reset there).
PySceneDetect's ``ContentDetector`` compares each frame with the previous one in HSV (plus edges) and
reports a cut when the weighted mean change reaches ``threshold``. Its default flash filter ("merge")
may report a cut several frames late; the job cannot wait, so the detector is built with the
"suppress" filter, which answers for the frame it was just given: a cut at this frame, or none. A cut
closer than ``min_scene_frames`` to the previous cut (or to the first frame) is ignored, as
PySceneDetect does by default.
"""

from __future__ import annotations

import logging
import pickle
from fractions import Fraction

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.detectors import ContentDetector
from scenedetect.scene_manager import compute_downscale_factor

from media.colour import to_8bit

logger = logging.getLogger(__name__)

MIN_SCENE_FRAMES = 15
"""A detected cut closer than this many frames to the previous one (or to the first frame) is ignored."""


class SceneCutDetector:
    """Say, frame by frame, whether a frame starts a new shot.

    Feed every frame of one stream in order to ``is_cut(rgb)``; the first frame is never a cut.
    Frames are HWC uint8 RGB (values 0..255); they are shrunk to about 256 pixels wide first, as
    PySceneDetect's own scene manager does, so the cost is negligible next to upscaling.
    """

    def __init__(self, threshold: float, rate: Fraction, min_scene_frames: int = MIN_SCENE_FRAMES) -> None:
        if not threshold > 0:
            raise ValueError(f"scene threshold must be positive; got {threshold!r}. PySceneDetect's default is 27.")
        if rate <= 0:
            raise ValueError(f"frame rate must be positive; got {rate!r}.")
        self.threshold = float(threshold)
        self._rate = Fraction(rate)
        self._detector = ContentDetector(
            threshold=self.threshold,
            min_scene_len=min_scene_frames,
            filter_mode=FlashFilter.Mode.SUPPRESS,
        )
        self._count = 0

    def save_state(self) -> bytes:
        """Everything the detector knows of the frames so far (the last frame's statistics, the flash
        filter, the frame count), as bytes for a checkpoint; ``load_state`` goes on from there."""
        return pickle.dumps((self.threshold, self._rate, self._detector, self._count), protocol=5)

    def load_state(self, state: bytes) -> None:
        """Go on after the frame ``save_state`` was called at (same threshold and rate only)."""
        threshold, rate, detector, count = pickle.loads(state)
        if (threshold, rate) != (self.threshold, self._rate):
            raise ValueError(f"The scene detector state is for threshold {threshold:g} at {rate} fps, not "
                             f"{self.threshold:g} at {self._rate} fps.")
        self._detector, self._count = detector, count

    def is_cut(self, rgb: np.ndarray) -> bool:
        """True when ``rgb`` (HWC uint8 RGB, or uint16 from a deep source, which is judged on its 8-bit
        rounding: detection only; same size every call) starts a new shot."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"scene detection needs HWC uint8 RGB frames; got shape {rgb.shape}, dtype {rgb.dtype}.")
        small = _shrink(to_8bit(rgb))
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        timecode = FrameTimecode(self._count, fps=self._rate)
        self._count += 1
        cuts = self._detector.process_frame(timecode, bgr)
        return any(cut.frame_num == timecode.frame_num for cut in cuts) and timecode.frame_num > 0


def _shrink(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    factor = compute_downscale_factor(width)
    if factor <= 1:
        return rgb
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
