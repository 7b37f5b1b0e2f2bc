"""The page's example videos: two different real clips that ship inside the gradio wheel, captioned.

gradio's ``media_assets/videos`` holds two distinct pictures: the night-side Earth turning (``b.mp4``,
and the same footage again as ``world.mp4``, ``b.avi`` and ``muted_b.mp4``) and a "Thanks for
watching" title card (``a.mp4``). The examples are one of each.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("b.mp4", "Earth at night · 480x270, 5 s, sound"),
    ("a.mp4", "Title card · 1920x1080, 7 s, sound"),
)
"""(file in gradio's media_assets/videos, caption shown under it)."""


def folder() -> Path:
    """gradio's folder of sample videos."""
    import gradio

    return Path(gradio.__file__).resolve().parent / "media_assets" / "videos"


def example_videos() -> list[tuple[Path, str]]:
    """(path, caption) of each example that exists in this gradio install."""
    return [(folder() / name, caption) for name, caption in EXAMPLES if (folder() / name).is_file()]


def example_dirs() -> list[Path]:
    """Folders holding the example videos (the server must be allowed to serve them)."""
    return sorted({path.parent for path, _ in example_videos()})
