"""The cluster extra is optional: one pin of Ray everywhere it is named, and without it the flags that
need it say which extra to install and how (the plain CLI and app start without Ray)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from fractions import Fraction
from pathlib import Path

from tests.media_factory import make_video

ROOT = Path(__file__).resolve().parent.parent


def _ray_pin(text: str) -> list[str]:
    return re.findall(r"^ray==(\S+)$", text, flags=re.M)


def test_ray_has_one_pin_in_the_extra_the_tests_and_pyproject() -> None:
    cluster = _ray_pin((ROOT / "requirements-cluster.txt").read_text())
    tests = _ray_pin((ROOT / "requirements-test.txt").read_text())
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cluster"]
    assert len(cluster) == 1 and tests == cluster and extra == [f"ray=={cluster[0]}"]
    assert "ray" not in (ROOT / "requirements-app.txt").read_text(), "Ray stays optional for the app and the CLI"


def test_without_ray_the_cluster_flags_name_the_extra_and_its_install_command(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, Fraction(25), 4, audio=None)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]),
           "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp"), "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache")}
    for command in (["upscale", str(src), "-o", str(tmp_path / "out.mkv"), "--workers", "2"],
                    ["batch", str(src), "-o", str(tmp_path / "out"), "--cluster"]):
        done = subprocess.run([sys.executable, "-m", "vsr", *command, "--engine", "bicubic"], capture_output=True,
                              text=True, env=env, timeout=300, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "pip install -r requirements-cluster.txt" in done.stderr and "Ray" in done.stderr
        assert not (tmp_path / "out.mkv").exists() and not (tmp_path / "out").exists()
    plain = subprocess.run([sys.executable, "-m", "vsr", "upscale", str(src), "-o", str(tmp_path / "plain.mkv"),
                            "--engine", "bicubic", "--codec", "ffv1"], capture_output=True, text=True, env=env,
                           timeout=300, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
