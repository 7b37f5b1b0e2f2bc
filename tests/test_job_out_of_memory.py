"""Running out of memory is a job error that names the frame, the device and the fix, not a crash.

An engine wrapper runs out of memory at frame k (torch.OutOfMemoryError as CUDA raises it, the CPU
allocator's RuntimeError, MemoryError); through ``vsr.job.run`` and through the real CLI it
becomes ``OutOfMemory`` (a ``JobFailed``, exit code 5) and leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vsr.model.engines
from job_support import OutOfMemoryEngine, files_under, isolate_environment, job_threads, open_files_under, plan
from media_factory import ROOT_DIR, make_video
from vsr.cli import EXIT_JOB, main
from vsr.job import JobFailed
from vsr.job.errors import OutOfMemory
from vsr.job.memory import is_out_of_memory, out_of_memory
from vsr.job.runner import run
from vsr.options import build_options

CPU_ALLOCATOR = RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                             "you tried to allocate 26542080000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch) -> None:
    isolate_environment(monkeypatch, tmp_path, STREAM_DIFFVSR_ENGINE="bicubic")


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
                                   CPU_ALLOCATOR, MemoryError(), RuntimeError("MPS backend out of memory")])
def test_out_of_memory_errors_are_recognised(error: BaseException) -> None:
    assert is_out_of_memory(error)
    translated = out_of_memory(error, where="upscaling frame 4", device="cuda:0", frame=4)
    assert isinstance(translated, OutOfMemory) and isinstance(translated, JobFailed)
    assert translated.frame == 4 and translated.device == "cuda:0"
    assert "--max-memory" in str(translated) and "--tile" in str(translated) and "not a bug" in str(translated)


@pytest.mark.parametrize("error", [RuntimeError("CUDA error: device-side assert triggered"),
                                   ValueError("out of memory"), KeyError("memory")])
def test_other_errors_are_not_out_of_memory(error: BaseException) -> None:
    assert not is_out_of_memory(error)
    assert out_of_memory(error, where="x", device="cpu") is None


@pytest.mark.parametrize("error", [None, CPU_ALLOCATOR, MemoryError()], ids=["cuda", "cpu-allocator", "MemoryError"])
def test_out_of_memory_mid_job_is_a_job_error_and_leaves_nothing(tmp_path: Path, error) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 20, audio="aac")
    threads = job_threads()
    engine = OutOfMemoryEngine(fail_at=6, error=error)
    job = plan(src, build_options({"engine": "bicubic", "preset": "ultrafast"}), processor=engine)
    with pytest.raises(OutOfMemory) as caught:
        run(job, tmp_path / "up.mp4", processor=engine)
    message = str(caught.value)
    assert caught.value.frame == 6 and caught.value.device == "cpu"
    assert "Out of memory on cpu while upscaling frame 6 (0.240 s) of" in message and "in.mp4" in message
    assert "The plan predicted about" in message and "--max-memory" in message and "bf16" in message
    assert caught.value.needed_bytes == job.memory.peak_bytes
    assert not (tmp_path / "up.mp4").exists()
    assert files_under(tmp_path / "tmp") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no hidden partial output
    assert open_files_under(tmp_path) == [] and job_threads() <= threads


def test_out_of_memory_through_the_cli_exits_5_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", 64, 48, 25, 10, audio="aac")
    monkeypatch.setattr(vsr.model.engines, "get_processor", lambda options: OutOfMemoryEngine(fail_at=3))
    code = main(["upscale", str(clip), "-o", str(tmp_path / "o.mp4")])
    line = capsys.readouterr().err.strip().splitlines()[-1]  # the lines before it are the progress bar
    assert code == EXIT_JOB == 5
    assert line.startswith("vsr: error: Out of memory on cpu while upscaling frame 3 (0.120 s)")
    assert "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in line
    assert "Fix: set a smaller --max-memory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clip.mp4", "tmp"]
    assert files_under(tmp_path / "tmp") == []


@pytest.mark.slow
def test_out_of_memory_in_a_real_cli_process_exits_5(tmp_path: Path) -> None:
    """``python -m vsr``'s own entry point in a fresh process, its engine wrapped to run out of memory."""
    clip = make_video(tmp_path / "clip.mp4", 64, 48, 25, 10, audio="aac")
    launcher = (
        "import runpy, sys\n"
        "import vsr.model.engines\n"
        "from job_support import OutOfMemoryEngine\n"
        "vsr.model.engines.get_processor = lambda options: OutOfMemoryEngine(fail_at=4)\n"
        "sys.argv = ['vsr', 'upscale', sys.argv[1], '-o', sys.argv[2]]\n"
        "runpy.run_module('vsr', run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_DIFFVSR_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT_DIR), str(ROOT_DIR / "tests")]), STREAM_DIFFVSR_ENGINE="bicubic",
               STREAM_DIFFVSR_TMP_DIR=str(tmp_path / "tmp"), STREAM_DIFFVSR_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", launcher, str(clip), str(tmp_path / "o.mp4")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 5, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("vsr: error: Out of memory on cpu while upscaling frame 4 (0.160 s)"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clip.mp4", "tmp"]
    assert files_under(tmp_path / "tmp") == []


def test_out_of_memory_while_loading_the_engine_is_a_job_error(tmp_path: Path, monkeypatch, capsys) -> None:
    clip = make_video(tmp_path / "clip.mp4", 64, 48, 25, 5, audio=None)

    def no_memory(options):
        raise CPU_ALLOCATOR

    monkeypatch.setattr(vsr.model.engines, "get_processor", no_memory)
    code = main(["upscale", str(clip), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5
    assert "Out of memory on cpu while planning clip.mp4 (loading or timing the engine)" in err[-1]
    assert not (tmp_path / "o.mp4").exists()


def test_out_of_memory_in_a_frame_folder_job_names_the_file(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from vsr.job.frames import upscale_sequences

    folder = tmp_path / "in" / "seq"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    with pytest.raises(OutOfMemory, match=r"while upscaling .*002\.png .* PNGs of the frames before it are kept") as e:
        upscale_sequences(tmp_path / "in", tmp_path / "out", OutOfMemoryEngine(fail_at=2), 1)
    assert e.value.frame == 2
