"""``pip install`` from the package index for tests that build a fresh environment, tolerant of the network.

The fresh-venv test (tests/test_deploy_runtime.py) installs requirements-app.txt the way the image's builder
stage does, and what this machine's disk lacks comes from PyPI. A connection cut in the middle of a wheel
(pip: "error: incomplete-download ... This is an issue with network connectivity, not pip") is not a fault
of the project, yet it failed a whole CI run once. So: pip resumes a cut download more times than its
default, and a run that still ends in a network error is run again (pip keeps what it already installed)
after a pause, a bounded number of times. Any other failure fails at once, with pip's own words.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from os import PathLike
from typing import Callable

log = logging.getLogger(__name__)

RESUME_RETRIES = 20  # pip's --resume-retries: resumes of one cut download (pip's default is 5)
ATTEMPTS = 3  # whole `pip install` runs, when a run ends in a network error
PAUSE_S = 10.0  # between runs: a cut connection often comes back within seconds
# What pip prints when the network, not the requirements, made it fail.
NETWORK_ERROR = re.compile(
    r"incomplete-download|issue with network connectivity|ConnectionError|ConnectTimeout|ReadTimeout"
    r"|Connection (?:aborted|reset|refused|broken)|Max retries exceeded|Temporary failure in name resolution"
)


def is_network_error(pip_output: str) -> bool:
    """Whether a failed pip run's output says the network failed it (so running it again may succeed)."""
    return NETWORK_ERROR.search(pip_output) is not None


def pip_install(python: str | PathLike[str], args: list[str], *, cwd: str | PathLike[str] | None = None,
                timeout: float = 1200, resume_retries: int | None = RESUME_RETRIES, attempts: int = ATTEMPTS,
                pause_s: float = PAUSE_S, sleep: Callable[[float], None] = time.sleep) -> subprocess.CompletedProcess:
    """``python -m pip install --resume-retries N *args``, run again after a network error; asserts success.

    ``resume_retries=None`` leaves the option out, for a pip older than 25.1 (a new venv's bundled pip, which
    then installs the pinned one). ``timeout`` bounds each run. The assertion message carries the end of
    pip's output and, after network errors, how many runs were made.
    """
    resume = [] if resume_retries is None else ["--resume-retries", str(resume_retries)]
    command = [str(python), "-m", "pip", "install", *resume, *map(str, args)]
    for attempt in range(1, attempts + 1):
        result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout)
        if result.returncode == 0:
            return result
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        if not is_network_error(output):
            raise AssertionError(f"{command} failed:\n{output}")
        if attempt < attempts:
            log.warning("pip install hit a network error (run %d of %d); running it again in %.0f s",
                        attempt, attempts, pause_s)
            sleep(pause_s)
    raise AssertionError(f"{command} failed with a network error {attempts} times in a row "
                         f"(the package index was unreachable, not a fault of the requirements):\n{output}")
