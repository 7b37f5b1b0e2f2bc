"""Shared test fixtures and the gpu marker's skip rule."""

from __future__ import annotations

from pathlib import Path

import pytest

import fixture_files

ROOT = Path(__file__).resolve().parent.parent


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
    """The golden Stream-DiffVSR tiny fixture (tests/fixtures/stream-diffvsr-tiny, in the repository;
    its RAFT weights are made on first use, see tests/fixture_files.py)."""
    try:
        return fixture_files.fixture_dir()
    except fixture_files.FixtureError as error:
        pytest.fail(str(error))


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
