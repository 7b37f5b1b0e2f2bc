"""The house's layering, read from the source: configuration and media at the bottom, then the model, the
job, and the interfaces (the CLI, the web logic, app.py) on top; no import runs back up a floor and no
module imports itself through others (every import counts, those inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vsr", "media")

FLOORS = {  # a module may import only from its own floor or a lower one
    "media": 1, "vsr.formatting": 1, "vsr.switches": 1, "vsr.environment": 1,
    "vsr.options": 2, "vsr.logs": 2,
    "vsr.model": 3,
    "vsr.job": 4,
    "vsr.web": 5, "vsr.cli": 5, "vsr.cli_stream": 5, "vsr.api": 5,
    "vsr.__main__": 6, "app": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    found["app"] = ROOT / "app.py"
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The house's modules that ``name`` imports anywhere in its file (``from x import y`` counts as
    ``x.y`` when that is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    known = set(sources)
    return {name: _imports(name, path, known) for name, path in sources.items()}


def _floor(module: str) -> int:
    if module == "vsr":  # the package's face: its docstring and the options' names
        return 2
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return FLOORS[prefix]
    raise AssertionError(f"{module} has no floor in FLOORS: add it where it belongs")


def test_every_module_has_a_floor() -> None:
    for module in _sources():
        _floor(module)


def test_no_import_runs_back_up_a_floor() -> None:
    upward = sorted(f"{a} ({_floor(a)}) imports {b} ({_floor(b)})" for a, targets in _graph().items()
                    for b in targets if b not in ("vsr", "media") and _floor(b) > _floor(a))
    assert not upward, "\n".join(upward)


def test_the_model_never_imports_the_job_and_the_job_never_imports_an_interface() -> None:
    graph = _graph()
    for a, targets in graph.items():
        for b in targets:
            if a.startswith("vsr.model"):
                assert not b.startswith(("vsr.job", "vsr.web", "vsr.cli", "app")), f"{a} imports {b}"
            if a.startswith("vsr.job"):
                assert not b.startswith(("vsr.web", "vsr.cli", "app")), f"{a} imports {b}"
            if a.startswith("media"):
                assert not b.startswith("vsr") and b != "app", f"{a} imports {b}"


def test_there_are_no_import_circles() -> None:
    graph = {a: {b for b in targets if b not in ("vsr", "media")} for a, targets in _graph().items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("snippet, expected", [
    ("from vsr.job import memory\n", {"vsr.job.memory"}),
    ("from vsr.job.memory import plan_memory\n", {"vsr.job.memory"}),
    ("def f():\n    import vsr.model.flow\n", {"vsr.model.flow"}),
    ("from . import peak_memory\n", {"vsr.job.peak_memory"}),
])
def test_the_reader_finds_every_kind_of_import(tmp_path: Path, snippet: str, expected: set[str]) -> None:
    """The checks above can fail: the reader sees package, module, function-level and relative imports."""
    path = tmp_path / "probe.py"
    path.write_text(snippet, encoding="utf-8")
    known = set(_sources())
    assert _imports("vsr.job.probe", path, known) == expected
