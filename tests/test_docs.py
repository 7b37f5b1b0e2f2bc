"""The docs cannot rot: every link and anchor of README.md and docs/ resolves, every CLI flag, exit code and
environment variable in the code is documented (and nothing documented is missing from the code), and every
`vsr ...` command the pages show parses with the real parser (parsed only, never run)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

import markdown_pages as md
from vsr import environment

ROOT = md.ROOT
CLI_PAGE = md.DOCS / "cli.md"
CONFIGURATION_PAGE = md.DOCS / "configuration.md"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")
README_MAX_LINES = 200


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _commands() -> dict[str, set[str]]:
    """Every long option of every `vsr` sub-command, from the real parser (--help left out)."""
    from vsr.cli import build_parser

    commands: dict[str, set[str]] = {}
    for action in build_parser()._actions:  # argparse offers no public walk of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                commands[command] = {o for a in sub._actions for o in a.option_strings
                                     if o.startswith("--") and o != "--help"}
    assert commands, "build_parser() has no sub-commands"
    return commands


def _exit_codes() -> set[int]:
    """Every exit code vsr/cli.py defines: the EXIT_CODES table and every EXIT_* constant."""
    from vsr import cli

    constants = {int(v) for v in re.findall(r"^EXIT_[A-Z_]+\s*(?::\s*int\s*)?=\s*(\d+)\s*$",
                                            _text(ROOT / "vsr" / "cli.py"), flags=re.M)}
    return set(cli.EXIT_CODES) | constants


# ---------------------------------------------------------------------------------------------
# Links and anchors.


def _broken_links(page: Path) -> list[str]:
    text, problems = _text(page), []
    for target in md.links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):
            continue  # https:, mailto: ...
        path_part, _, anchor = target.partition("#")
        if path_part.startswith("/"):
            problems.append(f"{target}: an absolute path; link relative to {md.name(page)}")
            continue
        dest = (page.parent / path_part).resolve() if path_part else page
        where = f"{md.name(page)} -> {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if ROOT not in (dest, *dest.parents):
            problems.append(f"{where}: points outside the repository")
            continue
        if page.parent == md.DOCS or md.DOCS in page.parents:
            if md.DOCS not in (dest, *dest.parents):
                problems.append(f"{where}: a docs page may link only inside docs/ (the site has nothing else); "
                                "name the file in backticks instead")
                continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not a markdown page")
                continue
            found = md.anchors(_text(dest))
            for site in ("github", "mkdocs"):
                if anchor not in found[site]:
                    problems.append(f"{where}: no heading with the anchor #{anchor} on {site} "
                                    f"(the page's {site} anchors: {sorted(found[site])})")
    return problems


@pytest.mark.parametrize("page", md.pages(), ids=md.name)
def test_every_link_and_anchor_resolves(page: Path) -> None:
    problems = _broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_finds_links() -> None:
    found = sum(len(md.links(_text(page))) for page in md.pages())
    assert found > 50, f"only {found} links found in README.md and docs/: the link parser is broken"


def test_the_slugs_are_githubs_and_mkdocs() -> None:
    heading = "Testing the Space's stack: `make test-torch211`"
    assert md.github_slug(heading) == md.mkdocs_slug(heading) == "testing-the-spaces-stack-make-test-torch211"
    assert md.github_slug("A -- b") == "a----b" and md.mkdocs_slug("A -- b") == "a-b"
    assert md.anchors("# x\n\n## x\n")["github"] == {"x", "x-1"}
    assert md.anchors("# x\n\n## x\n")["mkdocs"] == {"x", "x_1"}


def test_every_docs_page_is_on_the_map() -> None:
    """index.md links every page, and so does mkdocs.yml's nav, so no page is an orphan."""
    index = {(md.DOCS / t.partition("#")[0]).resolve() for t in md.links(_text(md.DOCS / "index.md"))}
    nav = _text(ROOT / "mkdocs.yml") if (ROOT / "mkdocs.yml").exists() else None
    for page in sorted(md.DOCS.glob("*.md")):
        if page.name == "index.md":
            continue
        assert page.resolve() in index, f"docs/index.md does not link {md.name(page)}"
        if nav is not None:
            relative = page.relative_to(md.DOCS).as_posix()
            assert re.search(rf":\s*{re.escape(relative)}\s*$", nav, flags=re.M), \
                f"mkdocs.yml's nav does not list {relative}"


# ---------------------------------------------------------------------------------------------
# The command line: flags and exit codes, both ways.


def _command_section(command: str) -> str:
    sections = md.sections(_text(CLI_PAGE), 2)
    title = next((t for t in sections if re.fullmatch(rf"vsr {re.escape(command)}\b.*", t)), None)
    assert title is not None, f"docs/cli.md has no '## vsr {command}' section (its sections: {sorted(sections)})"
    return sections[title]


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_of_the_command_is_documented(command: str) -> None:
    section = _command_section(command)
    documented = set(FLAG.findall(section))
    missing = _commands()[command] - documented
    assert not missing, f"`vsr {command}` flags missing from its section of docs/cli.md: {sorted(missing)}"
    table = {flag for row in md.table_rows(section) for flag in FLAG.findall(row[0])}
    foreign = table - _commands()[command]
    assert not foreign, f"the flag table of `vsr {command}` in docs/cli.md lists flags it does not have: {sorted(foreign)}"


def test_the_docs_show_no_flag_that_does_not_exist() -> None:
    known = set().union(*_commands().values()) | {"--help"}
    unknown = set(FLAG.findall(_text(CLI_PAGE))) - known
    assert not unknown, f"docs/cli.md documents flags that no `vsr` command has: {sorted(unknown)}"


def test_every_exit_code_is_documented() -> None:
    sections = md.sections(_text(CLI_PAGE), 2)
    assert "Exit codes" in sections, "docs/cli.md has no '## Exit codes' section"
    documented = {int(row[0]) for row in md.table_rows(sections["Exit codes"]) if row[0].isdigit()}
    assert documented == _exit_codes(), (f"exit codes in vsr/cli.py: {sorted(_exit_codes())}; in docs/cli.md's "
                                         f"table: {sorted(documented)}")


# ---------------------------------------------------------------------------------------------
# Environment variables, both ways, with their defaults.


def _variable_rows() -> dict[str, str]:
    """Variable name -> its whole table row, from docs/configuration.md."""
    rows: dict[str, str] = {}
    for row in md.table_rows(_text(CONFIGURATION_PAGE)):
        match = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", row[0])
        if match:
            rows[match.group(1)] = " | ".join(row)
    return rows


def test_every_environment_variable_is_documented() -> None:
    documented = set(_variable_rows())
    missing = environment.NAMES - documented
    unknown = documented - environment.NAMES
    assert not missing, f"variables the code reads but docs/configuration.md does not list: {sorted(missing)}"
    assert not unknown, f"variables docs/configuration.md lists but the code does not read: {sorted(unknown)}"


def test_environment_defaults_match_the_docs() -> None:
    rows = _variable_rows()
    for var in environment.VARIABLES:
        cells = rows.get(var.name, "").split(" | ")
        assert len(cells) > 1 and cells[1] == var.default, \
            f"docs/configuration.md's default for {var.name} is {cells[1:2]}, the code's is {var.default!r}"


def test_the_pages_mention_no_variable_that_does_not_exist() -> None:
    for page in md.pages():
        named = set(re.findall(r"\bSTREAM_DIFFVSR_[A-Z0-9_]*[A-Z0-9]\b", _text(page)))
        unknown = named - environment.NAMES
        assert not unknown, f"{md.name(page)} mentions variables the code does not read: {sorted(unknown)}"


def test_no_other_module_mentions_an_undocumented_variable() -> None:
    pattern = re.compile(r"\bSTREAM_DIFFVSR_[A-Z0-9_]*[A-Z0-9]\b")
    seen: set[str] = set()
    for path in [*ROOT.glob("vsr/**/*.py"), *ROOT.glob("media/**/*.py"), ROOT / "app.py", ROOT / "Dockerfile"]:
        if path.is_file():
            seen |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert seen <= environment.NAMES, f"variables used in code but not declared: {sorted(seen - environment.NAMES)}"


# ---------------------------------------------------------------------------------------------
# The commands the pages show parse.


def _shown_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `vsr`) of every `vsr ...` line in a bash block of README.md or docs/; lines whose
    arguments hold a shell variable are left out (nothing to resolve them against)."""
    found: list[tuple[str, list[str]]] = []
    for page in md.pages():
        for block in md.code_blocks(_text(page), {"bash", "sh", "shell", "console"}):
            for line in block.replace("\\\n", " ").splitlines():
                tokens = shlex.split(line.lstrip("$ "), comments=True)
                for i, token in enumerate(tokens):
                    if token == "vsr":  # `vsr ...`, `python -m vsr ...`, `docker run ... IMAGE vsr ...`
                        argv = []
                        for arg in tokens[i + 1:]:
                            if arg in {"|", "||", "&&", ";", ">", ">>", "2>&1", "&"}:
                                break
                            argv.append(arg)
                        if not any("$" in arg for arg in argv):
                            found.append((f"{md.name(page)}: {line.strip()}", argv))
                        break
    return found


def test_the_shown_commands_are_found() -> None:
    commands = {argv[0] for _, argv in _shown_commands() if argv}
    assert {"upscale", "frames", "probe"} <= commands, f"the command parser found only {sorted(commands)}"


@pytest.mark.parametrize("where, argv", _shown_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_shown_command_parses(where: str, argv: list[str]) -> None:
    from vsr.cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            assert exc.code in (0, None), f"{where}\ndoes not parse: {err.getvalue().strip()}"


# ---------------------------------------------------------------------------------------------
# The README is the landing page.


def test_the_readme_is_a_landing_page() -> None:
    readme = _text(md.README)
    lines = readme.count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines; keep it a landing page of at most "
                                       f"{README_MAX_LINES} and move the rest into docs/")
    assert "make test" in readme and "make app" in readme
    assert "](docs/index.md)" in readme and "](docs/screenshot.png)" in readme


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = _text(ROOT / ".ci" / "run")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert commands == ["make test"], f".ci/run must run exactly the README's test command, found {commands}"
