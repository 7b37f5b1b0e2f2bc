"""tests/network_install.py: a pip install cut by the network is run again; any other failure is not."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.network_install import ATTEMPTS, RESUME_RETRIES, is_network_error, pip_install

# What pip 26 printed when CI's connection was cut in the middle of gradio's wheel (2026-12-07).
CUT_DOWNLOAD = """\
  WARNING: Connection interrupted while downloading.
  WARNING: Attempting to resume incomplete download (27.0 MB/31.4 MB, attempt 5)
error: incomplete-download

x Download failed after 6 attempts because not enough bytes were received (27.0 MB/31.4 MB)
note: This is an issue with network connectivity, not pip.
"""
NO_SUCH_VERSION = """\
ERROR: Could not find a version that satisfies the requirement gradio==99.0 (from versions: 6.31.0)
ERROR: No matching distribution found for gradio==99.0
"""


def _fake_python(tmp_path: Path, failures: int, message: str) -> tuple[Path, Path]:
    """A stand-in for ``python`` whose ``-m pip install`` fails ``failures`` times with ``message``, then
    succeeds; each run appends its arguments to the returned log."""
    runs = tmp_path / "runs.log"
    (tmp_path / "message.txt").write_text(message, encoding="utf-8")
    script = tmp_path / "python"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"runs = open({str(runs)!r}, 'a+')\n"
        "runs.write(' '.join(sys.argv[1:]) + '\\n'); runs.seek(0); count = len(runs.readlines())\n"
        f"if count <= {failures}:\n"
        f"    sys.stderr.write(open({str(tmp_path / 'message.txt')!r}).read()); sys.exit(1)\n",
        encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, runs


def test_a_cut_download_is_run_again_until_pip_succeeds(tmp_path: Path) -> None:
    python, runs = _fake_python(tmp_path, failures=ATTEMPTS - 1, message=CUT_DOWNLOAD)
    pauses: list[float] = []
    result = pip_install(python, ["-q", "-r", "requirements-app.txt"], pause_s=7, sleep=pauses.append)
    assert result.returncode == 0
    lines = runs.read_text().splitlines()
    assert len(lines) == ATTEMPTS and pauses == [7] * (ATTEMPTS - 1)
    assert all(line == f"-m pip install --resume-retries {RESUME_RETRIES} -q -r requirements-app.txt" for line in lines)


def test_an_older_pip_is_called_without_resume_retries(tmp_path: Path) -> None:
    python, runs = _fake_python(tmp_path, failures=0, message="")
    pip_install(python, ["-q", "pip==26.3"], resume_retries=None)
    assert runs.read_text().splitlines() == ["-m pip install -q pip==26.3"]


def test_a_failure_that_is_not_the_network_fails_at_once_with_pips_words(tmp_path: Path) -> None:
    python, runs = _fake_python(tmp_path, failures=ATTEMPTS, message=NO_SUCH_VERSION)
    with pytest.raises(AssertionError, match="No matching distribution found for gradio==99.0"):
        pip_install(python, ["gradio==99.0"], sleep=pytest.fail)
    assert len(runs.read_text().splitlines()) == 1


def test_a_network_that_stays_down_fails_after_the_last_run_and_says_so(tmp_path: Path) -> None:
    python, runs = _fake_python(tmp_path, failures=ATTEMPTS, message=CUT_DOWNLOAD)
    with pytest.raises(AssertionError, match=f"(?s)network error {ATTEMPTS} times.*incomplete-download"):
        pip_install(python, ["gradio==6.31.0"], sleep=lambda _: None)
    assert len(runs.read_text().splitlines()) == ATTEMPTS


@pytest.mark.parametrize("output, network", [
    (CUT_DOWNLOAD, True),
    ("WARNING: Retrying (Retry(total=4)) after connection broken by 'ReadTimeoutError(...)'\n"
     "ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='files.pythonhosted.org', "
     "port=443): Max retries exceeded with url: /packages/x.whl", True),
    (NO_SUCH_VERSION, False),
    ("ERROR: Cannot install torch==2.14.1 because these package versions have conflicting dependencies.", False),
])
def test_network_errors_are_told_from_requirement_errors(output: str, network: bool) -> None:
    assert is_network_error(output) is network


def test_the_pip_of_the_image_accepts_resume_retries(tmp_path: Path) -> None:
    """The option exists in the pip that runs it (the Dockerfile pins pip 26.3; --resume-retries is 25.1+)."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--resume-retries", str(RESUME_RETRIES),
                             "--dry-run", "--no-index", "--no-deps", "--quiet", str(tmp_path / "absent")],
                            capture_output=True, text=True, timeout=120)
    assert "no such option" not in result.stderr, result.stderr
