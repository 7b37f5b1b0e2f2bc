"""Hugging Face ZeroGPU: the model runs only inside GPU calls, each call fits the per-call limit, and a
long job runs as several calls that hand a checkpoint on.

ZeroGPU is simulated: the detection (``vsr.environment.on_zero_gpu``) is switched on, and a fake
``spaces`` module's ``GPU`` decorator records the duration it was asked for, pickles the arguments and
results as ZeroGPU's worker process would, marks the time spent inside the call and enforces each
call's reservation on a fake clock. The engines are fakes that record, for every call, whether it
happened inside a GPU call; the multi-call test checks that nothing made inside a call outlives it.
"""

from __future__ import annotations

import dataclasses
import gc
import pickle
import re
import weakref
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import app
import media
from media.ts_chunks import chunk_of
from media_factory import make_video
from job_support import decode, plan
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
LOSSLESS = ("stream-diffvsr", "4x", "", "", 4, "", "ffv1", 18, False)


class FakeSpaces:
    """``spaces`` as on a ZeroGPU Space: ``GPU(duration=...)`` runs the function "on the GPU".

    Arguments and everything yielded are pickled, as between ZeroGPU's processes. A fake clock
    (``clock``, seconds) advances as the stand-in engines load and work; a call whose fake time goes
    past the duration it reserved fails, as ZeroGPU would end it. ``after_call`` runs when a call
    has ended by itself (the test checks there that nothing of the call is left).
    """

    def __init__(self, load_seconds: float = 0.0) -> None:
        self.durations: list[int] = []
        self.handovers: list[Any] = []
        self.inside = False
        self.clock = 0.0
        self.load_seconds = load_seconds
        self.after_call: Callable[[], None] = lambda: None

    def GPU(self, *, duration: Callable[..., int]) -> Callable:  # noqa: N802 - the real package's name
        def decorate(task: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def call(*args: Any) -> Iterator[Any]:
                reserved = duration(*args)
                self.durations.append(reserved)
                args = pickle.loads(pickle.dumps(args))  # the worker process gets pickled arguments
                self.handovers.append(args[3] if len(args) > 3 else None)
                self.inside, start = True, self.clock
                try:
                    for item in task(*args):
                        assert self.clock - start <= reserved, (
                            f"the call ran {self.clock - start:.1f} s of its {reserved} s reservation")
                        yield pickle.loads(pickle.dumps(item))
                finally:
                    self.inside = False
                self.after_call()

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


class SlowGPUEngine(BicubicUpscaler):
    """Stands in for the diffusion model inside GPU calls: it refuses to run outside one, takes
    ``seconds_per_frame`` of the fake GPU clock per frame, and keeps its temporal state "on the GPU"
    (``OnGPU``), which must never leave the call: ``save_stream`` hands over a CPU copy."""

    def __init__(self, gpu: "FakeSpaces", seconds_per_frame: float) -> None:
        super().__init__()
        self.gpu = gpu
        self.seconds_per_frame = seconds_per_frame
        self.resident = OnGPU(torch.zeros(2))

    def describe(self) -> dict:
        return {**super().describe(), "engine": "stream-diffvsr", "device": "cuda:0", "steps": 4}

    def process(self, rgb: np.ndarray) -> np.ndarray:
        assert self.gpu.inside, "the model ran outside the GPU call"
        self.gpu.clock += self.seconds_per_frame
        self.resident = OnGPU(self.resident.tensor + 1)
        return super().process(rgb)

    def save_stream(self) -> dict:
        return {**super().save_stream(), "resident": self.resident.tensor.clone()}

    def load_stream(self, state: object) -> None:
        assert self.gpu.inside and isinstance(state, dict)
        super().load_stream({k: v for k, v in state.items() if k != "resident"})
        self.resident = OnGPU(state["resident"].clone())


class OnGPU:
    """A tensor the engine keeps on the (fake) GPU."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def _plain(value: Any, where: str = "handover") -> None:
    """Fail unless ``value`` holds only plain data and CPU tensors (what may leave a GPU call)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, Fraction)):
        return
    if isinstance(value, torch.Tensor):
        assert value.device.type == "cpu", f"{where}: a {value.device} tensor left the GPU call"
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(item, f"{where}[{key!r}]")
        return
    assert dataclasses.is_dataclass(value) and type(value).__module__.startswith("vsr."), \
        f"{where}: {type(value).__name__} left the GPU call"
    for f in dataclasses.fields(value):
        _plain(getattr(value, f.name), f"{where}.{f.name}")


def test_a_long_video_runs_as_three_gpu_calls_that_hand_a_checkpoint_on(tmp_path, monkeypatch):
    gpu = FakeSpaces(load_seconds=30.0)
    created: list[weakref.ref] = []

    def get_processor(options: UpscaleOptions) -> SlowGPUEngine:
        assert gpu.inside, "the model was loaded outside the GPU call"
        gpu.clock += gpu.load_seconds
        engine = SlowGPUEngine(gpu, seconds_per_frame=0.05)
        created.append(weakref.ref(engine))
        return engine

    monkeypatch.setattr(environment, "on_zero_gpu", lambda: True)
    monkeypatch.setattr(engines, "get_processor", get_processor)
    gpu.after_call = lambda: _nothing_of_the_call_is_left(created)
    clip = make_video(tmp_path / "long.mp4", 64, 48, Fraction(30), 300, audio="aac")  # 10 s
    # 0.05 s per frame and 70 s per call: (70 - 60 s loading) / 1.5 margin = 6.67 s of model time, 133 frames.
    options = _fast_enough_for(tmp_path, 0.05, zerogpu_max_seconds=70)
    jobs = _jobs(options, gpu)

    planned = jobs.plan(str(clip), LOSSLESS).plan
    most = planned.max_frames_per_call  # the engine's 0.05 s plus this machine's media costs per frame
    assert most == frames_per_gpu_call(70, planned.stages.per_frame, planned.stages.fixed) and 100 <= most <= 133
    rest = 300 - 2 * most
    assert (planned.gpu_calls, planned.gpu_call_frames) == (3, (most, most, rest)) and 0 < rest <= most
    reserved = [planned.call_seconds(most)] * 2 + [planned.call_seconds(rest)]
    assert planned.gpu_seconds == sum(reserved) and max(reserved) <= 70
    assert f"3 ZeroGPU calls one after another, {planned.gpu_seconds} s reserved in all" in planned.to_text()
    assert created == []  # planning never touched the model

    updates = list(jobs.run(str(clip), LOSSLESS, False, "session"))
    assert gpu.durations == reserved and len(created) == 3  # one engine per call, each gone after it
    assert len(gpu.handovers) == 3 and gpu.handovers[0].checkpoint is None
    assert [h.checkpoint.next_index for h in gpu.handovers[1:]] == [most, 2 * most]
    for handover in gpu.handovers[1:]:
        _plain(handover.checkpoint)
    done = [int(m[1]) for m in (re.search(r"frame (\d+) of", u.status or "") for u in updates) if m]
    assert done == sorted(done) and done[-1] > 2 * most  # on from call to call (the page gets only the newest)
    for call in (1, 2, 3):
        statuses = [u.status for u in updates if u.status and u.status.startswith(f"GPU call {call} of 3 · ")]
        assert statuses, f"no progress shown during call {call}"
    assert sum(1 for u in updates if u.pictures is not None) >= 3  # the preview went on across calls
    chunks = [chunk_of(Path(u.chunk)) for u in updates if u.chunk is not None]  # the streamed result, too:
    assert [c.first for c in chunks] == [0, *(c.end_index for c in chunks[:-1])] and chunks[-1].end_index == 300
    assert {most, 2 * most} <= {c.end_index for c in chunks}  # each call's chunks end where it ended
    assert all(h.stream == str(chunks[0].path.parent) for h in gpu.handovers)
    result = updates[-1].result
    assert result.report.ok and result.frames == 300 and updates[-1].status.startswith("Done")
    engine = BicubicUpscaler()  # every frame exactly once, in order (timing: the verification passed)
    for low, high in zip(decode(clip), decode(result.output), strict=True):
        assert np.array_equal(high.rgb, engine.process(low.rgb))
    assert [a.codec for a in media.probe(result.output).audio] == ["aac"]
    assert not (result.output.parent / "checkpoint").exists()


def _nothing_of_the_call_is_left(created: list[weakref.ref]) -> None:
    gc.collect()
    alive = [ref() for ref in created if ref() is not None]
    assert not alive, f"an engine made inside a GPU call outlived it: {gc.get_referrers(alive[0])}"


def test_only_a_job_of_which_not_one_frame_fits_is_refused(tmp_path, zerogpu):
    gpu, engine, loads = zerogpu
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30), 30, audio=None)
    options = _fast_enough_for(tmp_path, 1.0, zerogpu_max_seconds=61)  # 1 s x 1.5 + 60 s > 61 s
    with pytest.raises(GPUCallTooLong) as refused:
        plan(clip, options)
    error = refused.value
    assert error.limit_seconds == 61 and error.max_frames == 0 and error.needed_seconds > 61
    assert f"even one frame needs about {error.needed_seconds} s" in str(error)
    assert "locally or on a dedicated GPU" in str(error)
    assert isinstance(pickle.loads(pickle.dumps(error)), GPUCallTooLong)
    # In the app: the plan error, with the upload named by its file name, and no GPU call made.
    with pytest.raises(Exception) as shown:
        app._user_errors(lambda video: _jobs(options, gpu).plan(video, CONTROLS))(str(clip))
    assert type(shown.value).__name__ == "Error" and "at most 61 s" in str(shown.value)
    assert str(tmp_path) not in str(shown.value)
    with pytest.raises(GPUCallTooLong):
        _run(_jobs(options, gpu), clip)
    assert gpu.durations == [] and loads == [] and engine.calls == []
    long_ok = plan(clip, _fast_enough_for(tmp_path, 0.05, zerogpu_max_seconds=61))  # a few frames per call
    most = frames_per_gpu_call(61, long_ok.stages.per_frame, long_ok.stages.fixed)
    assert long_ok.max_frames_per_call == most >= 1
    assert long_ok.gpu_calls == -(-30 // most) >= 2 and sum(long_ok.gpu_call_frames) == 30


def test_the_call_limit_setting(tmp_path):
    env = {"STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS": "120"}
    assert build_options(env=env).zerogpu_max_seconds == 120.0
    assert build_options(env={}).zerogpu_max_seconds == 300.0
    with pytest.raises(OptionsError, match="STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS='soon' is not a number"):
        build_options(env={"STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS": "soon"})
    assert "each GPU call lasts at most 2 min; a longer job runs as several calls" in web.limits_text(
        build_options(env=env), 16, zero_gpu=True)
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
