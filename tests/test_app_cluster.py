"""The web app in front of a Ray cluster (STREAM_DIFFVSR_CLUSTER): a local two-worker Ray head started
by the test (``ray start --head --block`` on the loopback address, stopped at the end), the app launched
on a free port and pointed at it, two jobs submitted at once through gradio_client: they run at the same
time (their running intervals overlap) and both results verify."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

import media
from app_harness import AppServer, free_port
from media_factory import make_video

pytest.importorskip("ray", reason="the cluster extra (requirements-cluster.txt) is not installed")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
RATE = Fraction(25)
START_S = 180.0
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
"""Ray takes 127.0.0.1 as this machine's address (as on a laptop) instead of its network address; the
cluster and the app share a token of this test's own (Ray's token authentication)."""


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    base = tmp_path_factory.mktemp("ray-head")
    port = free_port()
    env = {**os.environ, **LOOPBACK, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    log = (base / "ray.log").open("wb")
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=4",
         "--num-gpus=0", "--include-dashboard=false", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
         "--block"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_S
    try:
        while time.monotonic() < deadline:
            assert head.poll() is None, (base / "ray.log").read_text(errors="replace")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"the Ray head did not listen within {START_S:.0f} s")
        yield f"127.0.0.1:{port}"
    finally:
        # `ray start --block` stops its cluster when it gets SIGTERM (in 2 s); SIGTERM to its whole process
        # group instead took 33 s, the processes it stops being busy with their own signals meanwhile.
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # nothing of the cluster outlives the test
            os.killpg(head.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_dir, ray_head):
    app = AppServer(base=tmp_path_factory.mktemp("app-cluster"), fixture_dir=fixture_dir,
                    cache_dir=tmp_path_factory.getbasetemp() / "app-cluster-calibration",
                    extra_env={"STREAM_DIFFVSR_CLUSTER": ray_head, "PYTHONPATH": str(ROOT), **LOOPBACK}).start()
    yield app
    app.stop()


def test_two_jobs_run_at_once_on_two_workers_and_both_verify(server, tmp_path: Path) -> None:
    clips = [make_video(tmp_path / f"clip{n}.mp4", 64, 48, RATE, 75, audio="aac") for n in range(2)]
    running: dict[int, list[float]] = {0: [], 1: []}
    results: dict[int, tuple] = {}

    def submit(n: int) -> None:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / f"downloads{n}"))
        job = client.submit(handle_file(str(clips[n])), "bicubic", "4x", "", "", 4, "3", "h264", 18, True,
                            api_name="/upscale")
        for _update in job:  # the handler's updates come only while it runs (none while queued)
            running[n].append(time.monotonic())
        results[n] = job.result(timeout=300)
        running[n].append(time.monotonic())

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=400)
    assert not any(t.is_alive() for t in threads), server.log()[-3000:]
    assert set(results) == {0, 1}, server.log()[-3000:]
    (start0, end0), (start1, end1) = (min(running[0]), max(running[0])), (min(running[1]), max(running[1]))
    assert start0 < end1 and start1 < end0, f"the jobs ran one after the other: {running}"
    for n in (0, 1):
        status, _slider, _video, download, report, _notice, _engine = results[n]
        assert status.startswith("Done in") and "75 frames" in status, status
        assert report.startswith("### Verification passed")
        info = media.probe(Path(download["value"]))
        assert info.video.frame_count == 75 and (info.video.width, info.video.height) == (256, 192)
        assert [a.codec for a in info.audio] == ["aac"]
    log = server.log()
    assert "jobs run on the Ray cluster at 127.0.0.1" in log and "2 worker(s)" in log
    assert log.count("vsr.job.parallel: joined 1 pieces") == 2, "each job came back from a worker and was joined here"
