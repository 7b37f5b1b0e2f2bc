"""Generate the Space's requirements.txt and the conda requirements.yml from requirements-app.txt.

requirements-app.txt is the one list of runtime pins. Two deploy targets need it in another shape:

- Hugging Face Spaces install ``requirements.txt`` with only that file mounted into the build, so a
  ``-r requirements-app.txt`` line there would not resolve: the Space gets a copy of the pins, with the
  Space's own torch and torchvision (``SPACE_PINS`` below: ZeroGPU installs only some torch releases),
  plus ``spaces`` (ZeroGPU).
- ``conda env create -f requirements.yml`` wants an environment file: Python 3.11 and a pip section
  with the same pins as requirements-app.txt, plus the project itself (editable) so the ``vsr`` command
  exists.

Both files are generated, never edited by hand; the tests run ``--check`` so they cannot drift.

Usage::

    python deploy/sync_requirements.py           # rewrite requirements.txt and requirements.yml
    python deploy/sync_requirements.py --check   # exit 1 (and say which file) when one is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_REQUIREMENTS = "requirements-app.txt"
SPACES_REQUIREMENTS = "requirements.txt"
CONDA_ENVIRONMENT = "requirements.yml"
#: The ZeroGPU helper, only on Spaces; kept equal to the pin in requirements-test.txt (checked by the tests).
SPACES_PIN = "spaces==0.51.3"
PYTHON_SERIES = "3.11"
#: The Space's own pins, replacing requirements-app.txt's for these packages (and only these) in requirements.txt.
#: ZeroGPU installs its own build of one of a few torch releases and refuses any other pin ("No candidate PyTorch
#: version found for ZeroGPU"); hub-docs docs/hub/spaces-zerogpu.md lists 2.8.0, 2.9.1, 2.10.0 and 2.11.0 with
#: Python 3.10.13 or 3.12.12. torchvision is the release built against that torch. Local installs, CI, Docker
#: and conda keep requirements-app.txt's newer torch. README.md's front matter carries ``SPACE_PYTHON``.
SPACE_PINS: dict[str, str] = {"torch": "2.11.0", "torchvision": "0.26.0"}
#: The Python the Space runs (README.md front matter ``python_version``): one ZeroGPU supports, exactly.
SPACE_PYTHON = "3.12.12"
CONDA_ENV_NAME = "stream-diffvsr"

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[0-9][^\s;#]*)$")


class RequirementsError(ValueError):
    """A requirements file holds a line that is not an exact ``name==version`` pin."""


def read_pins(path: Path) -> list[str]:
    """Return the ``name==version`` lines of ``path`` in file order (comments and blank lines dropped).

    Raises ``RequirementsError`` naming the file, the line and the fix for anything that is not an
    exact pin (ranges, URLs, includes), because every deploy target must install the same releases.
    """
    pins: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.match(line):
            raise RequirementsError(
                f"{path}:{number}: {line!r} is not an exact pin; write it as name==version "
                f"(requirements-app.txt is the single list every deploy file is generated from)"
            )
        pins.append(line)
    return pins


def _normalize(name: str) -> str:
    """A distribution name in the form pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def space_pins(pins: list[str], overrides: dict[str, str] | None = None) -> list[str]:
    """``pins`` (from requirements-app.txt) with the versions of ``overrides`` (default ``SPACE_PINS``) put in.

    Raises ``RequirementsError`` when an override names a package requirements-app.txt does not pin: the
    Space would then install something the app, CI and Docker never do.
    """
    overrides = SPACE_PINS if overrides is None else overrides
    wanted = {_normalize(name): version for name, version in overrides.items()}
    result: list[str] = []
    for pin in pins:
        name = pin.split("==", 1)[0]
        version = wanted.pop(_normalize(name), None)
        result.append(pin if version is None else f"{name}=={version}")
    if wanted:
        raise RequirementsError(
            f"SPACE_PINS in deploy/sync_requirements.py overrides {sorted(wanted)}, which {APP_REQUIREMENTS} does "
            f"not pin; the Space may only change the version of a package the app already installs"
        )
    return result


def render_spaces_requirements(pins: list[str]) -> str:
    """The text of the Space's requirements.txt for ``pins`` (from requirements-app.txt)."""
    overrides = ", ".join(f"{name}=={version}" for name, version in SPACE_PINS.items())
    lines = [
        "# Hugging Face Space requirements: GENERATED from requirements-app.txt by",
        "# `python deploy/sync_requirements.py`; do not edit (the tests fail when it drifts).",
        "# A copy, not `-r requirements-app.txt`: the Space build mounts only this file.",
        f"# The same pins except {overrides} (SPACE_PINS in that script): ZeroGPU",
        f"# installs only some torch releases. The Space runs Python {SPACE_PYTHON} (README front matter).",
        *space_pins(pins),
        "# ZeroGPU's decorator package (imported by app.py only when it is installed).",
        SPACES_PIN,
    ]
    return "\n".join(lines) + "\n"


def render_conda_environment(pins: list[str]) -> str:
    """The text of requirements.yml (a conda environment) for ``pins`` (from requirements-app.txt)."""
    lines = [
        "# Conda environment: GENERATED from requirements-app.txt by `python deploy/sync_requirements.py`;",
        "# do not edit (the tests fail when it drifts).",
        "#   conda env create -f requirements.yml && conda activate stream-diffvsr",
        f"name: {CONDA_ENV_NAME}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON_SERIES}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in pins),
        "      # this project, so `vsr` and `python app.py` work from the checkout",
        "      - --editable .",
    ]
    return "\n".join(lines) + "\n"


def expected_files(root: Path) -> dict[Path, str]:
    """Map each generated file under ``root`` to the text it must have."""
    pins = read_pins(root / APP_REQUIREMENTS)
    return {
        root / SPACES_REQUIREMENTS: render_spaces_requirements(pins),
        root / CONDA_ENVIRONMENT: render_conda_environment(pins),
    }


def stale_files(root: Path) -> list[Path]:
    """The generated files under ``root`` that are missing or differ from what they must be."""
    return [
        path
        for path, text in expected_files(root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the process exit status (0 ok, 1 stale, 2 bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files(args.root)
            for path in stale:
                sys.stderr.write(
                    f"{path} is out of date with {APP_REQUIREMENTS}; run `python deploy/sync_requirements.py`\n"
                )
            return 1 if stale else 0
        for path, text in expected_files(args.root).items():
            path.write_text(text, encoding="utf-8")
        return 0
    except (RequirementsError, OSError) as error:
        sys.stderr.write(f"{error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
