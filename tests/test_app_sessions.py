"""A long-running server keeps a bounded number of visitors' sessions (issue 20, section 4).

Gradio keeps a ``SessionState`` per visitor (a copy of the page's layout and its values, about 0.3 MB
here, bench/soak.py) until 10,000 sessions by default, so the server grew with every new visitor.
The app bounds it (``app.SESSION_CAPACITY``, passed to ``launch``). The page is launched in a
subprocess with a small bound; seven visitors come (each a gradio_client with its own session) and
the sessions Gradio still holds are counted there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app_harness import ROOT, free_port

pytestmark = pytest.mark.slow  # launches the page (a few seconds)

VISITORS = """
import json, sys
import app
from gradio_client import Client
from vsr.options import build_options
from vsr.web import sessions

app.SESSION_CAPACITY = 3
settings = build_options({"engine": "bicubic"})
jobs = sessions.WebJobs(settings)
demo = app.build_demo(settings, jobs=jobs)
arguments = app.launch_arguments(settings)
demo.launch(**arguments, prevent_thread_lock=True, quiet=True)
answers = []
for _ in range(7):
    client = Client(f"http://127.0.0.1:{arguments['server_port']}/", verbose=False)
    answers.append(client.predict(api_name="/cancel"))
    client.close()
print(json.dumps({"capacity": arguments["state_session_capacity"], "answers": answers,
                  "sessions": len(demo.state_holder.session_data), "used": len(demo.state_holder.time_last_used),
                  "running": jobs.active.running()}))
demo.close()
"""


def test_the_server_keeps_only_the_newest_sessions(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_DIFFVSR_", "GRADIO_"))}
    env.update(PYTHONPATH=str(ROOT), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(free_port()),
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
               STREAM_DIFFVSR_OUTPUT_DIR=str(tmp_path / "out"), STREAM_DIFFVSR_TMP_DIR=str(tmp_path / "tmp"),
               STREAM_DIFFVSR_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", VISITORS], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert counts["answers"] == ["Nothing is running."] * 7
    assert counts["capacity"] == 3
    assert counts["sessions"] <= 3 and counts["used"] <= 3  # not one per visitor since the start
    assert counts["running"] == 0
