"""The web app resumes a job interrupted by a server restart: through gradio_client against the real
server (kill -9 it mid-job, start it again on the same folders, /resume with the resume code), and
the pieces behind it in process (the resume code, the page's offer, a re-upload, refusals).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app
from app_harness import AppServer
from job_support import decode
from media_factory import make_video
from vsr.job import checkpoint
from vsr.model.bicubic import BicubicUpscaler
from vsr.options import build_options
from vsr.web import folders, resume, sessions

CODE = re.compile(r"Resume code `(job-[A-Za-z0-9_-]{22,})`")
LOSSLESS = ("bicubic", "4x", "", "", 4, "7", "ffv1", 18, True)


def _wait(predicate, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_job_interrupted_by_a_server_restart_is_resumed_through_the_api(tmp_path: Path, fixture_dir: Path) -> None:
    server = AppServer(base=tmp_path / "server", fixture_dir=fixture_dir, cache_dir=tmp_path / "cache",
                       extra_env={"STREAM_DIFFVSR_CHECKPOINT_SECONDS": "0.05"}).start()
    clip = make_video(tmp_path / "clip.mp4", 160, 90, 25, 300, audio="aac")
    try:
        client = Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
        job = client.submit(handle_file(str(clip)), *LOSSLESS, api_name="/upscale")
        found: list[str] = []

        def started() -> bool:
            found.extend(m.group(1) for out in job.outputs() if (m := CODE.search(str(out[0]))))
            return bool(found)

        _wait(started, "the first status line with the resume code")
        code = found[0]
        folder = server.output_dir / code / "checkpoint"
        _wait(lambda: checkpoint.exists(folder) and checkpoint.load(folder).next_index >= 10, "a checkpoint")
        os.killpg(server.process.pid, signal.SIGKILL)  # a crash: no clean-up code runs
        server.process.wait(timeout=60)
    finally:
        server.stop()
    saved = checkpoint.load(folder)
    assert 10 <= saved.next_index < 300

    again = AppServer(base=tmp_path / "server", fixture_dir=fixture_dir, cache_dir=tmp_path / "cache").start()
    try:
        client = Client(again.url, verbose=False, download_files=str(tmp_path / "downloads2"))
        with pytest.raises(AppError, match="No interrupted job with the resume code job-"):
            client.predict(None, "job-" + "x" * 22, api_name="/resume")
        job = client.submit(None, code, api_name="/resume")  # the server still has the upload
        status, _slider, _video, download, report, _notice, _engine = job.result()
        assert any(f"Resuming at frame {saved.next_index} of 300" in str(out[0]) for out in job.outputs())
        assert status.startswith("Done in") and "300 frames" in status  # bicubic: no seed to repeat
        assert report.startswith("### Verification passed: clip_4x.mkv")
        out = Path(download["value"])
        engine = BicubicUpscaler()
        for low, high in zip(decode(clip), decode(out), strict=True):
            assert np.array_equal(high.rgb, engine.process(low.rgb)), f"frame {low.index}"
        assert not folder.exists(), "the finished job's checkpoint is removed"
        with pytest.raises(AppError, match="No interrupted job|no checkpoint"):
            client.predict(None, code, api_name="/resume")  # finished: nothing to resume
    finally:
        again.stop()
    assert again.leftovers() == []


def test_the_api_of_upscale_is_unchanged_and_resume_takes_a_video_and_a_code(tmp_path: Path) -> None:
    settings = build_options({"engine": "bicubic", "output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "t"),
                              "cache_dir": str(tmp_path / "cache")}, env={})
    async def build() -> gr.Blocks:  # inside a running loop gradio makes no event loops of its own to leak
        return app.build_demo(settings)

    demo = asyncio.run(build())
    endpoints = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in ("upscale", "sample", "resume")}

    def api(name: str) -> tuple[list[str], int]:
        fn = endpoints[name]
        shown = [block for block in fn.inputs if not block.skip_api]
        return [type(block).__name__ for block in shown], len([b for b in fn.outputs if not b.skip_api])

    controls = ["Video", "Radio", "Radio", "Textbox", "Textbox", "Slider", "Textbox", "Dropdown", "Slider", "Checkbox"]
    assert api("upscale") == api("sample") == (controls, 7)  # the page's resume code is a gr.State: not in the API
    assert api("resume") == (["Video", "BrowserState"], 7)
    secret = resume.browser_secret(tmp_path / "cache")
    assert secret == resume.browser_secret(tmp_path / "cache"), "the page's storage key survives a restart"
    assert (tmp_path / "cache" / resume.SECRET_FILE).stat().st_mode & 0o077 == 0


def _first_code(updates) -> str:
    """The resume code of the first status line that names it (the page first says it reads the video)."""
    for update in updates:
        found = CODE.search(update.status or "")
        if found:
            return found.group(1)
    raise AssertionError("no status line named the resume code")


def _interrupted_job(tmp_path: Path) -> tuple[sessions.WebJobs, str, Path]:
    """A web job stopped after a few frames without a cancel (as when the server stops mid-job)."""
    settings = build_options({"engine": "bicubic", "output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "t"),
                              "cache_dir": str(tmp_path / "cache"), "checkpoint_seconds": "0.000001"}, env={})
    jobs = sessions.WebJobs(settings, zero_gpu=False)
    (tmp_path / "uploads").mkdir()
    clip = make_video(tmp_path / "uploads" / "clip.mp4", 64, 48, 25, 40, audio="aac")
    updates = jobs.run(str(clip), LOSSLESS, False, "visitor", jobs.new_code())
    code = _first_code(updates)
    folder = resume.checkpoint_dir(settings.output_dir / code)
    for _ in updates:
        if checkpoint.exists(folder) and checkpoint.load(folder).next_index >= 5:
            break
    updates.close()  # the server going down: the generator is closed, nobody pressed Cancel
    return jobs, code, clip


def test_the_page_offers_to_resume_and_a_new_upload_of_the_same_file_is_accepted(tmp_path: Path) -> None:
    jobs, code, clip = _interrupted_job(tmp_path)
    assert re.fullmatch(r"job-[A-Za-z0-9_-]{22}", code) and folders.job_dir_for(jobs.settings.output_dir, code)
    offer = jobs.interrupted(code)
    assert offer.startswith("**Your job on clip.mp4 was interrupted** at frame ") and "Press **Resume**" in offer
    assert jobs.interrupted(None) == "" and jobs.interrupted("job-" + "y" * 22) == ""
    assert jobs.interrupted("../../etc") == ""

    moved = tmp_path / "elsewhere" / "same.mp4"  # the server's copy of the upload is gone; the visitor uploads again
    moved.parent.mkdir()
    clip.rename(moved)
    assert "upload clip.mp4 again first" in jobs.interrupted(code)
    with pytest.raises(resume.ResumeRefused, match=r"Upload clip\.mp4 \(\d+\.\d kB\) again, then press Resume"):
        list(jobs.resume(None, code, "visitor"))
    other = make_video(tmp_path / "other.mp4", 64, 48, 25, 40, audio="aac", crf=30)
    with pytest.raises(resume.ResumeRefused, match="or the video on the page is another file"):
        list(jobs.resume(str(other), code, "visitor"))
    updates = list(jobs.resume(str(moved), code, "visitor"))
    assert updates[0].status.startswith("Resuming at frame ") and updates[-1].status.startswith("Done")
    result = updates[-1].result
    assert result.frames == 40 and result.report.ok and result.output.name == "clip_4x.mkv"
    assert jobs.interrupted(code) == ""


def test_a_cancelled_job_keeps_nothing_to_resume(tmp_path: Path) -> None:
    settings = build_options({"engine": "bicubic", "output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "t"),
                              "cache_dir": str(tmp_path / "cache"), "checkpoint_seconds": "0.000001"}, env={})
    jobs = sessions.WebJobs(settings, zero_gpu=False)
    clip = make_video(tmp_path / "clip.mp4", 64, 48, 25, 60, audio=None)
    updates = jobs.run(str(clip), LOSSLESS, False, "visitor")
    code = _first_code(updates)
    for update in updates:
        if (m := re.search(r"frame (\d+) of", update.status or "")) and int(m[1]) >= 3:
            assert jobs.cancel("visitor")
    assert update.status == "Cancelled. Nothing was kept."
    assert folders.job_dir_for(settings.output_dir, code) is None and jobs.interrupted(code) == ""
    with pytest.raises(resume.ResumeRefused, match="No interrupted job"):
        list(jobs.resume(str(clip), code, "visitor"))
