"""The parallel test run's plan (tests/conftest.py): a module with a shared fixture of its own runs on one
pytest-xdist worker, so its fixture is made once; the other modules spread test by test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import shared_fixture_modules

ROOT = Path(__file__).resolve().parent.parent


def test_the_modules_with_shared_fixtures_are_found() -> None:
    shared = shared_fixture_modules()
    assert {"tests/test_bench_gpu.py", "tests/test_model_stream.py", "tests/test_app_browser.py"} <= shared
    assert "tests/test_media_probe.py" not in shared and "tests/test_parallel_runs.py" not in shared


def _workers(*args: str) -> dict[str, str]:
    """Test name -> the xdist worker that ran it, for a two-worker run of ``args``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                           "no:cacheprovider", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    return {m[2]: m[1] for m in re.finditer(r"\[(gw\d)\] \[ *\d+%\] PASSED \S+?::(\S+)", done.stdout)}


def test_a_shared_fixture_module_runs_on_one_worker_and_the_rest_spread() -> None:
    """Two cheap tests of the GPU benchmark's module (whose 90-second smoke fixture must run once) on the
    same worker; two independent tests of another module on both (pytest-xdist 3.8 with pytest 9.2 split
    the first pair: the xdist_group mark no longer reaches the scheduler)."""
    ran = _workers("tests/test_bench_gpu.py", "tests/test_media_probe.py", "-k",
                   "docs_block or device_command or test_gradio_sample_videos")
    grouped = {name: worker for name, worker in ran.items() if not name.startswith("test_gradio_sample_videos")}
    spread = {name: worker for name, worker in ran.items() if name.startswith("test_gradio_sample_videos")}
    assert len(grouped) == 2 and len(set(grouped.values())) == 1, ran
    assert len(spread) >= 2 and len(set(spread.values())) == 2, ran
