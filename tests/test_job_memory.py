"""The memory model in the plan (vsr.job.memory): sizes from the files, the flow's memory, the
prediction's shape, the budget, the tiling it picks, and the refusal that names what fits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from job_support import isolate_environment
from media_factory import make_video
from vsr import job
from vsr.job import memory_budget
from vsr.job.errors import JobRefused, NotEnoughMemory
from vsr.job.estimate import Calibration
from vsr.job.pipeline import MediaCosts
from vsr.job.memory import plan_memory
from vsr.job.memory_budget import Budget
from vsr.job.model_sizes import PUBLISHED, model_sizes
from vsr.job.peak_memory import FLOW_ALL_PAIRS, FLOW_ON_DEMAND, flow_bytes, predict_frame
from vsr.model.tiling import Tiling
from vsr.options import OptionsError, build_options, parse_bytes

GB = 10**9


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch) -> None:
    isolate_environment(monkeypatch, tmp_path)


def test_sizes_come_from_the_configs_and_safetensors_headers(fixture_dir: Path) -> None:
    from vsr.model.loading import load_checkpoint

    sizes = model_sizes(str(fixture_dir / "model"), fixture_dir / "raft_large.safetensors")
    ckpt = load_checkpoint(str(fixture_dir / "model"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (sizes.unet_params, sizes.controlnet_params, sizes.vae_params) == (
        count(ckpt.unet), count(ckpt.controlnet), count(ckpt.vae))
    assert 5_257_536 < sizes.raft_params < 5_300_000  # RAFT large's parameters + its BatchNorm statistics
    assert sizes.unet_widths == (16, 16, 32, 32) and sizes.condition_width == 8
    assert sizes.vae_encoder == ((16, 1), (16, 3), (16, 3)) and sizes.vae_decoder_width == 16


def test_unknown_or_uncached_models_fall_back_to_the_published_sizes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_sizes("someone/not-downloaded") == PUBLISHED
    assert model_sizes(str(tmp_path)) == PUBLISHED  # a folder without the layout


def test_all_pairs_flow_is_quadratic_and_on_demand_linear() -> None:
    n = (720 // 8) * (1280 // 8)
    peak, resident = flow_bytes(1280, 720, FLOW_ALL_PAIRS)
    assert 2 * 4 * n * n < peak < 2 * 4 * n * n * 1.05  # the product and its scaled copy, float32, + features
    assert resident == pytest.approx(4 * n * n * (1 + 1 / 4 + 1 / 16 + 1 / 64), rel=1e-6)
    assert flow_bytes(2560, 1440, FLOW_ALL_PAIRS)[0] > 15 * peak  # 16x the volume
    small, middle, large = (flow_bytes(w, h, FLOW_ON_DEMAND) for w, h in ((1280, 720), (2560, 1440), (5120, 2880)))
    assert small[1] == middle[1] == large[1] == 0
    # Linear in the area (a fixed part aside): 4x the area adds 4x as much again.
    assert 3.9 < (large[0] - middle[0]) / (middle[0] - small[0]) <= 4.05
    assert large[0] < 5e9 and middle[0] < 1.5e9  # issue 13's goals for one pair
    with pytest.raises(ValueError, match="unknown flow method"):
        flow_bytes(640, 360, "magic")


def test_tiles_make_the_frame_peak_grow_only_with_the_frame_buffers() -> None:
    sizes = PUBLISHED
    whole = [predict_frame(sizes, w, h, flow=FLOW_ON_DEMAND).frame_peak for w, h in ((320, 180), (640, 360))]
    tiled = [predict_frame(sizes, w, h, tiling=Tiling(64, 64), flow=FLOW_ON_DEMAND).frame_peak
             for w, h in ((320, 180), (640, 360))]
    assert tiled[0] < whole[0] and tiled[1] < whole[1]
    assert tiled[1] - tiled[0] < 0.6 * (whole[1] - whole[0])
    fp32 = predict_frame(sizes, 320, 180, element=4, flow=FLOW_ON_DEMAND)
    bf16 = predict_frame(sizes, 320, 180, element=2, flow=FLOW_ON_DEMAND)
    assert bf16.weights == pytest.approx((fp32.weights + 2 * sizes.raft_params * 2) / 2, rel=1e-9)


def test_whole_frames_when_they_fit_tiles_when_not_and_a_refusal_naming_what_fits() -> None:
    kwargs = dict(device="cuda:0", precision="fp16", flow=FLOW_ON_DEMAND)  # loading is in RAM: frames decide
    roomy = plan_memory(PUBLISHED, 640, 360, tile="auto", budget=Budget(100 * GB, "100 GB test"), **kwargs)
    assert not roomy.tiling.enabled and roomy.peak_bytes == roomy.untiled_peak_bytes
    smallest = predict_frame(PUBLISHED, 640, 360, element=2, tiling=Tiling(32, 32), device="cuda:0",
                             flow=FLOW_ON_DEMAND).peak
    assert smallest < roomy.untiled_peak_bytes
    budget = (smallest + roomy.untiled_peak_bytes) // 2
    tight = plan_memory(PUBLISHED, 640, 360, tile="auto", budget=Budget(budget, "tight"), **kwargs)
    assert tight.tiling.enabled and tight.peak_bytes <= budget < tight.untiled_peak_bytes
    assert "; tiled: denoise " in tight.to_text() and "(whole frames would need " in tight.to_text()
    with pytest.raises(NotEnoughMemory) as refused:
        plan_memory(PUBLISHED, 1920, 1080, tile="auto", budget=Budget(budget, "tight"), **kwargs)
    largest = refused.value.largest
    assert largest is not None and largest[0] < 1920 and abs(largest[0] / largest[1] - 16 / 9) < 0.05
    assert f"{largest[0]}x{largest[1]}" in str(refused.value) and isinstance(refused.value, JobRefused)
    plan_memory(PUBLISHED, *largest, tile="auto", budget=Budget(budget, "tight"), **kwargs)  # it does fit


def test_tiling_off_refuses_what_only_fits_in_tiles_and_a_fixed_tile_is_kept() -> None:
    kwargs = dict(device="cuda:0", precision="fp16", flow=FLOW_ON_DEMAND)  # loading is in RAM: frames decide
    roomy = plan_memory(PUBLISHED, 640, 360, tile="auto", budget=Budget(100 * GB, "x"), **kwargs)
    budget = Budget(int(roomy.untiled_peak_bytes * 0.9), "tight")
    with pytest.raises(NotEnoughMemory, match="With --tile off it does not fit; --tile auto picks tiles"):
        plan_memory(PUBLISHED, 640, 360, tile="off", budget=budget, **kwargs)
    fixed = plan_memory(PUBLISHED, 640, 360, tile=96, budget=Budget(100 * GB, "x"), **kwargs)
    assert fixed.tiling == Tiling(96, 96)


def test_a_model_too_large_for_the_budget_says_no_input_fits() -> None:
    with pytest.raises(NotEnoughMemory, match="Not even a small input fits") as refused:
        plan_memory(PUBLISHED, 64, 64, device="cpu", precision="fp32", tile="auto", budget=Budget(GB, "1 GB"))
    assert refused.value.largest is None and refused.value.needed_bytes > GB


def test_the_budget_is_max_memory_else_a_share_of_ram(monkeypatch) -> None:
    assert memory_budget.memory_budget("cpu", 6 * GB) == Budget(6 * GB, "6.0 GB allowed on cpu (--max-memory / "
                                                                  "STREAM_DIFFVSR_MAX_MEMORY)")
    monkeypatch.setattr(memory_budget, "cpu_available_bytes", lambda: 20 * GB)
    assert memory_budget.memory_budget("cpu") == Budget(14 * GB, "14.0 GB usable on cpu (70% of 20.0 GB available RAM)")
    assert memory_budget.memory_budget("ZeroGPU").bytes is None


def test_this_machine_reports_its_available_memory() -> None:
    available = memory_budget.cpu_available_bytes()
    assert available is not None and 2**27 < available < 2**50


@pytest.mark.parametrize(("text", "value"), [("6GB", 6 * GB), ("6.5 g", int(6.5 * GB)), ("6000MB", 6 * GB),
                                             ("8GiB", 8 * 2**30), ("12", 12 * GB), ("", None), ("none", None)])
def test_memory_amounts_parse(text: str, value: int | None) -> None:
    assert parse_bytes(text) == value


def test_tile_and_max_memory_options_and_their_variables(monkeypatch) -> None:
    assert build_options({}).tile == "auto" and build_options({}).max_memory is None
    assert build_options({"tile": "64"}).tile == 64 and build_options({"tile": "OFF"}).tile == "off"
    monkeypatch.setenv("STREAM_DIFFVSR_TILE", "128")
    monkeypatch.setenv("STREAM_DIFFVSR_MAX_MEMORY", "5GB")
    options = build_options({})
    assert options.tile == 128 and options.max_memory == 5 * GB
    for bad in ("20", "65", "big"):
        with pytest.raises(OptionsError, match="is not a tiling"):
            build_options({"tile": bad})
    with pytest.raises(OptionsError, match="is not an amount of memory"):
        build_options({"max_memory": "lots"})
    with pytest.raises(OptionsError, match="under 128 MiB"):
        build_options({"max_memory": "10MB"})


class FixtureEstimator:
    """The tiny fixture engine's description and a made-up speed: a plan without loading a model."""

    def __init__(self, fixture_dir: Path) -> None:
        self.fixture_dir = fixture_dir

    def engine(self) -> dict:
        return {"engine": "stream-diffvsr", "device": "cpu", "precision": "fp32", "steps": 4, "seed": None,
                "model": str(self.fixture_dir / "model"), "scale": 4}

    def will_measure(self, width: int, height: int) -> bool:
        return False

    def calibration(self, width: int, height: int) -> Calibration:
        return Calibration("test", ((1000, 0.1), (4000, 0.4)), cached=True)

    def media(self, info, settings) -> MediaCosts:
        return MediaCosts.none()


def test_the_plan_shows_and_records_the_peak_and_its_tiling(tmp_path: Path, fixture_dir: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 64, 48, 25, 5, audio=None)
    options = build_options({"model_id": str(fixture_dir / "model"), "max_memory": "8GB"})
    plan = job.plan(src, options, estimator=FixtureEstimator(fixture_dir))
    assert plan.memory is not None and not plan.memory.tiling.enabled
    line = next(line for line in plan.to_text().splitlines() if line.startswith("Memory:"))
    assert line.startswith("Memory:   peak memory about ")
    assert line.endswith(" GB of 8.0 GB allowed on cpu (--max-memory / STREAM_DIFFVSR_MAX_MEMORY); whole frames")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["memory"]["budget_bytes"] == 8 * GB and data["memory"]["tiling"]["denoise"] is None
    assert job.preview_plan(plan, 0.1).memory == plan.memory


def test_the_plan_refuses_a_job_that_cannot_fit(tmp_path: Path, fixture_dir: Path) -> None:
    src = make_video(tmp_path / "in.mp4", 640, 360, 25, 2, audio=None)
    options = build_options({"model_id": str(fixture_dir / "model"), "max_memory": "3GB"})
    with pytest.raises(NotEnoughMemory, match=r"more than 3\.0 GB allowed on cpu .* largest input of this shape"):
        job.plan(src, options, estimator=FixtureEstimator(fixture_dir))  # 4.2 GB untiled; tiles cannot shrink RAFT's 1.5 GB


def test_auto_at_the_fixture_size_keeps_whole_frames(fixture_dir: Path) -> None:
    sizes = model_sizes(str(fixture_dir / "model"), fixture_dir / "raft_large.safetensors")
    chosen = plan_memory(sizes, 48, 32, device="cpu", precision="fp32", tile="auto",
                         budget=memory_budget.memory_budget("cpu"))
    assert chosen.tiling == Tiling()
    assert replace(chosen, notes=("x",)).to_dict()["notes"] == ["x"]


@pytest.mark.slow
def test_the_cli_refuses_what_cannot_fit_naming_the_largest_input(tmp_path: Path, fixture_dir: Path,
                                                                  capsys) -> None:
    """640x360 -> 2560x1440 needs about 4.2 GB on a CPU (1.5 GB of it RAFT at 2560x1440, 1.5 GB
    the encoder's look-ahead): with 3 GB allowed it is refused before any work with exit code 3, naming
    the largest 16:9 input that fits."""
    from vsr.cli import EXIT_INPUT, main

    src = make_video(tmp_path / "in.mp4", 640, 360, 25, 2, audio=None)
    code = main(["upscale", str(src), "-o", str(tmp_path / "out.mp4"), "--model-id", str(fixture_dir / "model"),
                 "--flow-weights", str(fixture_dir / "raft_large.safetensors"), "--device", "cpu",
                 "--max-memory", "3GB"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == EXIT_INPUT == 3, line
    assert "more than 3.0 GB allowed on cpu" in line and "most at the flow step" in line
    assert "The largest input of this shape that fits is about " in line
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "cache").exists()  # nothing was measured
