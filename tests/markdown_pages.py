"""Reading the README and the docs/ pages the way GitHub and MkDocs render them, for tests/test_docs.py.

- ``pages()``: README.md and every docs/**/*.md.
- ``prose(text)``: the text without fenced code blocks and inline code (where links are not links).
- ``links(text)``: every inline and reference-style link target of a page's prose.
- ``anchors(text)``: the heading anchors of a page, as GitHub makes them and as MkDocs makes them.
- ``sections(text, level)``: heading -> the text under it, up to the next heading of that level or higher.
- ``code_blocks(text, languages)``: the bodies of fenced code blocks in those languages.
- ``table_rows(text)``: the cells of every markdown table row (header and separator rows left out).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^ {0,3}(```+|~~~+)\s*([\w+-]*)[^\n]*\n(.*?)^ {0,3}\1\s*$", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    """README.md and every markdown page under docs/, in a stable order."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def without_fences(text: str) -> str:
    """The text with every fenced code block blanked to spaces (offsets kept, so positions still read)."""
    return _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans."""
    return _INLINE_CODE.sub("", without_fences(text))


def links(text: str) -> list[str]:
    """Every link target in the page's prose (inline links, images, reference definitions)."""
    body = prose(text)
    return [m.group(1) for m in _LINK.finditer(body)] + [m.group(1) for m in _REFERENCE.finditer(body)]


def headings(text: str) -> list[tuple[int, str]]:
    """(level, text) of every heading outside code blocks."""
    return [(len(m.group(1)), m.group(2)) for m in _HEADING.finditer(without_fences(text))]


def _rendered(heading: str) -> str:
    """A heading's text as rendered: links become their text, code and emphasis marks go."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"`|\*\*|(?<!\w)[*_]|[*_](?!\w)", "", heading)


def github_slug(heading: str) -> str:
    """GitHub's anchor: lower case, punctuation dropped (word characters, spaces and hyphens kept), each
    space a hyphen."""
    text = _rendered(heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """Python-Markdown's toc slugify (what MkDocs uses): ASCII only, punctuation dropped, runs of spaces
    and hyphens one hyphen."""
    text = unicodedata.normalize("NFKD", _rendered(heading)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(text: str) -> dict[str, set[str]]:
    """{"github": {...}, "mkdocs": {...}}: the page's anchors, duplicates numbered as each site does
    (GitHub ``name-1``, MkDocs ``name_1``)."""
    found: dict[str, set[str]] = {"github": set(), "mkdocs": set()}
    for site, slug, sep in (("github", github_slug, "-"), ("mkdocs", mkdocs_slug, "_")):
        for _, heading in headings(text):
            anchor, n = slug(heading), 0
            while anchor in found[site]:
                n += 1
                anchor = f"{slug(heading)}{sep}{n}"
            found[site].add(anchor)
    return found


def sections(text: str, level: int) -> dict[str, str]:
    """Heading text (code marks removed) -> the text under it, for the headings of ``level``; a section
    ends at the next heading of that level or a higher one (fewer #)."""
    body = without_fences(text)
    marks = [m for m in _HEADING.finditer(body)]
    out: dict[str, str] = {}
    for i, mark in enumerate(marks):
        if len(mark.group(1)) != level:
            continue
        end = next((m.start() for m in marks[i + 1:] if len(m.group(1)) <= level), len(text))
        out[_rendered(mark.group(2)).strip()] = text[mark.end():end]
    return out


def code_blocks(text: str, languages: set[str]) -> list[str]:
    """The bodies of the fenced code blocks whose info string names one of ``languages``."""
    return [m.group(3) for m in _FENCE.finditer(text) if m.group(2).lower() in languages]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table body row (the header row and the |---| row left out)."""
    rows: list[list[str]] = []
    lines = without_fences(text).splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|") or re.fullmatch(r"\s*\|[\s:|-]+\|\s*", line):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if re.fullmatch(r"\s*\|[\s:|-]+\|\s*", following):
            continue  # a header row
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows
