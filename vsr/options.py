"""``UpscaleOptions``: every option of a job, in one frozen object, built and validated in one place.

``build_options`` is the only constructor the CLI, the web app and the tests use. It layers, from
lowest to highest priority: the defaults below, environment variables (read through
``vsr.environment``), then explicit overrides (CLI flags or UI controls). Every value is parsed
and checked here; a bad one raises ``OptionsError`` naming the value and the fix.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from vsr import environment
from vsr import switches

DEFAULT_MODEL_ID = "Jamichsu/Stream-DiffVSR"
ENGINES = ("stream-diffvsr", "bicubic")
TEMPORAL_ENGINES = frozenset({"stream-diffvsr"})
"""Engines that draw noise (the seed decides the result) and carry context from frame to frame (scene
cuts reset it). For the others (bicubic) a seed and scene cuts mean nothing, and nobody is told about them."""
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
ATTENTIONS = ("sdpa", "xformers", "sliced")
FLOW_SCALES = (1.0, 0.5, 0.25)  # optical flow on frames downscaled by this factor (1 = exact)
HEIGHT_PRESETS = (720, 1080, 1440, 2160)
AUTO_CODEC = "auto"
"""Codec ``auto`` (the default): h264, or hevc (Main 10) for a source deeper than 8 bits or with a PQ/HLG
transfer; the plan makes it concrete (``vsr.job.planning.resolve_codec``) and says which."""
CODECS = ("h264", "hevc", "av1", "prores", "ffv1", AUTO_CODEC)
# CRF range and default per codec; None: the codec has no CRF (ProRes profiles, lossless FFV1).
CRF_RANGE: dict[str, tuple[int, int, int] | None] = {
    AUTO_CODEC: (0, 51, 18),  # h264's and hevc's range; the default of the codec it becomes applies
    "h264": (0, 51, 18),
    "hevc": (0, 51, 20),
    "av1": (0, 63, 28),
    "prores": None,
    "ffv1": None,
}
# Encoder speed presets per codec (None: the codec has none). Slower presets give smaller files.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
PRESETS: dict[str, tuple[str, ...] | None] = {
    AUTO_CODEC: X264_PRESETS,  # libx264 and libx265 share them
    "h264": X264_PRESETS,
    "hevc": X264_PRESETS,
    "av1": tuple(str(n) for n in range(14)),  # SVT-AV1: 0 (slowest) .. 13 (fastest)
    "prores": None,
    "ffv1": None,
}
SCALE = 4
MIN_TILE = 32
TILE_MULTIPLE = 8
"""Latent tiles (``tile``): sides are multiples of 8 (the UNet halves the grid three times), at least 32."""


class OptionsError(ValueError):
    """An option has a value we cannot use; the message names the option, the value and the fix."""


@dataclass(frozen=True)
class UpscaleOptions:
    """Every option of an upscaling job. Build it with ``build_options``, never directly."""

    engine: str = "stream-diffvsr"
    model_id: str = DEFAULT_MODEL_ID
    flow_weights: Path | None = None
    steps: int = 4
    seed: int | None = None
    device: str = "auto"
    precision: str = "auto"
    attention: str = "sdpa"
    flow_scale: float = 1.0
    optimisations: tuple[str, ...] = ("auto",)  # speed switches, see vsr.switches
    height: int | None = None  # None: exactly 4x the input; else a target output height
    start: Fraction | None = None  # seconds on the source's time line
    end: Fraction | None = None
    codec: str = AUTO_CODEC  # auto: h264, or hevc Main 10 for a deep or HDR source (AUTO_CODEC)
    crf: int | None = None  # None: the codec's default (see CRF_RANGE)
    preset: str | None = None  # None: the codec's default (see PRESETS)
    scene_cuts: bool = True
    scene_threshold: float = 27.0
    tmp_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "stream-diffvsr")
    output_dir: Path = Path("outputs")
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "stream-diffvsr")
    max_input_pixels: int = 1920 * 1080
    max_output_pixels: int = 7680 * 4320
    max_duration: float = 600.0
    max_upload_mb: int = 2048
    zerogpu_max_seconds: float = 300.0  # longest GPU call on a ZeroGPU Space (see vsr.job.planning)
    checkpoint_seconds: float = 30.0  # a running job's checkpoint every this many seconds of work; 0: none
    tile: int | str = "auto"  # "auto", "off" or a latent tile side (vsr.model.tiling, chosen by vsr.job.memory)
    max_memory: int | None = None  # bytes the job may use on its device; None: free GPU memory / 70 % of RAM
    cluster: str | None = None  # the web app's Ray cluster (auto, ray://host:10001, local); None: in its own process

    @property
    def effective_crf(self) -> int | None:
        """The CRF the encoder gets: the chosen one, or the codec's default."""
        spec = CRF_RANGE[self.codec]
        if spec is None:
            return None
        return self.crf if self.crf is not None else spec[2]

    @property
    def height_label(self) -> str:
        return "4x" if self.height is None else f"{self.height}p"

    def replace(self, **changes: Any) -> "UpscaleOptions":
        """A copy with ``changes`` applied and validated again."""
        return build_options(changes, base=self)


# Environment variable -> option name.
_ENV_TO_OPTION = {
    "STREAM_DIFFVSR_ENGINE": "engine",
    "STREAM_DIFFVSR_MODEL_ID": "model_id",
    "STREAM_DIFFVSR_FLOW_WEIGHTS": "flow_weights",
    "STREAM_DIFFVSR_DEVICE": "device",
    "STREAM_DIFFVSR_PRECISION": "precision",
    "STREAM_DIFFVSR_ATTENTION": "attention",
    "STREAM_DIFFVSR_FLOW_SCALE": "flow_scale",
    "STREAM_DIFFVSR_OPTIMISATIONS": "optimisations",
    "STREAM_DIFFVSR_TMP_DIR": "tmp_dir",
    "STREAM_DIFFVSR_OUTPUT_DIR": "output_dir",
    "STREAM_DIFFVSR_CACHE_DIR": "cache_dir",
    "STREAM_DIFFVSR_MAX_INPUT_PIXELS": "max_input_pixels",
    "STREAM_DIFFVSR_MAX_OUTPUT_PIXELS": "max_output_pixels",
    "STREAM_DIFFVSR_MAX_DURATION": "max_duration",
    "STREAM_DIFFVSR_MAX_UPLOAD_MB": "max_upload_mb",
    "STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS": "zerogpu_max_seconds",
    "STREAM_DIFFVSR_CHECKPOINT_SECONDS": "checkpoint_seconds",
    "STREAM_DIFFVSR_TILE": "tile",
    "STREAM_DIFFVSR_MAX_MEMORY": "max_memory",
    "STREAM_DIFFVSR_CLUSTER": "cluster",
}
_FIELDS = {f.name for f in dataclasses.fields(UpscaleOptions)}


def env_variable(option: str) -> str | None:
    """The environment variable that sets ``option`` (``"model_id"`` -> ``"STREAM_DIFFVSR_MODEL_ID"``),
    or None when the environment does not set it."""
    return next((variable for variable, name in _ENV_TO_OPTION.items() if name == option), None)


def build_options(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    base: UpscaleOptions | None = None,
) -> UpscaleOptions:
    """Build validated options: defaults (or ``base``) < environment < ``overrides``.

    ``overrides`` maps option names to values, as Python values or as the strings a person typed;
    a value of ``None`` means "not given" and leaves the lower layer in place. With ``base`` given,
    the environment is not read again (``base`` already holds it).
    """
    raw: dict[str, Any] = {}
    if base is None:
        for var, value in environment.read(env).items():
            if var in _ENV_TO_OPTION:
                raw[_ENV_TO_OPTION[var]] = (value, var)
    for name, value in (overrides or {}).items():
        if name not in _FIELDS:
            raise OptionsError(f"Unknown option {name!r}. Known options: {', '.join(sorted(_FIELDS))}.")
        if value is not None:
            raw[name] = (value, name)
    values = dataclasses.asdict(base) if base is not None else {}
    for name, (value, source) in raw.items():
        values[name] = _PARSERS[name](value, source)
    options = UpscaleOptions(**values)
    _check_combination(options)
    return options


# ---------------------------------------------------------------------------------------------
# Parsers: each takes the raw value and the name to blame (option or environment variable).


def _choice(choices: tuple[str, ...]):
    def parse(value: Any, source: str) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise OptionsError(f"{source}={value!r} is not valid. Use one of: {', '.join(choices)}.")
        return text

    return parse


def _device(value: Any, source: str) -> str:
    text = str(value).strip().lower()
    if text in DEVICES or re.fullmatch(r"cuda:\d+", text):
        return text
    raise OptionsError(f"{source}={value!r} is not a device. Use auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps.")


def _integer(low: int, high: int | None, what: str):
    def parse(value: Any, source: str) -> int:
        if isinstance(value, bool):
            raise OptionsError(f"{source}={value!r} must be a whole number ({what}).")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise OptionsError(f"{source}={value!r} is not a whole number. Give {what}.") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise OptionsError(f"{source}={value!r} is out of range: it must be {bound} ({what}).")
        return number

    return parse


def _positive_float(what: str):
    def parse(value: Any, source: str) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise OptionsError(f"{source}={value!r} is not a number. Give {what}.") from None
        if not number > 0 or number != number or number == float("inf"):
            raise OptionsError(f"{source}={value!r} must be a positive number ({what}).")
        return number

    return parse


def _non_negative_float(what: str):
    def parse(value: Any, source: str) -> float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise OptionsError(f"{source}={value!r} is not a number. Give {what}.") from None
        if not number >= 0 or number == float("inf"):
            raise OptionsError(f"{source}={value!r} must be 0 or a positive number ({what}).")
        return number

    return parse


def _optional_int(inner):
    def parse(value: Any, source: str) -> int | None:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "random"):
            return None
        return inner(value, source)

    return parse


def _text(value: Any, source: str) -> str:
    text = str(value).strip()
    if not text:
        raise OptionsError(f"{source} is empty. Give a Hugging Face model id (e.g. {DEFAULT_MODEL_ID}) "
                           "or a local folder.")
    return text


def _optional_text(value: Any, source: str) -> str | None:
    text = str(value).strip().lower()
    return text or None


def _path(value: Any, source: str) -> Path:
    text = str(value).strip()
    if not text:
        raise OptionsError(f"{source} is empty. Give a folder path.")
    return Path(text).expanduser()


def _flow_weights(value: Any, source: str) -> Path | None:
    text = str(value).strip()
    if text.lower() in ("", "default", "none"):
        return None
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".pth", ".pt", ".safetensors"):
        raise OptionsError(f"{source}={value!r}: RAFT weights must be a .pth, .pt or .safetensors file.")
    if not path.is_file():
        raise OptionsError(f"{source}={value!r}: no such file. Give the path of a RAFT large weights file, "
                           "or leave it unset to use torchvision's download.")
    return path


def _flow_scale(value: Any, source: str) -> float:
    choices = ", ".join(f"{s:g}" for s in FLOW_SCALES)
    try:
        number = float(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number not in FLOW_SCALES:
        raise OptionsError(f"{source}={value!r} is not a flow scale. Use one of: {choices} (1 = exact flow; "
                           "smaller is faster and approximate).")
    return float(number)
def _optimisations(value: Any, source: str) -> tuple[str, ...]:
    try:
        return switches.parse(value)
    except switches.SwitchError as exc:
        raise OptionsError(f"{source}={value!r}: {exc}") from None


def _height(value: Any, source: str) -> int | None:
    text = str(value).strip().lower().removesuffix("p")
    if text in ("4x", "x4", "", "none"):
        return None
    if text == "4k":
        return 2160
    if text.isdigit() and int(text) in HEIGHT_PRESETS:
        return int(text)
    presets = ", ".join(str(h) for h in HEIGHT_PRESETS)
    raise OptionsError(f"{source}={value!r} is not an output size. Use 4x or a height: {presets}.")


def parse_time(value: Any, source: str = "time") -> Fraction | None:
    """Seconds (``12.5``) or a timestamp (``1:02``, ``00:01:02.5``) as an exact ``Fraction``."""
    if value is None:
        return None
    if isinstance(value, (int, Fraction)):
        seconds = Fraction(value)
    elif isinstance(value, float):
        seconds = Fraction(str(value))
    else:
        text = str(value).strip()
        if text == "":
            return None
        match = re.fullmatch(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)", text)
        if not match:
            raise OptionsError(f"{source}={value!r} is not a time. Use seconds (12.5) or HH:MM:SS.ff (0:01:02.5).")
        parts = [p for p in match.groups() if p is not None]
        seconds = Fraction(0)
        for part in parts:
            seconds = seconds * 60 + Fraction(part)
        if len(parts) > 1 and any(Fraction(p) >= 60 for p in parts[1:]):
            raise OptionsError(f"{source}={value!r}: minutes and seconds must be below 60.")
    if seconds < 0:
        raise OptionsError(f"{source}={value!r} is negative. Times count from the start of the video (0).")
    return seconds


def _tile(value: Any, source: str) -> int | str:
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= MIN_TILE and int(text) % TILE_MULTIPLE == 0:
        return int(text)
    raise OptionsError(f"{source}={value!r} is not a tiling. Use auto (tiles only when a frame does not fit the "
                       f"memory budget), off, or a latent tile side: a multiple of {TILE_MULTIPLE} of at least "
                       f"{MIN_TILE} (e.g. 64; the output tile is 4x that).")


_UNITS = {"": 10**9, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: Any, source: str = "memory") -> int | None:
    """``6GB``, ``6.5 G``, ``6000MB``, ``8GiB`` or a bare number of GB -> bytes; empty or none -> None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "auto")):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), "b"
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise OptionsError(f"{source}={value!r} is not an amount of memory. Use e.g. 6GB, 6000MB, 8GiB or 6 "
                               "(GB), or leave it empty for the free memory of the device.")
        number, unit = float(match.group(1)), match.group(2).lower()
    amount = int(number * _UNITS[unit])
    if amount < 2**27:
        raise OptionsError(f"{source}={value!r} is under 128 MiB, too little for any job. Give e.g. 6GB.")
    return amount


def _boolean(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "true", "yes", "1"):
        return True
    if text in ("off", "false", "no", "0"):
        return False
    raise OptionsError(f"{source}={value!r} must be on or off.")


_PARSERS = {
    "engine": _choice(ENGINES),
    "model_id": _text,
    "flow_weights": _flow_weights,
    "steps": _integer(1, 50, "the number of denoising steps, 4 for the distilled model"),
    "seed": _optional_int(_integer(0, 2**63 - 1, "a seed from 0 to 2**63-1, or leave it empty for a random one")),
    "device": _device,
    "precision": _choice(PRECISIONS),
    "attention": _choice(ATTENTIONS),
    "flow_scale": _flow_scale,
    "optimisations": _optimisations,
    "height": _height,
    "start": parse_time,
    "end": parse_time,
    "codec": _choice(CODECS),
    "crf": _optional_int(_integer(0, 63, "a constant rate factor; lower is better quality")),
    "preset": _optional_text,
    "scene_cuts": _boolean,
    "scene_threshold": _positive_float("the content detector threshold, 27 by default"),
    "tmp_dir": _path,
    "output_dir": _path,
    "cache_dir": _path,
    "max_input_pixels": _integer(1, None, "the largest input frame in pixels"),
    "max_output_pixels": _integer(1, None, "the largest output frame in pixels"),
    "max_duration": _positive_float("the longest input in seconds"),
    "max_upload_mb": _integer(1, None, "the largest upload in MB"),
    "zerogpu_max_seconds": _positive_float("the longest ZeroGPU call in seconds, 300 by default"),
    "checkpoint_seconds": _non_negative_float("seconds of work between checkpoints, 30 by default; 0 for none"),
    "tile": _tile,
    "max_memory": parse_bytes,
    "cluster": _optional_text,
}


def _check_combination(options: UpscaleOptions) -> None:
    if options.start is not None and options.end is not None and options.end <= options.start:
        raise OptionsError(f"end ({float(options.end):g} s) must be after start ({float(options.start):g} s).")
    spec = CRF_RANGE[options.codec]
    if options.crf is not None:
        if spec is None:
            raise OptionsError(f"crf={options.crf} does not apply to {options.codec} "
                               "(ProRes uses a fixed profile, FFV1 is lossless). Leave crf unset.")
        if not spec[0] <= options.crf <= spec[1]:
            raise OptionsError(f"crf={options.crf} is out of range for {options.codec}: use {spec[0]} to {spec[1]}.")
    presets = PRESETS[options.codec]
    if options.preset is not None:
        if presets is None:
            raise OptionsError(f"preset={options.preset!r} does not apply to {options.codec}. Leave preset unset.")
        if options.preset not in presets:
            codec = "the default codec's (h264, or hevc for a deep or HDR source)" if options.codec == AUTO_CODEC \
                else f"a {options.codec}"
            raise OptionsError(f"preset={options.preset!r} is not {codec} preset. Use one of: "
                               f"{', '.join(presets)}.")


AUTH_VARIABLE = "STREAM_DIFFVSR_AUTH"
_AUTH_FIX = "Set it to user:password, or to the path of a readable file with one user:password per line."


def server_logins(env: Mapping[str, str] | None = None) -> list[tuple[str, str]] | None:
    """The web app's logins from ``STREAM_DIFFVSR_AUTH`` (``user:password``, or the path of a file of
    such lines; blank lines and lines starting with ``#`` are skipped), for Gradio's own login
    (``launch(auth=...)``) on the page and its API. None when the variable is unset: no login.

    The password is everything after the first ``:``. A bad value raises ``OptionsError`` naming the
    variable and the fix, and never showing a password."""
    value = environment.read(env).get(AUTH_VARIABLE)
    if value is None:
        return None
    value = value.strip()
    path = Path(value).expanduser()
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise OptionsError(f"{AUTH_VARIABLE}: cannot read {path} ({exc.__class__.__name__}: "
                               f"{getattr(exc, 'strerror', None) or exc}). Make it a UTF-8 file readable by "
                               f"the user that runs the app, or set user:password instead.") from None
        numbered = [(n, line.strip()) for n, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not numbered:
            raise OptionsError(f"{AUTH_VARIABLE}: {path} holds no login. Write one user:password per line.")
        return [_login(line, f"line {n} of {path}") for n, line in numbered]
    if ":" not in value:
        where = f"names no file ({path} does not exist)" if ("/" in value or "\\" in value) else "has no ':'"
        raise OptionsError(f"{AUTH_VARIABLE} {where}. {_AUTH_FIX}")
    return [_login(value, "its value")]


def _login(text: str, where: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not colon or not user.strip() or not password:
        raise OptionsError(f"{AUTH_VARIABLE}: {where} is not user:password (a user name, ':', then a password "
                           f"that is not empty). {_AUTH_FIX}")
    return user.strip(), password
