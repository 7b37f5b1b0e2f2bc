"""Reading the deploy files the way their tools do, for tests/test_deploy*.py.

- pins: ``requirements(name)`` / ``pin_lines(...)`` parse exact ``name==version`` pins (asserting every
  other line is one of the allowed non-pin lines), ``app_pins()`` is requirements-app.txt.
- ``sync_requirements()``: deploy/sync_requirements.py as a module (its ``SPACE_PINS``, ``SPACE_PYTHON``, ...);
  ``ZEROGPU_TORCHVISION`` / ``ZEROGPU_PYTHON``: what ZeroGPU supports.
- ``front_matter()``: README.md's YAML block (the Space configuration).
- Dockerfile: ``instructions()`` (continuations joined, comments dropped, tagged by stage), ``final(KEYWORD)``,
  ``final_env()`` (runtime ENV with its ARG defaults), ``copies(stage)`` (COPYs from the build context).
- .dockerignore: ``ignored(path, patterns)`` with Docker's matching rules, ``build_context()``, and
  ``copy_into(stage, rootfs)`` which performs a stage's COPYs into a folder the way `docker build` would.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
APP_MODEL_ID = "Jamichsu/Stream-DiffVSR"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][^\s;#]*)$")

# What a ZeroGPU Space can run (hub-docs docs/hub/spaces-zerogpu.md, "Supported Versions"); a Space that pins
# another torch fails to build with "No candidate PyTorch version found for ZeroGPU". Each supported torch
# release -> the torchvision release built against it.
ZEROGPU_TORCHVISION = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}
ZEROGPU_PYTHON = ("3.10.13", "3.12.12")


# ----------------------------------------------------------------------------- helpers: pins


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin_lines(lines: list[str], source: str, *, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    """name -> version for pin lines; every other non-comment line must be in ``allowed``."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line in allowed:
            continue
        match = PIN.match(line)
        assert match, f"{source}: {line!r} is not an exact name==version pin"
        name = normalize(match["name"])
        assert name not in pins, f"{source}: {name} is pinned twice"
        pins[name] = match["version"]
    return pins


def requirements(name: str, *, allowed: tuple[str, ...] = ()) -> dict[str, str]:
    return pin_lines((ROOT / name).read_text(encoding="utf-8").splitlines(), name, allowed=allowed)


def app_pins() -> dict[str, str]:
    return requirements("requirements-app.txt")


def sync_requirements() -> ModuleType:
    """deploy/sync_requirements.py imported as a module (deploy/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("sync_requirements", ROOT / "deploy" / "sync_requirements.py")
    assert spec and spec.loader, "deploy/sync_requirements.py is missing"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "requirements.yml").read_text(encoding="utf-8"))


def conda_pip_section() -> list[str]:
    sections = [d["pip"] for d in conda_env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "requirements.yml must have exactly one pip: section"
    return [str(line) for line in sections[0]]


def front_matter() -> dict:
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


def instructions(text: str | None = None) -> list[Instruction]:
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


def stages() -> list[str]:
    return [i.stage for i in instructions() if i.keyword == "FROM"]


def final(keyword: str) -> list[Instruction]:
    last = stages()[-1]
    return [i for i in instructions() if i.stage == last and i.keyword == keyword]


def env_of(env_instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in env_instructions:
        for item in shlex.split(instruction.args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {instruction.args!r}: use the KEY=value form"
            env[key] = value
    return env


def final_env() -> dict[str, str]:
    """The runtime stage's ENV with ${ARG} defaults substituted (ARG defaults of the same stage)."""
    last = stages()[-1]
    args = {}
    for instruction in instructions():
        if instruction.stage == last and instruction.keyword == "ARG" and "=" in instruction.args:
            key, _, value = instruction.args.partition("=")
            args[key] = value
    env = env_of(final("ENV"))
    return {k: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), v) for k, v in env.items()}


def copies(stage: str) -> list[tuple[list[str], str, str]]:
    """(sources, destination, workdir) of each COPY from the build context in ``stage``."""
    result = []
    workdir = "/"
    for instruction in instructions():
        if instruction.stage != stage:
            continue
        if instruction.keyword == "WORKDIR":
            workdir = str(Path(workdir) / instruction.args)
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            parts = [p for p in shlex.split(instruction.args) if not p.startswith("--")]
            result.append((parts[:-1], parts[-1], workdir))
    return result


# ----------------------------------------------------------------------------- helpers: .dockerignore


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def match_parts(path: list[str], pattern: list[str]) -> bool:
    """Docker's rule: components match one by one (``*`` never crosses '/'), ``**`` spans any number."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(match_parts(path[i:], pattern[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pattern[0]) and match_parts(path[1:], pattern[1:])


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``relative``: it or a parent matches, the last rule wins."""
    parts = relative.split("/")
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body_parts = [p for p in body.strip("/").split("/") if p not in ("", ".")]
        if any(match_parts(parts[:depth], body_parts) for depth in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def build_context() -> set[str]:
    """Relative paths of the files `docker build .` would send, as far as .dockerignore decides."""
    patterns = dockerignore_patterns()
    files: set[str] = set()
    for folder, dirs, names in os.walk(ROOT):
        rel_folder = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = [d for d in dirs if not ignored(prefix + d, patterns)]
        files |= {prefix + n for n in names if not ignored(prefix + n, patterns)}
    return files


def copy_into(stage: str, rootfs: Path) -> None:
    """Do the COPY instructions of ``stage`` (from the build context) into ``rootfs`` as Docker would."""
    patterns = dockerignore_patterns()
    for sources, destination, workdir in copies(stage):
        target_root = rootfs / Path(workdir, destination).relative_to("/")
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                # COPY dir dest: the directory's contents land in dest, less what .dockerignore leaves out.
                for path in src.rglob("*"):
                    rel = path.relative_to(ROOT).as_posix()
                    if path.is_file() and not ignored(rel, patterns):
                        target = target_root / path.relative_to(src)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, target)
            else:
                target = target_root / src.name if destination.endswith("/") or len(sources) > 1 else target_root
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
