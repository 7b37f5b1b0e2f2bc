"""The web app limits glibc's malloc arenas itself (make app, python app.py, the Space), as the Docker image does
with MALLOC_ARENA_MAX: bench/soak.py showed the RSS of a long-running server rising ~0.9 MB per job without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = (
    "import app, sys\n"
    "from vsr import environment\n"
    "calls = []\n"
    "environment.limit_malloc_arenas = lambda *a: calls.append(a) or True\n"
    "app.build_demo = lambda settings: (_ for _ in ()).throw(SystemExit(f'limited={len(calls)}'))\n"
    "app.main()\n"
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True, timeout=300)


def test_limiting_the_arenas_takes_effect_on_glibc_and_a_set_variable_wins() -> None:
    code = "from vsr import environment; print(environment.limit_malloc_arenas())"
    assert _run(code).stdout.strip() == "True"
    assert _run(code, MALLOC_ARENA_MAX="4").stdout.strip() == "False"


def test_the_app_limits_the_arenas_before_it_serves() -> None:
    result = _run(PROBE)
    assert "limited=1" in result.stderr, result.stderr[-2000:]
