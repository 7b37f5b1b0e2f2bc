"""Shared test fixtures and the gpu marker's skip rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _shared_dir() -> Path:
    """``../shared`` beside the checkout (as CI lays it out). A clone made elsewhere from a local
    checkout (``git clone /work/main /tmp/x``) finds it beside the checkout it was cloned from."""
    beside = ROOT.parent / "shared"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(
            ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()
    except OSError:
        origin = ""
    if origin and Path(origin).is_dir() and (Path(origin).resolve().parent / "shared").is_dir():
        return Path(origin).resolve().parent / "shared"
    return beside


SHARED = _shared_dir()
FIXTURE_DIR = SHARED / "fixtures" / "stream-diffvsr-tiny"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The golden Stream-DiffVSR tiny fixture (../shared/fixtures/stream-diffvsr-tiny)."""
    if not FIXTURE_DIR.is_dir():
        pytest.fail(f"The golden fixture is missing at {FIXTURE_DIR}; CI and developers have it under ../shared.")
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def gradio_videos() -> Path:
    """Real sample videos that ship inside the gradio wheel."""
    import gradio

    return Path(gradio.__file__).resolve().parent / "media_assets" / "videos"


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Programs (the CLI's main) configure the root logger; give the next test the logging it had."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def torch_two_threads():
    """Run a module's model tests with 2 intra-op threads, as the golden fixture was recorded."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
