"""Hugging Face ZeroGPU: the model runs only inside the GPU call, each call fits the per-call limit.

ZeroGPU is simulated: the detection (``vsr.environment.on_zero_gpu``) is switched on, and a fake
``spaces`` module's ``GPU`` decorator records the duration it was asked for, pickles the arguments as
ZeroGPU's worker process would, and marks the time spent inside the call. The engine is a fake that
records, for every call, whether it happened inside that GPU call.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import app
from media_factory import make_video
from job_support import plan
from vsr import environment, job
from vsr.model import engines
from vsr.job import estimate as calibration
from vsr.web import sessions
from vsr.web import texts as web
from vsr.model.bicubic import BicubicUpscaler
from vsr.job.errors import GPUCallTooLong
from vsr.options import OptionsError, UpscaleOptions, build_options
from vsr.job.estimate import zerogpu_calibration_key
from vsr.job.planning import frames_per_gpu_call, gpu_seconds

CONTROLS = ("stream-diffvsr", "4x", "", "", 4, "", "h264", 18, False)


class FakeSpaces:
    """``spaces`` as on a ZeroGPU Space: ``GPU(duration=...)`` runs the function "on the GPU"."""

    def __init__(self) -> None:
        self.durations: list[int] = []
        self.inside = False

    def GPU(self, *, duration: Callable[..., int]) -> Callable:  # noqa: N802 - the real package's name
        def decorate(task: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(*args: Any) -> Iterator[Any]:
                self.durations.append(duration(*args))
                args = pickle.loads(pickle.dumps(args))  # the worker process gets pickled arguments
                self.inside = True
                try:
                    for item in task(*args):
                        yield pickle.loads(pickle.dumps(item))
                finally:
                    self.inside = False

            return call

        return decorate


class GPUOnlyEngine(BicubicUpscaler):
    """Stands in for the diffusion model: records each call and whether it was inside the GPU call."""

    def __init__(self, gpu: FakeSpaces) -> None:
        super().__init__()
        self.gpu = gpu
        self.calls: list[tuple[str, bool]] = []

    def describe(self) -> dict:
        return {**super().describe(), "engine": "stream-diffvsr", "device": "cuda:0", "steps": 4}

    def start_stream(self, seed: int | None = None) -> int:
        self.calls.append(("start_stream", self.gpu.inside))
        return super().start_stream(seed)

    def process(self, rgb: np.ndarray) -> np.ndarray:
        self.calls.append(("process", self.gpu.inside))
        return super().process(rgb)


@pytest.fixture
def zerogpu(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeSpaces, GPUOnlyEngine, list[bool]]:
    """ZeroGPU switched on; ``vsr.model.engines.get_processor`` hands out the recording engine and notes
    whether each load happened inside the GPU call; ``_jobs`` runs jobs through the fake GPU function."""
    gpu = FakeSpaces()
    engine = GPUOnlyEngine(gpu)
    loads: list[bool] = []

    def get_processor(options: UpscaleOptions) -> GPUOnlyEngine:
        loads.append(gpu.inside)
        return engine

    monkeypatch.setattr(environment, "on_zero_gpu", lambda: True)
    monkeypatch.setattr(engines, "get_processor", get_processor)
    return gpu, engine, loads


def _settings(tmp_path: Path, **overrides: Any) -> UpscaleOptions:
    return build_options({"output_dir": str(tmp_path / "out"), "tmp_dir": str(tmp_path / "tmp"),
                          "cache_dir": str(tmp_path / "cache"), "scene_cuts": False, **overrides}, env={})


def _jobs(settings: UpscaleOptions, gpu: FakeSpaces | None = None) -> sessions.WebJobs:
    """The page's jobs on ZeroGPU, their GPU function made with ``gpu``'s decorator."""
    events = sessions.gpu_function(gpu) if gpu is not None else sessions.job_events
    return sessions.WebJobs(settings, events=events, zero_gpu=True)


def _run(jobs: sessions.WebJobs, video: Path, *, sample: bool = False) -> list[sessions.JobUpdate]:
    return list(jobs.run(str(video), CONTROLS, sample, "session"))


def test_the_model_is_loaded_and_run_only_inside_the_gpu_call(tmp_path, zerogpu):
    gpu, engine, loads = zerogpu
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 8)
    jobs = _jobs(_settings(tmp_path), gpu)

    planned = jobs.plan(str(clip), CONTROLS).plan  # what the page shows on upload
    assert loads == [] and engine.calls == []  # planning never touched the model
    assert planned.calibration.provisional and planned.gpu_call_limit == 300.0

    updates = _run(jobs, clip)
    assert loads == [True]
    assert engine.calls and all(inside for _, inside in engine.calls), engine.calls
    assert gpu.durations == [planned.gpu_seconds]  # the reservation the plan computed
    final = updates[-1]
    output = final.result.output
    assert output.is_file() and final.status.startswith("Done")

    # The run recorded its measured speed: the next plan's estimate is measured, not provisional.
    again = jobs.plan(str(clip), CONTROLS).plan
    assert not again.calibration.provisional
    assert again.seconds_per_frame != planned.seconds_per_frame
    assert "measured on this device" in again.to_text()
    assert loads == [True] and not gpu.inside


def test_an_unmeasured_estimate_is_labelled_provisional(tmp_path, zerogpu):
    clip = make_video(tmp_path / "clip.mp4", 320, 180, Fraction(30), 3, audio=None)
    planned = plan(clip, _settings(tmp_path))
    assert planned.calibration.provisional
    assert planned.seconds_per_frame == pytest.approx(0.328)  # the paper's 720p figure, 4 steps
    text = planned.to_text()
    assert "provisional: not yet measured on this device" in text
    assert f"one ZeroGPU call of {planned.gpu_seconds} s reserved" in text and "limit is 300 s" in text
    page = web.plan_markdown(planned)
    assert "(provisional: not yet measured on this device)" in page and "on this machine" not in page
    assert planned.to_dict()["estimate_provisional"] is True


def _fast_enough_for(tmp_path: Path, seconds_per_frame: float, **overrides: Any) -> UpscaleOptions:
    """Settings whose ZeroGPU calibration says the model takes ``seconds_per_frame`` at 64x48."""
    options = _settings(tmp_path, **overrides)
    calibration.record(options.cache_dir, [zerogpu_calibration_key(options)], 64, 48, seconds_per_frame)
    return options


def test_a_video_too_long_for_one_call_is_refused_with_the_longest_length_that_fits(tmp_path, zerogpu):
    gpu, engine, loads = zerogpu
    clip = make_video(tmp_path / "long.mp4", 64, 48, Fraction(30), 180, audio=None)  # 6 s
    # 0.05 s per frame of model time and 70 s per call: (70 - 60 s loading) / 1.5 margin = 6.67 s for the
    # whole job, which also decodes, encodes (beside the GPU) and verifies: about 130 frames.
    options = _fast_enough_for(tmp_path, 0.05, zerogpu_max_seconds=70)
    with pytest.raises(GPUCallTooLong) as refused:
        plan(clip, options)
    stages = plan(clip, options.replace(end=1)).stages  # the same costs per frame (measured once)
    assert stages.engine == 0.05 and stages.overlap and stages.per_frame >= 0.05
    needed = gpu_seconds(stages.fixed + 180 * stages.per_frame)
    most = frames_per_gpu_call(70, stages.per_frame, stages.fixed)
    assert 100 < most < 134
    error = refused.value
    assert (error.limit_seconds, error.needed_seconds, error.max_frames) == (70, needed, most)
    assert error.max_seconds == pytest.approx(most / 30)
    message = str(error)
    for part in ("one GPU call may last at most 70 s", f"needs about {needed} s",
                 f"180 frames x {stages.per_frame:.3f} s per frame + {stages.fixed:g} s to start and finish, x 1.5 "
                 "margin, + 60 s to load the model; measured on this device",
                 f"At 64x48 -> 256x192 with the stream-diffvsr engine (4 steps), one call can upscale at most {most} "
                 f"frames, about {int(most / 3) / 10:.1f} s of this video.",
                 "Trim the video (start/end)", "locally or on a dedicated GPU"):
        assert part in message, (part, message)
    assert isinstance(pickle.loads(pickle.dumps(error)), GPUCallTooLong)

    # The length it names really fits; one frame more does not.
    assert plan(clip, options.replace(end=Fraction(most, 30))).gpu_seconds <= 70
    with pytest.raises(GPUCallTooLong):
        plan(clip, options.replace(end=Fraction(most + 1, 30)))

    # In the app: the plan error, with the upload named by its file name, and no GPU call made.
    with pytest.raises(Exception) as shown:
        app._user_errors(lambda video: _jobs(options, gpu).plan(video, CONTROLS))(str(clip))
    assert type(shown.value).__name__ == "Error" and "at most 70 s" in str(shown.value)
    assert str(tmp_path) not in str(shown.value)
    with pytest.raises(GPUCallTooLong):
        _run(_jobs(options, gpu), clip)
    assert gpu.durations == [] and loads == [] and engine.calls == []

    # The 2-second sample of the same video fits in one call and runs.
    updates = _run(_jobs(options, gpu), clip, sample=True)
    assert gpu.durations == [gpu_seconds(stages.total(60))] and updates[-1].status.startswith("Done")


def test_the_call_limit_setting(tmp_path):
    env = {"STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS": "120"}
    assert build_options(env=env).zerogpu_max_seconds == 120.0
    assert build_options(env={}).zerogpu_max_seconds == 300.0
    with pytest.raises(OptionsError, match="STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS='soon' is not a number"):
        build_options(env={"STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS": "soon"})
    assert "one GPU call of 2 min" in web.limits_text(build_options(env=env), 16, zero_gpu=True)
    assert "GPU call" not in web.limits_text(build_options(env=env), 16)


def test_outside_zerogpu_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "on_zero_gpu", lambda: False)
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 3, audio=None)
    planned = plan(clip, _settings(tmp_path, engine="bicubic", zerogpu_max_seconds=61))
    assert planned.gpu_call_limit is None and planned.max_frames_per_call is None
    assert not planned.calibration.provisional and "GPU:" not in planned.to_text()


def test_zerogpu_detection_is_the_spaces_packages_own(monkeypatch):
    import spaces.config

    monkeypatch.setattr(spaces.config.Config, "zero_gpu", True)
    assert environment.on_zero_gpu() is True
    monkeypatch.setattr(spaces.config.Config, "zero_gpu", False)
    assert environment.on_zero_gpu() is False
    monkeypatch.setitem(__import__("sys").modules, "spaces.config", None)  # not installed: ImportError
    assert environment.on_zero_gpu() is False


@settings(max_examples=60, deadline=None)
@given(limit=st.floats(50, 3600), seconds_per_frame=st.floats(1e-4, 30))
def test_frames_per_call_is_the_exact_inverse_of_the_reservation(limit, seconds_per_frame):
    frames = frames_per_gpu_call(limit, seconds_per_frame)
    if frames > 0:
        assert gpu_seconds(frames * seconds_per_frame) <= limit
    assert gpu_seconds((frames + 1) * seconds_per_frame) > limit


def test_a_model_that_fails_to_load_in_the_gpu_call_turns_on_the_notice(tmp_path, zerogpu, monkeypatch):
    from vsr.model.errors import ModelNotFoundError

    def get_processor(options: UpscaleOptions) -> None:
        raise ModelNotFoundError("no-such/model: not found on the Hub. Check the id (STREAM_DIFFVSR_MODEL_ID).")

    monkeypatch.setattr(engines, "get_processor", get_processor)
    gpu = zerogpu[0]
    jobs = _jobs(_settings(tmp_path), gpu)
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 3, audio=None)
    with pytest.raises(ModelNotFoundError):
        _run(jobs, clip)
    assert "no-such/model: not found" in jobs.model.notice() and "Bicubic" in jobs.model.notice()
    assert list((tmp_path / "out").iterdir()) == []  # the job folder was removed
