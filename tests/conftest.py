"""Shared test fixtures, the gpu marker's skip rule and the plan for parallel runs (pytest-xdist)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import settings

import fixture_files

ROOT = Path(__file__).resolve().parent.parent

# Hypothesis keeps no example database: nothing is written into the checkout (.hypothesis/), and parallel
# workers share no files. Every run draws its examples afresh, as CI's fresh clone does anyway.
settings.register_profile("no-database", database=None)
settings.load_profile("no-database")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets one core: one torch thread per worker, and the same for the
    programs a test starts that do not set their own (``make test`` runs ``-n 2`` on 2 cores)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    elif config.pluginmanager.hasplugin("xdist") and config.getvalue("dist") == "loadgroup":  # the controller
        config.pluginmanager.register(ModuleGroups(), "module-groups")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _slow_modules_first(items)
    _skip_gpu_tests_without_cuda(items)


SHARED_FIXTURE = re.compile(r"""scope\s*=\s*["'](module|class)["']""")


def shared_fixture_modules(folder: Path = ROOT / "tests") -> set[str]:
    """The test modules (as node ids: ``tests/test_x.py``) that define a module- or class-scoped fixture of
    their own: an app server, a browser, a loaded engine, a benchmark run."""
    return {f"{folder.name}/{path.name}" for path in folder.glob("test_*.py")
            if SHARED_FIXTURE.search(path.read_text(encoding="utf-8"))}


class ModuleGroups:
    """pytest-xdist's ``--dist loadgroup`` with our groups: a module with a shared fixture of its own goes to
    one worker as a whole, so the fixture is made once; the other tests are spread one by one.

    The ``xdist_group`` mark cannot do this with pytest 9.2: pytest-xdist 3.8 puts the group into
    ``item._nodeid``, which pytest 9.2 no longer reads, so every group was silently split (the GPU
    benchmark's 90-second smoke run was made on both workers)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: object) -> object | None:
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadGroupScheduling

        shared = shared_fixture_modules()

        class ByModule(LoadGroupScheduling):
            def _split_scope(self, nodeid: str) -> str:
                module = nodeid.split("::")[0]
                return module if module in shared else nodeid

        return ByModule(config, log)


def _slow_modules_first(items: list[pytest.Item]) -> None:
    """Modules with slow or browser tests run first (``--no-loadscope-reorder`` keeps this order), so the
    last minutes of a parallel run are many short tests that spread evenly over the workers, not one long one.
    The sort is stable: each module stays together and in its own order."""
    heavy = {item.nodeid.split("::")[0] for item in items
             if item.get_closest_marker("slow") or item.get_closest_marker("browser")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in heavy)


def _skip_gpu_tests_without_cuda(items: list[pytest.Item]) -> None:
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


@pytest.fixture(scope="session", autouse=True)
def _temp_files_in_pytests_folder(tmp_path_factory: pytest.TempPathFactory):
    """This process's temp files go to pytest's folder for the run (which pytest prunes), not the system's:
    gradio_client downloads each file through a new folder in the temp folder and leaves it there, empty.
    Only this process: the servers and programs under test keep the system's temp folder (and Ray, which
    reads TMPDIR, keeps its short socket paths)."""
    import tempfile

    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.getbasetemp())
    yield
    tempfile.tempdir = before


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
def model_threads():
    """A module's model tests run with 2 intra-op threads, as the golden fixture was recorded, when the
    run is serial. Under pytest-xdist (one worker per core) they keep the worker's one thread: two
    threads on a core that the other worker also uses wait on each other (a model module took 6x as long
    that way), and the tests allow the few-ulp difference that the thread count makes (FIXTURE.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(before if os.environ.get("PYTEST_XDIST_WORKER") else 2)
    yield
    torch.set_num_threads(before)
