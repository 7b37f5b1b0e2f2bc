"""Start the web app (``python app.py``) in a subprocess for the app tests, and stop it cleanly.

``AppServer`` picks a free port, points the app at the golden tiny model and at per-test folders
through the environment (the way an operator configures it), waits until the page answers, and on
``stop`` terminates the process and hands back its log for failure messages.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The free port was taken by another process before the app bound it."""


@dataclass
class AppServer:
    """One running app. ``dirs`` holds the folders it writes to (outputs, tmp, gradio cache)."""

    base: Path
    fixture_dir: Path
    cache_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def output_dir(self) -> Path:
        return self.base / "outputs"

    @property
    def tmp_dir(self) -> Path:
        return self.base / "tmp"

    @property
    def gradio_dir(self) -> Path:
        return self.base / "gradio"

    @property
    def log_path(self) -> Path:
        return self.base / "app.log"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_DIFFVSR_", "GRADIO_"))}
        env.update({
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "GRADIO_TEMP_DIR": str(self.gradio_dir),
            "HF_HUB_OFFLINE": "1",
            # One thread per pytest-xdist worker (tests/conftest.py), else 2: more threads than the server's
            # share of the cores wait on each other.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
            "MKL_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
            "STREAM_DIFFVSR_MODEL_ID": str(self.fixture_dir / "model"),
            "STREAM_DIFFVSR_FLOW_WEIGHTS": str(self.fixture_dir / "raft_large.safetensors"),
            "STREAM_DIFFVSR_DEVICE": "cpu",
            "STREAM_DIFFVSR_PRECISION": "fp32",
            "STREAM_DIFFVSR_TMP_DIR": str(self.tmp_dir),
            "STREAM_DIFFVSR_OUTPUT_DIR": str(self.output_dir),
            "STREAM_DIFFVSR_CACHE_DIR": str(self.cache_dir),
            "STREAM_DIFFVSR_LOG_LEVEL": "INFO",
        })
        env.update(self.extra_env)
        return env

    def start(self) -> "AppServer":
        """Start on a free port; if another process (a parallel test worker) took the port between
        ``free_port`` and the app's bind, start again on a new one (three tries)."""
        for attempt in range(3):
            try:
                return self._start_once()
            except PortTaken:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> "AppServer":
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")], cwd=self.base, env=self.environment(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "Cannot find empty port" in self.log():
                    raise PortTaken(f"port {self.port} was taken before the app could bind it:\n{self.log()}")
                raise RuntimeError(f"the app exited with {self.process.returncode} while starting:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app did not answer on {self.url} within {START_TIMEOUT_S:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def job_dirs(self) -> list[Path]:
        """The job folders the app made under its output folder."""
        return sorted(self.output_dir.glob("job-*")) if self.output_dir.is_dir() else []

    def leftovers(self) -> list[Path]:
        """Every file or folder in the job temp folder (empty when no job is running)."""
        return sorted(self.tmp_dir.rglob("*")) if self.tmp_dir.is_dir() else []
