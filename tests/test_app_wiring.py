"""app.py in process: the one error translation, the ZeroGPU hook, the page's wiring and settings."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
from fractions import Fraction

import gradio as gr
import pytest

import app
from app_harness import ROOT
from media import NotAVideo
from media_factory import make_video
from job_support import plan
from vsr import job
from vsr.web import sessions
from vsr.model.errors import ModelNotFoundError
from vsr.job.errors import LimitExceeded
from vsr.options import OptionsError, build_options


def test_expected_errors_become_gr_error_with_the_upload_named_not_its_server_path(tmp_path):
    upload = str(tmp_path / "gradio" / "0123abcd" / "holiday.mp4")

    @app._user_errors
    def handler(video):
        raise NotAVideo(f"{video}: not a video FFmpeg can read. Check that it is a complete video file.")

    with pytest.raises(gr.Error) as caught:
        handler(upload)
    assert caught.value.message == "holiday.mp4: not a video FFmpeg can read. Check that it is a complete video file."
    assert caught.value.print_exception is False


@pytest.mark.parametrize("error", [LimitExceeded("too long: trim it"), OptionsError("start='x' is not a time"),
                                   ModelNotFoundError("no model at /m: check STREAM_DIFFVSR_MODEL_ID")])
def test_every_expected_family_is_shown_as_is(error):
    @app._user_errors
    def handler():
        raise error

    with pytest.raises(gr.Error) as caught:
        handler()
    assert caught.value.message == str(error)


def test_bugs_are_logged_with_traceback_and_the_page_gets_no_traceback(caplog):
    @app._user_errors
    def handler():
        yield "first"
        raise KeyError("internal detail")

    generator = handler()
    assert next(generator) == "first"
    with pytest.raises(gr.Error) as caught:
        next(generator)
    message = caught.value.message
    assert message.startswith("Something went wrong on the server (KeyError)")
    assert "internal detail" not in message and "Traceback" not in message
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)


def test_gr_error_passes_through_unchanged():
    @app._user_errors
    def handler():
        raise gr.Error("already for people")

    with pytest.raises(gr.Error, match="already for people"):
        handler()


def test_the_zerogpu_job_takes_and_yields_only_picklable_things(tmp_path):
    """On ZeroGPU the GPU function runs in a worker process: its arguments travel pickled."""
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30000, 1001), 3)
    options = build_options({"engine": "bicubic", "output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "t"),
                             "cache_dir": str(tmp_path / "cache")}, env={})
    planned = plan(clip, options)
    restored = pickle.loads(pickle.dumps(planned))
    assert restored.frames == planned.frames and restored.size == planned.size
    output = tmp_path / "out.mp4"
    items = list(sessions.job_events(restored, str(output), "session"))
    kinds = [kind for kind, _ in items]
    assert kinds[-1] == "result" and set(kinds[:-1]) == {"progress"}
    for _kind, payload in items:
        pickle.loads(pickle.dumps(payload))
    assert items[-1][1].frames == 3 and output.is_file()


@pytest.mark.slow  # a fresh interpreter importing torch and gradio: about 10 s each
@pytest.mark.parametrize("blocked", [True, False])
def test_app_imports_with_and_without_the_spaces_package(blocked, tmp_path):
    code = ("import sys\n"
            + ("sys.modules['spaces'] = None\n" if blocked else "")
            + "import app\n"
            "print('spaces', app.spaces is not None)\n"
            "print('plain', app.JOB_EVENTS.__name__ == 'job_events')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert f"spaces {not blocked}" in done.stdout
    assert "plain True" in done.stdout  # outside ZeroGPU, spaces.GPU leaves the function as it is


def test_launch_arguments_come_from_the_environment_and_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8000")
    settings = build_options({"max_upload_mb": 50, "output_dir": str(tmp_path / "out")}, env={})
    arguments = app.launch_arguments(settings)
    assert arguments["server_name"] == "0.0.0.0" and arguments["server_port"] == 8000
    assert arguments["max_file_size"] == "50mb"
    assert str((tmp_path / "out").resolve()) in arguments["allowed_paths"]
    assert arguments["show_error"] is False


def test_launch_defaults(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    arguments = app.launch_arguments(build_options({}, env={}))
    assert (arguments["server_name"], arguments["server_port"]) == ("127.0.0.1", 7860)


def test_the_page_has_one_job_at_a_time_and_a_bounded_line(tmp_path):
    settings = build_options({"output_dir": str(tmp_path)}, env={})

    async def build() -> gr.Blocks:  # inside a running loop gradio makes no event loops of its own to leak
        return app.build_demo(settings)

    demo = asyncio.run(build())
    assert demo.analytics_enabled is False
    assert demo._queue.max_size == app.QUEUE_SIZE
    jobs = [fn for fn in demo.fns.values() if fn.api_name in ("upscale", "sample")]
    assert len(jobs) == 2
    assert {fn.concurrency_id for fn in jobs} == {app.JOB_CONCURRENCY}
    assert all(fn.concurrency_limit == 1 for fn in jobs)
    cancel = next(fn for fn in demo.fns.values() if fn.api_name == "cancel")
    assert cancel.queue is False  # Cancel never waits behind the job it cancels


def test_quality_slider_follows_the_codec_and_never_gets_an_empty_value():
    from vsr.web import views

    hevc = views.crf_view("hevc")
    assert (hevc["visible"], hevc["minimum"], hevc["maximum"], hevc["value"]) == (True, 0, 51, 20)
    prores = views.crf_view("prores")
    assert prores["visible"] is False and "value" not in prores  # gradio refuses a slider without a number
