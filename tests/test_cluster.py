"""One video on several Ray workers (vsr.job.parallel, vsr.job.cluster, ``vsr upscale --workers``).

One local two-worker Ray for the module (starting Ray takes seconds), on the loopback address, stopped
at the end. Clips are tiny; the fixture model runs at 32x24 with a fixed seed and FFV1 (lossless), so
a part's frames can be compared with a single run's exactly.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.job_support import decode, plan
from tests.media_factory import make_video
from vsr.job import run
from vsr.options import build_options

ray = pytest.importorskip("ray", reason="the cluster extra (requirements-cluster.txt) is not installed")

from vsr.job import parallel  # noqa: E402
from vsr.job.cluster import connect  # noqa: E402
from vsr.job.parts import Part, Survey, plan_parts  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
RATE = Fraction(25)
SEED = 7


@pytest.fixture(scope="module")
def cluster():
    connected = connect(None, 2, cpus_here=2, gpus_here=0)
    try:
        yield connected
    finally:
        connected.close()


@pytest.fixture(autouse=True)
def one_thread():
    """Single runs here use one torch thread, as each worker of the two-core cluster does: on a CPU, float
    sums over another number of threads can round a value differently (1 level of 255 at most)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def options(tmp_path: Path, fixture_dir: Path):
    def make(**overrides):
        values = {"engine": "stream-diffvsr", "model_id": str(fixture_dir / "model"),
                  "flow_weights": str(fixture_dir / "raft_large.safetensors"), "device": "cpu", "precision": "fp32",
                  "tmp_dir": tmp_path / "tmp", "cache_dir": tmp_path / "cache", "seed": SEED, "codec": "ffv1",
                  "checkpoint_seconds": 0}
        values.update(overrides)
        return build_options(values, env={})

    return make


def _frames(path: Path) -> list[np.ndarray]:
    return [f.rgb for f in decode(path)]


def _plan(src: Path, options, output: Path, **overrides):
    """The job of ``options`` planned without timing the model (the bicubic plan, the model's options)."""
    return dataclasses.replace(plan(src, options(engine="bicubic"), output=output), options=options(**overrides))


def _single(job, output: Path) -> list[np.ndarray]:
    run(job, output)
    return _frames(output)


def test_parts_start_at_a_near_scene_cut_and_warm_up_elsewhere() -> None:
    found = Survey(tuple(Fraction(i, 25) for i in range(100)), cuts=(47,))
    parts = plan_parts(_FakeJob(), found, 25, warmup=4)
    assert [(p.warm, p.first, p.end) for p in parts] == [(0, 0, 25), (21, 25, 47), (47, 47, 72), (68, 72, 100)]
    assert [p.exact for p in parts] == [True, False, True, False]
    assert parts[2].cuts == (47,) and parts[1].cuts == ()
    assert all(isinstance(p, Part) for p in parts) and sum(p.frames for p in parts) == 100


class _FakeJob:
    """What ``plan_parts`` reads of a plan: the media info and trim for the time line."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        video = SimpleNamespace(variable_rate=False, avg_rate=RATE, frame_duration=1 / RATE, time_base=Fraction(1, 1000),
                                duration=Fraction(4), start_time=Fraction(0))
        self.info = SimpleNamespace(video=video, path=Path("clip.mp4"))
        self.trim_start = None


def test_two_workers_at_a_hard_cut_give_exactly_the_single_runs_frames(tmp_path: Path, options, cluster) -> None:
    src = make_video(tmp_path / "cut.mp4", 32, 24, RATE, 18, audio="aac", scene_cut_at=16)
    job = _plan(src, options, tmp_path / "single.mkv")
    whole = _single(job, tmp_path / "single.mkv")
    parts = parallel.plan_parallel(job, 2, segment_seconds=16 / 25, warmup=4)
    assert [(p.warm, p.first, p.end) for p in parts.parts] == [(0, 0, 16), (16, 16, 18)]  # the cut, no warm-up
    result = parallel.run_parallel(parts, cluster, tmp_path / "two.mkv", tmp_path / "two.ckpt")
    assert result.report.ok and result.frames == 18 and result.scene_cuts == (16,)
    two = _frames(tmp_path / "two.mkv")
    assert len(two) == len(whole) == 18
    for index, (a, b) in enumerate(zip(whole, two)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {index}")
    assert not (tmp_path / "two.ckpt").exists(), "the job's folder is removed once the file is verified"


def test_without_a_cut_the_warm_up_keeps_the_deviation_small_and_the_file_verifies(tmp_path: Path, options,
                                                                                     cluster) -> None:
    src = make_video(tmp_path / "flat.mp4", 32, 24, RATE, 8, audio=None)
    job = _plan(src, options, tmp_path / "single.mkv")
    whole = _single(job, tmp_path / "single.mkv")
    shared = tmp_path / "shared"
    shared.mkdir()
    parts = parallel.plan_parallel(job, 2, segment_seconds=4 / 25, warmup=2, shared_dir=shared)
    assert [(p.warm, p.first, p.end) for p in parts.parts] == [(0, 0, 4), (2, 4, 8)]
    result = parallel.run_parallel(parts, cluster, tmp_path / "two.mkv", tmp_path / "two.ckpt")
    assert result.report.ok and result.frames == 8
    two = _frames(tmp_path / "two.mkv")
    for index in range(4):  # the first part is a single run's beginning
        np.testing.assert_array_equal(whole[index], two[index], err_msg=f"frame {index}")
    deviation = [float(np.abs(whole[i].astype(int) - two[i]).mean()) for i in range(4, 8)]
    assert max(deviation) < 3.0, deviation  # bench/results/segments.json: K=2 on the fixture, mean < 3 levels
    assert list(shared.iterdir()) == [], "the shared parts are removed once the file is verified"


def test_a_killed_worker_costs_only_its_part_and_the_file_equals_an_undisturbed_runs(tmp_path: Path, options,
                                                                                      cluster) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, RATE, 10, audio="aac")
    job = _plan(src, options, tmp_path / "calm.mkv", checkpoint_seconds=0.001)  # a checkpoint after every frame
    parts = parallel.plan_parallel(job, 2, segment_seconds=5 / 25, warmup=2)
    calm = parallel.run_parallel(parts, cluster, tmp_path / "calm.mkv", tmp_path / "calm.ckpt")
    assert calm.report.ok
    pids = ray.get([actor.pid.remote() for actor in cluster.actors], timeout=60)
    killed: list[int] = []

    def kill_once(event) -> None:
        if event.stage == "upscaling" and event.done >= 2 and not killed:
            killed.append(pids[1])
            os.kill(pids[1], signal.SIGKILL)

    result = parallel.run_parallel(parts, cluster, tmp_path / "kill.mkv", tmp_path / "kill.ckpt", on_progress=kill_once)
    assert killed and result.report.ok and result.frames == 10
    new_pids = ray.get([actor.pid.remote() for actor in cluster.actors], timeout=60)
    assert new_pids[1] != pids[1], "Ray restarted the killed worker"
    for index, (a, b) in enumerate(zip(_frames(tmp_path / "calm.mkv"), _frames(tmp_path / "kill.mkv"))):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {index}")


def test_a_cancel_stops_every_worker_and_resume_finishes_the_same_file(tmp_path: Path, options, cluster) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, RATE, 16, audio=None)
    job = _plan(src, options, tmp_path / "out.mkv", engine="bicubic", checkpoint_seconds=0.001)
    parts = parallel.plan_parallel(job, 2, segment_seconds=4 / 25, warmup=0)
    cancel = threading.Event()
    from vsr.job.errors import JobCancelled

    with pytest.raises(JobCancelled) as stopped:  # Ctrl-C as soon as the workers run
        parallel.run_parallel(parts, cluster, tmp_path / "out.mkv", tmp_path / "ckpt", cancel=cancel,
                              on_progress=lambda event: cancel.set() if event.stage == "upscaling" else None)
    assert stopped.value.checkpoint == tmp_path / "ckpt" and not (tmp_path / "out.mkv").exists()
    result = parallel.run_parallel(parts, cluster, tmp_path / "out.mkv", tmp_path / "ckpt", resume=True)
    assert result.report.ok and result.frames == 16
    single = run(job, tmp_path / "single.mkv")
    for a, b in zip(_frames(single.output), _frames(result.output)):
        np.testing.assert_array_equal(a, b)


def test_the_cli_upscales_on_two_workers(tmp_path: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 32, 24, RATE, 12, audio="aac")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp"),
           "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vsr", "upscale", str(src), "-o", str(tmp_path / "out.mkv"),
                           "--engine", "bicubic", "--codec", "ffv1", "--workers", "2", "--segment-seconds", "0.2"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Parts:    3 on 2 worker(s)" in done.stdout and "through the Ray object store" in done.stdout
    assert "Done:     12 frames" in done.stdout
    assert "of 12" in done.stderr and "worker(s) busy" in done.stderr, "one progress line for the whole job"
    assert "(raylet)" not in done.stderr and "Started a local Ray" not in done.stderr, "Ray's own logs stay quiet"
    assert time.monotonic() - started < 600
