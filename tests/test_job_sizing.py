"""Output sizes: exactly 4x, or a preset short side with the width from the display aspect ratio."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsr.job.errors import TargetTooLarge
from vsr.job.resize import resize_rgb
from vsr.job.sizing import even, output_size


def test_4x_is_exact_for_any_size() -> None:
    size = output_size(101, 57, 101, 57, 0, None)
    assert (size.model_width, size.model_height) == (404, 228)
    assert (size.width, size.height) == (404, 228) and not size.resized


@pytest.mark.parametrize(
    ("coded", "display", "rotation", "target", "expected"),
    [
        ((640, 360), (640, 360), 0, 720, (1280, 720)),
        ((640, 360), (640, 360), 0, 1080, (1920, 1080)),
        ((640, 360), (640, 360), 0, 1440, (2560, 1440)),
        ((480, 270), (480, 270), 0, 1080, (1920, 1080)),  # exactly 4x: no resize
        ((336, 192), (336, 192), 0, 720, (1260, 720)),
        ((720, 480), (853, 480), 0, 1080, (1920, 1080)),  # anamorphic DVD, 16:9 shown: square pixels out
        ((640, 480), (640, 480), 0, 720, (960, 720)),
        ((854, 480), (854, 480), 0, 720, (1282, 720)),  # 1280.9 -> nearest even
        ((360, 640), (360, 640), 0, 1080, (1080, 1920)),  # portrait: the preset is the short side (the width)
        ((640, 360), (360, 640), 90, 1080, (1920, 1080)),  # rotated phone video: coded landscape, shown portrait
    ],
)
def test_presets(coded, display, rotation, target, expected) -> None:
    size = output_size(*coded, *display, rotation, target)
    assert (size.width, size.height) == expected
    assert (size.model_width, size.model_height) == (coded[0] * 4, coded[1] * 4)
    assert size.resized == ((size.width, size.height) != (coded[0] * 4, coded[1] * 4))


def test_a_target_above_4x_is_refused_with_the_reason() -> None:
    with pytest.raises(TargetTooLarge, match=r"1080p output needs 4\.50x .* exactly 4x \(at most 960p\)"):
        output_size(320, 240, 320, 240, 0, 1080)
    assert isinstance(TargetTooLarge("x"), ValueError)


@settings(max_examples=40, deadline=None)
@given(
    w=st.integers(8, 2000), h=st.integers(8, 2000),
    sar=st.sampled_from([Fraction(1), Fraction(32, 27), Fraction(8, 9), Fraction(4, 3)]),
    rotation=st.sampled_from([0, 90, 180, 270]),
    target=st.sampled_from([720, 1080, 1440, 2160]),
)
def test_presets_keep_the_aspect_even_and_within_4x(w: int, h: int, sar: Fraction, rotation: int, target: int) -> None:
    dw, dh = max(1, round(w * sar)), h
    if rotation in (90, 270):
        dw, dh = dh, dw
    if target > 4 * min(dw, dh):
        with pytest.raises(TargetTooLarge):
            output_size(w, h, dw, dh, rotation, target)
        return
    size = output_size(w, h, dw, dh, rotation, target)
    shown = (size.height, size.width) if rotation in (90, 270) else (size.width, size.height)
    assert min(shown) == target
    assert size.width % 2 == 0 and size.height % 2 == 0
    # The long side is the display aspect ratio's, rounded to the nearest even number.
    long_exact = Fraction(target * max(dw, dh), min(dw, dh))
    assert abs(max(shown) - long_exact) <= 1


def test_even_rounds_to_the_nearest_even_number() -> None:
    assert [even(x) for x in (0, 1, 2.9, 3, 1280.9, 1281, 1282.99)] == [2, 2, 2, 4, 1280, 1282, 1282]


def test_resize_is_lanczos_and_exact_in_size() -> None:
    import numpy as np
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    out = resize_rgb(rgb, 90, 54)
    assert out.shape == (54, 90, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.asarray(Image.fromarray(rgb).resize((90, 54), Image.Resampling.LANCZOS)))
    assert resize_rgb(rgb, 128, 96) is rgb
