"""The web app's plain-Python logic (vsr/web.py): controls -> options, sizes, texts, job folders."""

from __future__ import annotations

import os
import pickle
import re
import stat
import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vsr import formatting
from vsr.job import planning
from vsr.web import controls as page_controls
from vsr.web import folders, preview, sessions, texts
from vsr.job.errors import TargetTooLarge
from vsr.options import OptionsError, build_options
from vsr.job import progress
from vsr.job.progress import ProgressEvent
from vsr.job.sizing import output_size


# -- controls -> options ---------------------------------------------------------------------------


def controls(**changes):
    values = dict(engine="bicubic", size="4x", start="", end="", steps=4, seed="", codec="h264", crf=18,
                  scene_cuts=True)
    values.update(changes)
    return page_controls.control_overrides(**values)


def test_empty_fields_mean_not_given_and_the_result_builds_options():
    overrides = controls()
    assert overrides["start"] is None and overrides["end"] is None and "seed" not in overrides
    options = build_options({k: v for k, v in overrides.items() if v is not None}, env={})
    assert options.engine == "bicubic" and options.height is None and options.seed is None
    assert options.start is None and options.crf == 18 and options.steps == 4


def test_typed_values_reach_the_options_exactly():
    overrides = controls(size="1080", start="0:01.5", end="3", steps=6.0, seed=" 42 ", codec="hevc", crf=23.0,
                         scene_cuts=False)
    options = build_options({k: v for k, v in overrides.items() if v is not None}, env={})
    assert options.height == 1080
    assert options.start == Fraction(3, 2) and options.end == 3
    assert options.steps == 6 and options.seed == 42 and options.crf == 23 and options.scene_cuts is False


def test_quality_slider_is_ignored_for_codecs_without_crf():
    overrides = controls(codec="prores", crf=18)
    assert "crf" not in overrides
    build_options({k: v for k, v in overrides.items() if v is not None}, env={})  # would raise with a crf


def test_a_fractional_slider_value_is_refused_by_name_not_rounded():
    overrides = controls(steps=4.5)
    with pytest.raises(OptionsError, match="steps=4.5"):
        build_options({k: v for k, v in overrides.items() if v is not None}, env={})


def test_bad_typed_values_raise_options_error_naming_the_field():
    overrides = controls(start="one minute")
    with pytest.raises(OptionsError, match="start='one minute'"):
        build_options({k: v for k, v in overrides.items() if v is not None}, env={})


# -- output sizes ------------------------------------------------------------------------------------


def test_tiny_input_only_allows_4x_and_says_why():
    choices = page_controls.size_choices(64, 48, 7680 * 4320)
    assert choices.allowed == (("4x", "4x"),)
    assert [label for label, _ in choices.refused] == ["720p", "1080p", "1440p", "4K"]
    assert "exactly 4x" in choices.note and "at most 192p" in choices.note


def test_presets_up_to_four_times_the_short_side_are_allowed():
    choices = page_controls.size_choices(320, 180, 7680 * 4320)
    assert [value for _, value in choices.allowed] == ["4x", "720"]
    portrait = page_controls.size_choices(270, 480, 7680 * 4320)  # short side 270: up to 1080
    assert [value for _, value in portrait.allowed] == ["4x", "720", "1080"]


def test_output_pixel_limit_refuses_sizes_even_4x():
    choices = page_controls.size_choices(640, 360, 1280 * 720)
    assert [value for _, value in choices.allowed] == ["720"]
    assert "4x" in [label for label, _ in choices.refused]
    assert "1,280x" not in choices.note and "921,600 output pixels" in choices.note


@settings(max_examples=40, deadline=None)
@given(width=st.integers(16, 4000), height=st.integers(16, 4000))
def test_offered_sizes_agree_with_the_job_sizing(width, height):
    """Every preset the page offers is one the job accepts; every preset refused for 4x, it refuses."""
    choices = page_controls.size_choices(width, height, 10**12)
    for label, value in choices.allowed:
        if value != "4x":
            output_size(width, height, width, height, 0, int(value))  # must not raise
    for label, reason in choices.refused:
        target = int(dict(page_controls.SIZE_LABELS)[label])
        with pytest.raises(TargetTooLarge):
            output_size(width, height, width, height, 0, target)
        assert "4x" in reason


# -- texts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(None, "unknown"), (3.25, "3.2 s"), (42, "42 s"), (75, "1 min 15 s"),
                                               (3 * 3600 + 61, "3 h 01 min")])
def test_duration_text(seconds, text):
    assert formatting.duration_text(seconds) == text


def test_size_text():
    assert formatting.bytes_text(999) == "999 bytes"
    assert formatting.bytes_text(1_536_000) == "1.5 MB"
    assert formatting.bytes_text(2_500_000_000) == "2.5 GB"


def test_progress_text_says_frames_rate_and_time_left():
    text = progress.status_text("upscaling", 24, 120, 3.1, 31.0)
    assert text == "Upscaling frame 24 of 120 · 3.10 frames/s · about 31 s left"
    assert text == "Upscaling " + progress.counter_text(24, 120, 3.1, 31.0)  # the CLI's bar shows the same words
    assert "measuring" in progress.status_text("upscaling", 1, 120, None, None)
    assert progress.status_text("loading", 0, 120, None, None, "downloading").startswith("Loading the model")


def test_limits_text_shows_every_limit():
    options = build_options({"max_upload_mb": 100, "max_duration": 90, "max_input_pixels": 1000,
                             "max_output_pixels": 16000}, env={})
    text = texts.limits_text(options, 16)
    for part in ("100 MB", "1 min 30 s", "1,000 pixels", "16,000 pixels", "up to 16"):
        assert part in text


def test_report_markdown_lists_every_check():
    check = SimpleNamespace
    report = SimpleNamespace(ok=True, path=Path("/x/clip_4x.mp4"), checks=(
        check(name="frames", ok=True, message="12 frames"),
        check(name="frame rate", ok=True, message="30000/1001 fps")))
    result = SimpleNamespace(report=report, scene_cuts=(5,))
    text = texts.report_markdown(result, SimpleNamespace(temporal=True))
    assert text.splitlines()[0] == "### Verification passed: clip_4x.mp4"
    assert "✓ **frames**: 12 frames" in text and "30000/1001 fps" in text and "frame): 5" in text
    assert "Scene cuts" not in texts.report_markdown(result, SimpleNamespace(temporal=False))  # bicubic


def test_the_seed_is_offered_again_only_where_it_decides_the_result():
    result = SimpleNamespace(frames=600, seconds=600.0, seed=42)
    assert texts.done_text(result, SimpleNamespace(temporal=True)) == (
        "Done in 10 min: 600 frames (1.00 frames/s). Seed 42 (enter it under Seed to get exactly this result again).")
    assert texts.done_text(result, SimpleNamespace(temporal=False)) == "Done in 10 min: 600 frames (1.00 frames/s)."


# -- before / after ---------------------------------------------------------------------------------


def test_before_is_the_bicubic_enlarged_input_at_the_output_size():
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    high = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    before, after = preview.before_after(low, high)
    assert before.shape == after.shape == (48, 64, 3)
    assert np.array_equal(after, high)
    assert np.array_equal(before, np.asarray(Image.fromarray(low).resize((64, 48), Image.Resampling.BICUBIC)))


def test_big_frames_are_scaled_down_alike():
    low = np.zeros((540, 960, 3), np.uint8)
    high = np.full((2160, 3840, 3), 200, np.uint8)
    before, after = preview.before_after(low, high, max_pixels=1920 * 1080)
    assert before.shape == after.shape and before.shape[0] * before.shape[1] <= 1920 * 1080
    assert abs(after.shape[1] / after.shape[0] - 16 / 9) < 0.01
    assert int(after.mean()) == 200 and int(before.mean()) == 0


# -- job folders ----------------------------------------------------------------------------------------


def test_output_filename_is_safe_and_follows_the_plan():
    options = build_options({"height": "1080"}, env={})
    assert folders.output_filename("my holiday (1).MOV", options, ".mov") == "my_holiday_1_1080p.mov"
    assert folders.output_filename("../../etc/passwd", build_options({}, env={}), ".mp4") == "passwd_4x.mp4"
    assert folders.output_filename("...", build_options({}, env={}), ".mkv") == "video_4x.mkv"


def test_job_dirs_are_private_distinct_and_unguessable(tmp_path):
    dirs = [folders.new_job_dir(tmp_path / "out") for _ in range(50)]
    assert len({d.name for d in dirs}) == 50
    for d in dirs:
        assert re.fullmatch(r"job-[A-Za-z0-9_-]{22}", d.name)  # 128 random bits
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_remove_job_dir_refuses_other_folders(tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    with pytest.raises(ValueError, match="not a job folder"):
        folders.remove_job_dir(other)
    job = folders.new_job_dir(tmp_path)
    (job / "out.mp4").write_bytes(b"x")
    folders.remove_job_dir(job)
    assert not job.exists() and other.exists()


def test_prune_removes_only_old_job_folders(tmp_path):
    old, fresh = folders.new_job_dir(tmp_path), folders.new_job_dir(tmp_path)
    (old / "a.mp4").write_bytes(b"x")
    (tmp_path / "job-notes").mkdir()  # not a job folder name: kept
    past = time.time() - 7200
    for path in (old, old / "a.mp4", tmp_path / "job-notes"):
        os.utime(path, (past, past))
    removed = folders.prune_job_dirs(tmp_path, 3600)
    assert removed == [old]
    assert fresh.exists() and (tmp_path / "job-notes").exists() and not old.exists()
    assert folders.prune_job_dirs(tmp_path / "missing", 1) == []


# -- cancel flags, progress hand-over, ZeroGPU reservation ------------------------------------------


def test_cancel_reaches_only_its_own_session():
    jobs = sessions.ActiveJobs()
    mine, theirs = jobs.start("me"), jobs.start("them")
    assert jobs.cancel("me") is True
    assert mine.is_set() and not theirs.is_set()
    assert jobs.cancel("nobody") is False
    jobs.finish("me", mine)
    assert jobs.flag("me") is None and jobs.running() == 1
    newer = jobs.start("them")
    jobs.finish("them", theirs)  # an older job's finish does not drop the newer one
    assert jobs.flag("them") is newer


def test_newest_event_coalesces_and_always_ends_on_the_last_frame():
    newest = sessions.NewestEvent(min_interval=0.02)
    frame = np.zeros((2, 2, 3), np.uint8)
    total = 300

    def produce():
        for i in range(1, total + 1):
            newest.put(ProgressEvent("upscaling", i, total, input_frame=frame, output_frame=frame))
            if i % 50 == 0:
                time.sleep(0.05)
        newest.put(ProgressEvent("done", total, total))
        newest.close()

    producer = threading.Thread(target=produce)
    producer.start()
    updates = list(newest.updates(frame_interval=0.5))
    producer.join()
    assert 1 <= len(updates) < total
    done = [event.done for event, _ in updates]
    assert done == sorted(done)
    assert updates[-1][0].stage == "done"
    with_frames = [frames for _, frames in updates if frames is not None]
    assert with_frames and with_frames[-1].done == total  # the final upscaled frame is shown


def test_newest_event_ends_when_closed_without_events():
    newest = sessions.NewestEvent()
    newest.close()
    assert list(newest.updates(0.1)) == []


def test_gpu_seconds():
    assert planning.gpu_seconds(None) == 120
    assert planning.gpu_seconds(1.0) == 62  # 1.5 s with the margin, plus 60 s of loading
    assert planning.gpu_seconds(100.0) == 210
    assert planning.gpu_seconds(100.0, loading_seconds=0, margin=1.0, minimum=10) == 100


# -- model errors: the facts from the loader, the fix in the page's words ----------------------------

REFUSED = "http://127.0.0.1:9"  # nothing listens on the discard port: connections are refused at once


def test_an_unreachable_hub_names_the_servers_settings_on_the_page_and_the_flags_on_the_cli(tmp_path):
    from vsr.model.errors import HubUnreachableError
    from vsr.model.loading import resolve_model_folder

    with pytest.raises(HubUnreachableError) as caught:
        resolve_model_folder("Jamichsu/Stream-DiffVSR", endpoint=REFUSED, cache_dir=tmp_path / "hub", timeout=3)
    error = caught.value
    assert "--model-id" in str(error)  # the command line keeps its flag
    page = texts.model_error_text(error)
    assert page.startswith("The model 'Jamichsu/Stream-DiffVSR' could not be loaded: the hub")
    for part in ("STREAM_DIFFVSR_MODEL_ID", "HF_HUB_OFFLINE=1", "HF_HOME", str(tmp_path / "hub")):
        assert part in page, (part, page)
    assert "--" not in page and "Errno" not in page
    again = pickle.loads(pickle.dumps(error))  # a ZeroGPU worker hands errors back pickled
    assert type(again) is HubUnreachableError and texts.model_error_text(again) == page


def test_a_failed_download_says_why_in_plain_words(tmp_path, monkeypatch):
    import socket

    import requests

    from vsr.model import loading
    from vsr.model.errors import HubUnreachableError

    def no_dns(*args, **kwargs):
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as dns:
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /api "
                "(Caused by NameResolutionError(\"gaierror: [Errno -2] Name or service not known\"))") from dns

    monkeypatch.setattr(loading, "unreachable_reason", lambda *args: None)  # the quick probe got through
    monkeypatch.setattr(loading, "snapshot_download", no_dns)
    with pytest.raises(HubUnreachableError) as caught:
        loading.resolve_model_folder("someone/model", endpoint="https://huggingface.co", cache_dir=tmp_path)
    for text in (str(caught.value), texts.model_error_text(caught.value)):
        assert "the address of huggingface.co could not be looked up" in text, text
        assert "Errno" not in text and "gaierror" not in text and "HTTPSConnectionPool" not in text


def test_a_missing_model_folder_makes_a_notice_that_names_the_setting(tmp_path):
    from media_factory import make_video

    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 3, audio=None)
    settings = build_options({"model_id": str(tmp_path / "no-such-model"), "cache_dir": str(tmp_path / "cache"),
                              "tmp_dir": str(tmp_path / "tmp"), "output_dir": str(tmp_path / "out")}, env={})
    jobs = sessions.WebJobs(settings, zero_gpu=False)
    planned = jobs.plan(str(clip), ("stream-diffvsr", "4x", "", "", 4, "", "h264", 18, True))
    assert planned.fell_back and planned.options.engine == "bicubic"
    notice = jobs.model.notice()
    assert f"The model folder {tmp_path / 'no-such-model'} could not be loaded: it does not exist." in notice
    assert "Set STREAM_DIFFVSR_MODEL_ID on the server" in notice and "--model-id" not in notice
    assert "The **Bicubic** engine still works" in notice


def test_an_anamorphic_headline_reads_as_4x_in_coded_and_shown_sizes(tmp_path):
    from media_factory import make_video
    from job_support import plan

    clip = make_video(tmp_path / "pal.mp4", 176, 144, 25, 3, audio=None, sample_aspect_ratio=Fraction(12, 11))
    options = build_options({"engine": "bicubic", "cache_dir": str(tmp_path / "cache")}, env={})
    page = texts.plan_markdown(plan(clip, options))
    assert "**176x144** (shown as 192x144) → **704x576** (shown as 768x576), 4x" in page
    square = make_video(tmp_path / "square.mp4", 64, 48, 25, 3, audio=None)
    assert "**64x48** → **256x192**, 4x," in texts.plan_markdown(plan(square, options))
    cif = make_video(tmp_path / "cif.mp4", 352, 288, 25, 3, audio=None, sample_aspect_ratio=Fraction(12, 11))
    preset = texts.plan_markdown(plan(cif, options.replace(height=720)))
    assert "**352x288** (shown as 384x288) → **960x720**," in preset  # square pixels of the shown shape


# -- the page's choices, examples and views --------------------------------------------------------


def test_the_two_examples_are_different_real_clips_with_captions():
    import av

    from vsr.web import examples

    found = examples.example_videos()
    assert len(found) == 2 and all(path.is_file() for path, _ in found)
    captions = [caption for _, caption in found]
    assert len(set(captions)) == 2 and all(caption.strip() for caption in captions)
    pictures = []
    for path, caption in found:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert f"{stream.width}x{stream.height}" in caption  # the caption says what it is
            frame = next(frame for i, frame in enumerate(container.decode(stream)) if i == 100)
            pictures.append(np.asarray(frame.to_image().resize((96, 54)), dtype=np.float32))
    assert np.abs(pictures[0] - pictures[1]).mean() > 20  # not the same footage at another size
    assert examples.example_dirs() == [found[0][0].parent]


def test_codec_labels_are_short_and_every_codec_has_one():
    from vsr.options import CODECS, ENGINES

    assert [value for _, value in page_controls.CODEC_CHOICES] == list(CODECS)
    assert [value for _, value in page_controls.ENGINE_CHOICES] == list(ENGINES)
    assert all(len(label) <= 14 for label, _ in page_controls.CODEC_CHOICES)  # they fit beside the arrow


def test_only_the_diffusion_engine_shows_steps_seed_and_scene_cuts():
    assert page_controls.temporal_controls("stream-diffvsr") is True
    assert page_controls.temporal_controls("bicubic") is False


def test_views_of_a_job_clear_the_old_result_and_then_show_the_new_one(tmp_path):
    from vsr.web import views

    assert views.plan_view(None, None, ()) == {"plan": texts.PLAN_HINT}
    start = views.job_view(sessions.JobUpdate(status=texts.STARTING, starting=True))
    assert start == {"slider": None, "result": {"value": None, "visible": False}, "report": "",
                     "download": {"value": None, "visible": False}, "status": texts.STARTING,
                     "stream": {"visible": True}, "stream_note": {"value": "", "visible": True}}
    chunk = views.job_view(sessions.JobUpdate(chunk="/jobs/job-x/stream/chunk-00000000-000025-0-1000000.ts"))
    assert chunk == {"stream": "/jobs/job-x/stream/chunk-00000000-000025-0-1000000.ts"}  # the player's next piece
    output = tmp_path / "clip_4x.mkv"
    result = SimpleNamespace(output=output, preview=tmp_path / "clip_4x.preview.mp4")
    ended = views.job_view(sessions.JobUpdate(stream_ended=True))  # the verified file replaces the stream
    assert ended["stream"] == {"visible": False} and ended["result"] == {"visible": True}
    done = views.job_view(sessions.JobUpdate(status="Done in 3.0 s", result=result, report="### Verification passed"))
    assert done["result"] == str(result.preview) and done["report"] == "### Verification passed"
    assert done["download"] == {"value": str(output), "visible": True, "label": "Download clip_4x.mkv"}
    assert views.job_view(sessions.JobUpdate(status="Cancelled. Nothing was kept."))["slider"] is None
