"""The one module that reads environment variables.

Every variable the project understands is listed in ``VARIABLES`` with its default and meaning;
the table in docs/configuration.md is checked against this list by the tests. Nothing else in the code base calls
``os.environ`` (libraries we use, such as huggingface_hub, read their own variables themselves).
``on_zero_gpu`` says whether this process runs on a Hugging Face ZeroGPU Space, as the ``spaces``
package itself decides it (that package reads the Space's variables). ``use_inductor_cache`` and
``quiet_encoder_logs`` are the places that set a variable: torch's own ``TORCHINDUCTOR_CACHE_DIR`` and
SVT-AV1's ``SVT_LOG``, each only when it is not set already.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class EnvVar:
    """One supported environment variable."""

    name: str
    default: str
    meaning: str


VARIABLES: tuple[EnvVar, ...] = (
    EnvVar("STREAM_DIFFVSR_ENGINE", "stream-diffvsr", "Upscaling engine: `stream-diffvsr` or `bicubic`."),
    EnvVar("STREAM_DIFFVSR_MODEL_ID", "Jamichsu/Stream-DiffVSR",
           "Hugging Face model id or a local folder in the published layout."),
    EnvVar("STREAM_DIFFVSR_FLOW_WEIGHTS", "(torchvision RAFT large default weights)",
           "Local `.pth`/`.safetensors` file with RAFT large weights."),
    EnvVar("STREAM_DIFFVSR_DEVICE", "auto", "`auto` (CUDA, then MPS, then CPU), `cpu`, `cuda`, `cuda:N` or `mps`."),
    EnvVar("STREAM_DIFFVSR_PRECISION", "auto", "`auto`, `fp32`, `fp16` or `bf16`."),
    EnvVar("STREAM_DIFFVSR_ATTENTION", "sdpa", "`sdpa`, `xformers` (when installed) or `sliced`."),
    EnvVar("STREAM_DIFFVSR_FLOW_SCALE", "1",
           "Optical flow on frames downscaled by `1` (exact), `0.5` or `0.25` (faster, approximate)."),
    EnvVar("STREAM_DIFFVSR_OPTIMISATIONS", "auto",
           "Speed switches of the diffusion engine: `auto`, `none` or a comma list such as "
           "`auto,compile,-flow-prefetch` (see GPU)."),
    EnvVar("STREAM_DIFFVSR_TMP_DIR", "(system temp dir)/stream-diffvsr",
           "Where each job's temporary directory is made."),
    EnvVar("STREAM_DIFFVSR_OUTPUT_DIR", "./outputs", "Where the web app writes finished videos."),
    EnvVar("STREAM_DIFFVSR_CACHE_DIR", "~/.cache/stream-diffvsr",
           "Where time-estimate calibrations are cached (per device, engine, model and precision)."),
    EnvVar("STREAM_DIFFVSR_MAX_INPUT_PIXELS", "2073600", "Largest input frame (width x height); 1080p by default."),
    EnvVar("STREAM_DIFFVSR_MAX_OUTPUT_PIXELS", "33177600",
           "Largest output frame (width x height); 8K (7680x4320) by default."),
    EnvVar("STREAM_DIFFVSR_MAX_DURATION", "600", "Longest input (after trimming) in seconds."),
    EnvVar("STREAM_DIFFVSR_MAX_UPLOAD_MB", "2048", "Largest upload the web app accepts, in MB."),
    EnvVar("STREAM_DIFFVSR_ZEROGPU_MAX_SECONDS", "300",
           "On a ZeroGPU Space: the longest GPU call (seconds) a job may reserve; a longer job runs as "
           "several calls, one after another."),
    EnvVar("STREAM_DIFFVSR_CHECKPOINT_SECONDS", "30",
           "A running job keeps a checkpoint (the video so far and the model's state) every this many seconds "
           "of work, so it can resume after a crash; `0`: only when stopped (Ctrl-C, the end of a ZeroGPU call)."),
    EnvVar("STREAM_DIFFVSR_TILE", "auto",
           "`auto` (tiles only when a frame does not fit the memory budget), `off`, or a latent tile side "
           "(a multiple of 8, at least 32; the output tile is 4x that)."),
    EnvVar("STREAM_DIFFVSR_MAX_MEMORY", "(free GPU memory, or 70 % of available RAM)",
           "Memory a job may use on its device (`6GB`, `6000MB`, `8GiB`); the plan tiles frames to fit it "
           "and refuses a job that cannot."),
    EnvVar("STREAM_DIFFVSR_LOG_LEVEL", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR."),
    EnvVar("STREAM_DIFFVSR_AUTH", "(none: no login)",
           "The web app asks for a login, on the page and its API: `user:password`, or the path of a file with "
           "one `user:password` per line. Use it (with TLS in front) for anything reachable from the internet."),
    EnvVar("STREAM_DIFFVSR_CLUSTER", "(none: jobs run in the app's process)",
           "The web app runs each job on a Ray cluster's workers: `auto` (the cluster this machine belongs to, or "
           "`RAY_ADDRESS`), `ray://host:10001`, or `local` (a Ray started on this machine); as many jobs at once as "
           "workers. Needs the cluster extra (requirements-cluster.txt); see docs/cluster.md."),
    EnvVar("GRADIO_SERVER_NAME", "127.0.0.1", "Address the web app listens on (`0.0.0.0` in Docker)."),
    EnvVar("GRADIO_SERVER_PORT", "7860", "Port the web app listens on (8000 in Docker)."),
)

NAMES: frozenset[str] = frozenset(v.name for v in VARIABLES)


def read(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the project's variables that are set (and not empty) in ``env`` (default: the process)."""
    source = os.environ if env is None else env
    return {name: source[name] for name in NAMES if source.get(name, "").strip()}


def use_inductor_cache(folder: Path) -> Path:
    """Point torch inductor's compile cache (``TORCHINDUCTOR_CACHE_DIR``, read by torch itself) at
    ``folder`` so compiled kernels are reused by later runs; a value already set wins. Returns the
    folder in use."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "").strip()
    if current:
        return Path(current)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def pythonpath_with(folder: Path) -> str:
    """``PYTHONPATH`` for a child process (a local Ray worker) that must import the package in ``folder``
    first, followed by this process's own ``PYTHONPATH``."""
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


SVT_LOG_ERRORS = "1"
"""SVT-AV1's own log level (its ``SVT_LOG`` variable: 0 fatal, 1 error, 2 warning, 3 info, 4 debug)
outside DEBUG logging: its errors only, not its banner."""


def quiet_encoder_logs(debug: bool) -> None:
    """Keep the encoders' own logging out of the user's terminal unless ``debug``. SVT-AV1 writes its
    log (a dozen banner lines per encoder) to stderr from C, at the level its ``SVT_LOG`` variable gives
    when its logger is first used in the process; libx265 is told ``log-level=error`` by
    ``media.encode`` and FFmpeg's own log is off in PyAV unless asked for. A ``SVT_LOG`` already set wins."""
    if not debug and not os.environ.get("SVT_LOG", "").strip():
        os.environ["SVT_LOG"] = SVT_LOG_ERRORS


MALLOC_ARENAS = 2
"""glibc malloc arenas for a long-running server: with one per worker thread (glibc's default) freed
frame buffers stay spread over them and the RSS of the web app rose ~0.9 MB per job; with two it stays
flat (bench/soak.py, docs/performance.md)."""


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc arenas to ``count`` in this process (``mallopt(M_ARENA_MAX)``, what the
    ``MALLOC_ARENA_MAX`` variable does at start-up, for ``make app``, ``python app.py`` and the Space,
    where nothing sets the variable). A ``MALLOC_ARENA_MAX`` already set wins. False where the C
    library is not glibc (nothing is changed there)."""
    if os.environ.get("MALLOC_ARENA_MAX", "").strip():
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max = -8  # glibc's malloc.h
    return bool(mallopt(m_arena_max, count))


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space: exactly when ``spaces.GPU`` runs functions on a GPU
    attached per call (``spaces.config.Config.zero_gpu``; the package reads the Space's
    ``SPACES_ZERO_GPU``). False when ``spaces`` is not installed (Docker, conda, the CLI)."""
    try:
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)
