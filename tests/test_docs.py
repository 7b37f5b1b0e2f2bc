"""The README documents every environment variable and every CLI flag, and nothing that does not exist."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from vsr import environment

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The README text under a '## title' heading, up to the next '## ' heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", _readme(), flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _cli_flags() -> dict[str, set[str]]:
    """Every option string of every `vsr` sub-command, from the real parser."""
    from vsr.cli import build_parser

    parser = build_parser()
    flags: dict[str, set[str]] = {}
    for action in parser._actions:  # argparse offers no public walk of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                flags[name] = {
                    opt for a in sub._actions for opt in a.option_strings if opt.startswith("--") and opt != "--help"
                }
    assert flags, "build_parser() has no sub-commands"
    return flags


def test_every_environment_variable_is_documented() -> None:
    table = _section("Environment variables")
    documented = set(re.findall(r"`((?:STREAM_DIFFVSR|GRADIO_SERVER)_[A-Z_]+)`", table))
    missing = environment.NAMES - documented
    unknown = documented - environment.NAMES
    assert not missing, f"environment variables the code reads but the README does not document: {sorted(missing)}"
    assert not unknown, f"environment variables the README documents but the code does not read: {sorted(unknown)}"


def test_environment_defaults_match_the_readme() -> None:
    table = _section("Environment variables")
    for var in environment.VARIABLES:
        row = next((line for line in table.splitlines() if f"`{var.name}`" in line), "")
        assert var.default in row, f"README row for {var.name} does not show its default {var.default!r}"


def test_no_other_module_mentions_an_undocumented_variable() -> None:
    root = README.parent
    pattern = re.compile(r"\bSTREAM_DIFFVSR_[A-Z_]+\b")
    seen: set[str] = set()
    for path in [*root.glob("vsr/**/*.py"), *root.glob("media/**/*.py"), root / "app.py", root / "Dockerfile"]:
        if path.is_file():
            seen |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert seen <= environment.NAMES, f"variables used in code but not declared: {sorted(seen - environment.NAMES)}"


def test_every_cli_flag_is_documented() -> None:
    section = _section("Command line")
    for command, flags in _cli_flags().items():
        assert re.search(rf"\bvsr {command}\b", section), f"README does not show `vsr {command}`"
        documented = set(re.findall(r"`(--[a-z][a-z0-9_-]*)", section))
        missing = flags - documented
        assert not missing, f"`vsr {command}` flags missing from the README's Command line section: {sorted(missing)}"


def test_the_readme_documents_no_flag_that_does_not_exist() -> None:
    section = _section("Command line")
    documented = set(re.findall(r"`(--[a-z][a-z0-9_-]*)", section))
    known = set().union(*_cli_flags().values()) | {"--help"}
    unknown = documented - known
    assert not unknown, f"README documents flags that no `vsr` command has: {sorted(unknown)}"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"], f".ci/run must run exactly the README's test command, found {commands}"
    assert "make test" in _readme() and "make app" in _readme()


@pytest.mark.parametrize("section", ["Environment variables", "Command line", "Docker", "Benchmarks", "Design",
                                     "Troubleshooting"])
def test_readme_has_section(section: str) -> None:
    assert _section(section).strip()
