"""The settings object: defaults, layering (env < overrides), and a clear error for every bad value."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsr import environment
from vsr.options import OptionsError, UpscaleOptions, build_options, parse_time


def test_defaults_without_environment() -> None:
    options = build_options(env={})
    assert options.engine == "stream-diffvsr"
    assert options.model_id == "Jamichsu/Stream-DiffVSR"
    assert options.steps == 4
    assert options.device == "auto" and options.precision == "auto"
    assert options.height is None and options.height_label == "4x"
    assert options.codec == "auto" and options.effective_crf == 18  # auto: h264, or hevc Main 10 for a deep/HDR source
    assert options.scene_cuts is True
    assert options.seed is None


def test_options_are_frozen() -> None:
    options = build_options(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.steps = 2  # type: ignore[misc]


def test_environment_then_overrides(tmp_path: Path) -> None:
    env = {
        "STREAM_DIFFVSR_ENGINE": "bicubic",
        "STREAM_DIFFVSR_MODEL_ID": str(tmp_path),
        "STREAM_DIFFVSR_DEVICE": "cuda:1",
        "STREAM_DIFFVSR_PRECISION": "BF16",
        "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "tmp"),
        "STREAM_DIFFVSR_MAX_DURATION": "30.5",
        "UNRELATED": "x",
    }
    options = build_options(env=env)
    assert options.engine == "bicubic"
    assert options.model_id == str(tmp_path)
    assert options.device == "cuda:1"
    assert options.precision == "bf16"
    assert options.tmp_dir == tmp_path / "tmp"
    assert options.max_duration == 30.5
    # Overrides (CLI flags, UI controls) win over the environment; None means "not given".
    options = build_options({"engine": "stream-diffvsr", "device": None}, env=env)
    assert options.engine == "stream-diffvsr"
    assert options.device == "cuda:1"


def test_empty_environment_values_are_ignored() -> None:
    assert build_options(env={"STREAM_DIFFVSR_ENGINE": "  "}).engine == "stream-diffvsr"


def test_flow_weights_must_exist(tmp_path: Path) -> None:
    weights = tmp_path / "raft.safetensors"
    with pytest.raises(OptionsError, match="no such file"):
        build_options({"flow_weights": weights}, env={})
    weights.write_bytes(b"x")
    assert build_options({"flow_weights": str(weights)}, env={}).flow_weights == weights
    with pytest.raises(OptionsError, match=r"\.pth, \.pt or \.safetensors"):
        build_options({"flow_weights": tmp_path / "raft.bin"}, env={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"engine": "esrgan"}, r"engine='esrgan' is not valid\. Use one of: stream-diffvsr, bicubic"),
        ({"steps": 0}, r"steps=0 is out of range: it must be between 1 and 50"),
        ({"steps": "four"}, r"steps='four' is not a whole number"),
        ({"steps": True}, r"steps=True must be a whole number"),
        ({"seed": -1}, r"seed=-1 is out of range"),
        ({"device": "gpu"}, r"device='gpu' is not a device\. Use auto, cpu, cuda, cuda:N"),
        ({"precision": "int8"}, r"precision='int8' is not valid\. Use one of: auto, fp32, fp16, bf16"),
        ({"attention": "flash"}, r"attention='flash' is not valid"),
        ({"flow_scale": "0.3"}, r"flow_scale='0.3' is not a flow scale\. Use one of: 1, 0\.5, 0\.25"),
        ({"flow_scale": "half"}, r"flow_scale='half' is not a flow scale"),
        ({"flow_scale": 2}, r"flow_scale=2 is not a flow scale"),
        ({"flow_scale": True}, r"flow_scale=True is not a flow scale"),
        ({"height": 480}, r"height=480 is not an output size\. Use 4x or a height: 720, 1080, 1440, 2160"),
        ({"start": "abc"}, r"start='abc' is not a time"),
        ({"start": -2}, r"start=-2 is negative"),
        ({"end": "1:75"}, r"minutes and seconds must be below 60"),
        ({"start": 5, "end": 3}, r"end \(3 s\) must be after start \(5 s\)"),
        ({"codec": "mpeg2"}, r"codec='mpeg2' is not valid\. Use one of: h264, hevc, av1, prores, ffv1"),
        ({"codec": "h264", "crf": 60}, r"crf=60 is out of range for h264: use 0 to 51"),
        ({"codec": "ffv1", "crf": 10}, r"crf=10 does not apply to ffv1"),
        ({"scene_cuts": "maybe"}, r"scene_cuts='maybe' must be on or off"),
        ({"scene_threshold": "0"}, r"scene_threshold='0' must be a positive number"),
        ({"scene_threshold": "nan"}, r"must be a positive number"),
        ({"model_id": "  "}, r"model_id is empty\. Give a Hugging Face model id"),
        ({"max_output_pixels": 0}, r"max_output_pixels=0 is out of range: it must be at least 1"),
        ({"max_duration": "-1"}, r"max_duration='-1' must be a positive number"),
        ({"output_dir": ""}, r"output_dir is empty"),
        ({"colour": "red"}, r"Unknown option 'colour'"),
    ],
)
def test_bad_values_name_the_value_and_the_fix(overrides: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        build_options(overrides, env={})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(OptionsError, match=r"STREAM_DIFFVSR_PRECISION='half' is not valid"):
        build_options(env={"STREAM_DIFFVSR_PRECISION": "half"})
    with pytest.raises(OptionsError, match=r"STREAM_DIFFVSR_MAX_INPUT_PIXELS='lots' is not a whole number"):
        build_options(env={"STREAM_DIFFVSR_MAX_INPUT_PIXELS": "lots"})


@pytest.mark.parametrize(("value", "scale"), [("1", 1.0), ("1.0", 1.0), ("0.5", 0.5), (" .25 ", 0.25), (0.5, 0.5)])
def test_flow_scale_values_and_environment(value: object, scale: float) -> None:
    assert build_options(env={}).flow_scale == 1.0
    assert build_options({"flow_scale": value}, env={}).flow_scale == scale
    assert build_options(env={"STREAM_DIFFVSR_FLOW_SCALE": str(value)}).flow_scale == scale
    with pytest.raises(OptionsError, match=r"STREAM_DIFFVSR_FLOW_SCALE='0\.75' is not a flow scale"):
        build_options(env={"STREAM_DIFFVSR_FLOW_SCALE": "0.75"})


def test_options_error_is_a_value_error() -> None:
    assert issubclass(OptionsError, ValueError)


@pytest.mark.parametrize(
    ("text", "height"), [("4x", None), ("720", 720), ("1080p", 1080), ("1440", 1440), ("4K", 2160), ("2160p", 2160)]
)
def test_height_presets(text: str, height: int | None) -> None:
    assert build_options({"height": text}, env={}).height == height


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12.5", Fraction(25, 2)), ("1:02", Fraction(62)), ("0:01:02.5", Fraction(125, 2)), ("7", Fraction(7)),
     (1.1, Fraction(11, 10)), ("", None)],
)
def test_times(text: object, seconds: Fraction | None) -> None:
    assert parse_time(text) == seconds


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_timestamps_round_trip(hours: int, minutes: int, secs: int, millis: int) -> None:
    text = f"{hours}:{minutes:02d}:{secs:02d}.{millis:03d}"
    assert parse_time(text) == Fraction(hours * 3600 + minutes * 60 + secs) + Fraction(millis, 1000)


def test_replace_validates_again() -> None:
    options = build_options(env={})
    assert options.replace(codec="hevc").effective_crf == 20
    with pytest.raises(OptionsError):
        options.replace(steps=99)


def test_every_environment_variable_maps_to_something() -> None:
    from vsr import options as options_module

    mapped = options_module._ENV_TO_OPTION
    # Variables outside the options object: logging, Gradio's own listen address and the server's logins
    # (vsr.options.server_logins: never in a job's options, which are logged and kept in job records).
    others = {"STREAM_DIFFVSR_LOG_LEVEL", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "STREAM_DIFFVSR_AUTH"}
    assert set(mapped) | others == environment.NAMES
    assert all(name in {f.name for f in dataclasses.fields(UpscaleOptions)} for name in mapped.values())


def test_only_the_environment_module_reads_os_environ() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for path in [*root.glob("vsr/**/*.py"), *root.glob("media/**/*.py"), root / "app.py"]:
        if not path.is_file() or path.name == "environment.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "os.environ" in text or "os.getenv" in text:
            offenders.append(str(path.relative_to(root)))
    assert offenders == [], f"environment variables must be read only in vsr/environment.py: {offenders}"
