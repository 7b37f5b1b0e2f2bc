"""The web page's jobs without a browser: ``vsr.web.sessions.WebJobs`` plans, runs, cancels and
falls back to bicubic visibly, and never leaves a job folder behind that the visitor cannot use."""

from __future__ import annotations

import re
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from job_support import decode, job_threads
from media.ts_chunks import chunk_of
from media_factory import make_video
from vsr.model import engines
from vsr.model.bicubic import BicubicUpscaler
from vsr.model.errors import ModelNotFoundError
from vsr.options import UpscaleOptions, build_options
from vsr.web import sessions

BICUBIC = ("bicubic", "4x", "", "", 4, "", "h264", 18, False)
MODEL = ("stream-diffvsr", "4x", "", "", 4, "", "h264", 18, False)


def _settings(tmp_path: Path) -> UpscaleOptions:
    return build_options({"output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "tmp"),
                          "cache_dir": str(tmp_path / "cache")}, env={})


class SlowBicubic(BicubicUpscaler):
    """Bicubic that takes a while per frame, so a test can act while the job runs."""

    def process(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super().process(rgb)


def test_a_job_streams_progress_and_pictures_then_the_verified_result(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 10)
    jobs = sessions.WebJobs(_settings(tmp_path), zero_gpu=False)
    updates = list(jobs.run(str(clip), BICUBIC, False, "visitor"))
    assert updates[0].starting  # the page clears the previous result first
    assert any((u.status or "").startswith("Starting… Resume code `job-") for u in updates)
    progress = [re.search(r"frame (\d+) of (\d+)", u.status or "") for u in updates]
    progress = [(int(m[1]), int(m[2])) for m in progress if m]
    assert progress and progress[-1][1] == 10 and all(done <= total for done, total in progress)
    pictures = [u.pictures for u in updates if u.pictures is not None]
    assert pictures and pictures[-1][0].shape == pictures[-1][1].shape == (192, 256, 3)
    final = updates[-1]
    assert final.status.startswith("Done") and final.result.report.ok
    frames = decode(final.result.output)
    assert len(frames) == 10 and frames[0].rgb.shape == (192, 256, 3)
    assert final.result.output.parent.parent == tmp_path / "out"  # in its own job folder
    assert jobs.active.running() == 0


def test_cancel_reaches_the_visitors_own_job_and_nothing_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "get_processor", lambda options: SlowBicubic())
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 60, audio=None)
    jobs = sessions.WebJobs(_settings(tmp_path), zero_gpu=False)
    assert not jobs.cancel("visitor")  # nothing running yet
    updates: list[sessions.JobUpdate] = []
    for update in jobs.run(str(clip), BICUBIC, False, "visitor"):
        updates.append(update)
        if re.search(r"frame ([2-9]|\d\d+) of", update.status or ""):
            assert not jobs.cancel("someone else")
            assert jobs.cancel("visitor")
    assert updates[-1].status == "Cancelled. Nothing was kept."
    assert updates[-1].result is None and progress_below(updates, 60)
    assert list((tmp_path / "out").iterdir()) == []  # the job folder is gone
    assert not job_threads() and jobs.active.running() == 0


def progress_below(updates: list[sessions.JobUpdate], total: int) -> bool:
    done = [int(m[1]) for m in (re.search(r"frame (\d+) of", u.status or "") for u in updates) if m]
    return bool(done) and max(done) < total


def test_a_model_that_cannot_load_falls_back_to_bicubic_visibly(tmp_path, monkeypatch):
    def missing(options: UpscaleOptions) -> BicubicUpscaler:
        if options.engine != "bicubic":
            raise ModelNotFoundError("no-such/model: not found. Check STREAM_DIFFVSR_MODEL_ID.")
        return BicubicUpscaler()

    monkeypatch.setattr(engines, "get_processor", missing)
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 3, audio=None)
    jobs = sessions.WebJobs(_settings(tmp_path), zero_gpu=False)
    planned = jobs.plan(str(clip), MODEL)
    assert planned.fell_back and planned.options.engine == "bicubic"
    assert planned.plan.engine["engine"] == "bicubic"
    assert "could not be loaded" in jobs.model.notice() and "no-such/model" in jobs.model.notice()
    updates = []
    with pytest.raises(ModelNotFoundError.__mro__[1], match="Nothing was started"):
        for update in jobs.run(str(clip), MODEL, False, "visitor"):
            updates.append(update)
    assert any(u.notice == jobs.model.notice() for u in updates)  # the page switches to bicubic
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_two_pages_keep_their_own_state(tmp_path):
    first, second = (sessions.WebJobs(_settings(tmp_path), zero_gpu=False) for _ in range(2))
    first.model.failed("broken weights")
    assert first.model.notice() and second.model.notice() == ""
    flag = first.active.start("visitor")
    assert isinstance(flag, threading.Event) and second.active.flag("visitor") is None


def test_the_streamed_result_goes_on_after_a_restart_from_the_first_chunk(tmp_path, monkeypatch):
    """Issue 19: the page that resumes an interrupted job plays the stream from its start (the chunks
    kept with the checkpoint), then the rest, with no frame twice; the verified file replaces it."""
    monkeypatch.setattr(engines, "get_processor", lambda options: SlowBicubic())
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 60)
    settings = _settings(tmp_path).replace(checkpoint_seconds=0.5)
    updates = sessions.WebJobs(settings, zero_gpu=False).run(str(clip), BICUBIC, False, "visitor")
    before = []
    for update in updates:
        before.append(update)
        if re.search(r"frame (3\d|4\d) of", update.status or ""):
            break
    updates.close()  # the server stops in the middle of the job (not a cancel)
    code = re.search(r"`(job-[^`]+)`", next(u.status for u in before if "Resume code" in (u.status or "")))[1]
    after = list(sessions.WebJobs(settings, zero_gpu=False).resume(str(clip), code, "visitor"))
    resumed_at = int(re.search(r"Resuming at frame (\d+) of", after[0].status or after[1].status)[1])
    assert 0 < resumed_at < 60
    chunks = [chunk_of(Path(u.chunk)) for u in after if u.chunk is not None]
    assert chunks[0].first == 0 and resumed_at in {c.first for c in chunks}  # the chunks from before the restart first
    assert [c.first for c in chunks] == [0, *(c.end_index for c in chunks[:-1])] and chunks[-1].end_index == 60
    ended = next(i for i, u in enumerate(after) if u.stream_ended)
    assert after[ended + 1].result.report.ok and after[-1].result.frames == 60
    assert not (tmp_path / "out" / code / "stream").exists()  # the page holds what it played


def _stop_mid_job(jobs: sessions.WebJobs, clip: Path) -> str:
    """Run a job for "visitor" until it has a checkpoint, then close its generator as Gradio does when
    the connection closes; the job's resume code."""
    updates = jobs.run(str(clip), BICUBIC, False, "visitor")
    seen = []
    for update in updates:
        seen.append(update)
        if re.search(r"frame (3\d|4\d) of", update.status or ""):
            break
    updates.close()
    return re.search(r"`(job-[^`]+)`", next(u.status for u in seen if "Resume code" in (u.status or "")))[1]


@pytest.mark.parametrize("unload_first", [True, False], ids=["unload-then-close", "close-then-unload"])
def test_a_visitor_who_closes_the_tab_leaves_nothing_whichever_event_comes_first(tmp_path, monkeypatch, unload_first):
    """The closed tab's unload event and the closed connection reach the server in either order (CI saw
    the unload come seconds after the job had been kept for Resume): either way the job stops and its
    folder goes; only a connection closed with no unload (a server restart) keeps it for Resume."""
    monkeypatch.setattr(engines, "get_processor", lambda options: SlowBicubic())
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 60, audio=None)
    jobs = sessions.WebJobs(_settings(tmp_path).replace(checkpoint_seconds=0.5), zero_gpu=False)
    if unload_first:
        original = jobs._follow

        def follow_then_unload(*args, **kwargs):
            try:
                return (yield from original(*args, **kwargs))
            except GeneratorExit:
                assert jobs.left("visitor")  # the unload arrives while the job is still stopping
                raise

        monkeypatch.setattr(jobs, "_follow", follow_then_unload)
    code = _stop_mid_job(jobs, clip)
    if not unload_first:
        assert (tmp_path / "out" / code).is_dir()  # kept for Resume until the unload comes
        assert jobs.left("visitor")
    assert not (tmp_path / "out" / code).exists() and jobs.interrupted(code) == ""
    assert not jobs.left("visitor") and jobs.active.running() == 0 and not job_threads()


def test_a_dropped_connection_with_no_unload_keeps_the_job_for_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "get_processor", lambda options: SlowBicubic())
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 60, audio=None)
    jobs = sessions.WebJobs(_settings(tmp_path).replace(checkpoint_seconds=0.5), zero_gpu=False)
    code = _stop_mid_job(jobs, clip)
    assert (tmp_path / "out" / code).is_dir() and jobs.interrupted(code)
    assert not jobs.left("someone else") and (tmp_path / "out" / code).is_dir()
    monkeypatch.setattr(sessions, "DROPPED_MEMORY_S", 0.0)  # an unload this long after is not the same visit
    assert not jobs.left("visitor") and (tmp_path / "out" / code).is_dir()


def test_a_long_jobs_stream_stops_at_the_memory_bound_and_the_file_still_comes(tmp_path, monkeypatch):
    """Gradio holds every streamed chunk in the server's memory: past STREAM_PAGE_BYTES no more chunks go
    to the page, the note says where and why, and the verified file still ends the job."""
    monkeypatch.setattr(engines, "get_processor", lambda options: SlowBicubic())
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 90, audio=None)
    handed: list[int] = []
    original = sessions.StreamFeed.updates

    def measuring(self, event):  # the chunk files go with the finished job: measure them as they are handed
        for update in original(self, event):
            if update.chunk is not None:
                handed.append(Path(update.chunk).stat().st_size)
            yield update

    monkeypatch.setattr(sessions.StreamFeed, "updates", measuring)
    whole = list(sessions.WebJobs(_settings(tmp_path), zero_gpu=False).run(str(clip), BICUBIC, False, "a"))
    sizes, handed[:] = handed[:], []
    assert len(sizes) >= 2 and chunk_of(Path([u.chunk for u in whole if u.chunk][-1])).end_index == 90
    monkeypatch.setattr(sessions, "STREAM_PAGE_BYTES", sizes[0] + sizes[1] - 1)  # room for the first chunk only
    capped = list(sessions.WebJobs(_settings(tmp_path), zero_gpu=False).run(str(clip), BICUBIC, False, "b"))
    assert handed == sizes[:1]
    notes = [u.stream_note for u in capped if u.stream_note]
    assert any(n.startswith("The live result stops after 1.0 s of 3.0 s: the server holds") for n in notes), notes
    assert capped[-1].result.report.ok and capped[-1].result.frames == 90
