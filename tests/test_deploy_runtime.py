"""The image's runtime for real, without Docker: its system libraries and a fresh venv running its command.

- The runtime stage's apt-get line provides every system library the app's wheels load (measured
  from /proc/self/maps, owners from dpkg).
- (slow, ~2-4 min) A venv made from requirements-app.txt alone, the way the builder stage makes it,
  with the files the runtime stage copies, started with the image's CMD and ENV: it passes the
  image's HEALTHCHECK and finishes a bicubic job through gradio_client, and the `vsr` CLI works.
  This proves the runtime requirements and the image's files are complete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import ROOT, app_pins, copy_into, final, final_env, instructions, normalize
from tests.network_install import pip_install

# ============================================================================= system libraries of the image

# Debian packages every python:3.11-slim-bookworm image has that wheels link against (glibc, the
# GCC runtime, zlib); libraries that Python's own stdlib loads are measured below instead.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
# Libraries a wheel opens only when present (dlopen), so the image may lack them.
OPTIONAL_PACKAGES = {"libfribidi0": "Pillow loads FriBiDi for right-to-left text layout only when installed"}
_MAPPED_LIBS = (
    "import sys\n"
    "{imports}\n"
    "for line in open('/proc/self/maps'):\n"
    "    path = line.split()[-1] if len(line.split()) >= 6 else ''\n"
    "    if '.so' in path and not path.startswith((sys.prefix, sys.base_prefix)):\n"
    "        print(path)\n"
)


def _system_libraries(python: str, imports: str) -> set[str]:
    """Shared libraries outside Python and the venv that ``python`` has mapped after ``imports``."""
    result = subprocess.run([python, "-c", _MAPPED_LIBS.format(imports=imports)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return set(result.stdout.split())


def _owner(library: str) -> str | None:
    """The Debian package that installed ``library`` (None for the dynamic loader's own alias)."""
    result = subprocess.run(["dpkg", "-S", f"*/{Path(library).name}"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return None
    return result.stdout.split(":", 1)[0].strip()


def _installed_closure(packages: set[str]) -> set[str]:
    """``packages`` and, recursively, every installed package they depend on (any alternative)."""
    seen: set[str] = set()
    todo = list(packages)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        query = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", name], capture_output=True,
                               text=True, timeout=60)
        if query.returncode != 0:  # not installed here (tini): it links only glibc
            continue
        for alternative in re.split(r"[,|]", query.stdout):
            dep = alternative.strip().split(" ")[0].split(":")[0]
            if dep:
                todo.append(dep)
    return seen


@pytest.mark.slow  # imports the app's whole native stack twice in subprocesses: ~10-20 s
def test_runtime_apt_packages_provide_every_system_library_the_app_loads() -> None:
    """cv2 (from scenedetect) links libGL and GLib, which python:3.11-slim lacks: the runtime stage's
    apt-get line must bring them (and whatever else a future wheel needs), and nothing else is needed."""
    if shutil.which("dpkg") is None:
        pytest.skip("needs Debian's dpkg to see which package provides each library (CI and developers have it)")
    apt_line = " ".join(i.args for i in final("RUN") if "apt-get install" in i.args)
    apt_packages = set(re.search(r"apt-get install -y --no-install-recommends ([^&]+)", apt_line).group(1).split())
    needed = _system_libraries(sys.executable, "import app, av, cv2, numpy, PIL.Image, scenedetect, torch, torchvision")
    stdlib = _system_libraries(sys.executable, "import bz2, ctypes, hashlib, lzma, sqlite3, ssl, uuid, zlib")
    owners = {lib: _owner(lib) for lib in needed - stdlib}
    provided = _installed_closure(apt_packages) | BASE_IMAGE_PACKAGES | set(OPTIONAL_PACKAGES)
    missing = {lib: pkg for lib, pkg in owners.items() if pkg is not None and pkg not in provided}
    assert not missing, f"libraries the app loads that the image would not have (add to the runtime apt-get): {missing}"
    assert {"libgl1", "libglib2.0-0"} <= {pkg for pkg in owners.values() if pkg}, (
        f"cv2 no longer loads libGL/GLib ({sorted(filter(None, owners.values()))}); drop them from the Dockerfile"
    )


# ============================================================================= the image's runtime, for real


def _builder_commands() -> dict[str, str]:
    """The builder stage's install commands, read from the Dockerfile (so this test follows it)."""
    runs = " ".join(i.args for i in instructions() if i.stage == "builder" and i.keyword == "RUN")
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
    copy_into("builder", rootfs)
    copy_into("runtime", rootfs)
    try:
        # --- builder stage: the same steps, against the same files ---
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", venv], timeout=300)
        python = venv / "bin" / "python"
        # From the package index where this machine's disk lacks a wheel: a cut connection is run again.
        pip_install(python, ["-q", commands["pip"]], timeout=300, resume_retries=None)  # venv's pip is older
        # --no-compile: skip writing .pyc for torch & co. (the image keeps them); it changes nothing installed.
        pip_install(python, ["-q", "--no-compile", "-r", "requirements-app.txt"], cwd=src, timeout=1200)
        pip_install(python, ["-q", "--no-deps", "--build-constraint", "deploy/build-constraints.txt", "."], cwd=src,
                    timeout=600)
        install_seconds = time.monotonic() - started
        frozen = {normalize(line.split("==")[0]): line.split("==")[1]
                  for line in _run([python, "-m", "pip", "freeze"]).stdout.splitlines() if "==" in line}
        for name, version in app_pins().items():
            assert frozen.get(name, "").split("+")[0] == version, f"fresh venv has {name} {frozen.get(name)}"
        assert "pytest" not in frozen and "gradio-client" in frozen  # only the app's requirements (and theirs)

        # --- runtime stage: the image's ENV and CMD; only host paths and the address differ ---
        (tmp_path / "data" / "outputs").mkdir(parents=True)  # /data/outputs, made by the runtime stage
        port = _free_port()
        env = final_env()
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
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),  # 1 per pytest-xdist worker
        })
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})  # this machine's CPU quirk
        assert "/opt/venv" not in "".join(env.values())
        command = yaml.safe_load(final("CMD")[-1].args)
        health = yaml.safe_load(final("HEALTHCHECK")[0].args.split("CMD", 1)[1].strip())
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
