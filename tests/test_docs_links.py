"""The documentation's relative links and anchors resolve, and the README stays a front page.

Checked pages: README.md, CHANGELOG.md, benchmarks/README.md, export/README.md and every docs/*.md. Every relative
Markdown link ``[text](path)`` or ``[text](path#anchor)`` (images included) must point to an existing file or
folder, relative to the page; an ``#anchor`` into a .md file (or into the page itself) must match one of that
file's headings, slugged as GitHub does. Links inside code blocks and inline code are not links. No network.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200
RUN_WITHIN_LINES = 60

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
             ROOT / "export" / "README.md"]
    return pages + sorted((ROOT / "docs").glob("*.md"))


def strip_code(text: str) -> str:
    """The page without fenced code blocks and inline code spans (line count kept for fences)."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return _INLINE_CODE.sub("", text)


def links(text: str) -> list[str]:
    return _LINK.findall(strip_code(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and '_' removed,
    spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w is Unicode-aware and keeps '_'
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, title in _HEADING.findall(strip_fenced_only(path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def strip_fenced_only(text: str) -> str:
    """Headings may hold inline code (kept for the slug); only fenced blocks are not headings."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def shown(page: Path) -> str:
    try:
        return str(page.relative_to(ROOT))
    except ValueError:
        return str(page)


def broken_links(page: Path) -> list[str]:
    """One message per relative link of ``page`` that does not resolve."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # external: not checked (no network)
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part)
        dest = page if not path_part else (page.parent / path_part).resolve()
        if not dest.exists():
            problems.append(f"{shown(page)}: ({target}) points to a missing file")
            continue
        if anchor and dest.suffix == ".md":
            if unquote(anchor).lower() not in anchors(dest):
                problems.append(f"{shown(page)}: ({target}) matches no heading of {dest.name}")
        elif anchor and dest.is_dir():
            problems.append(f"{shown(page)}: ({target}) has an anchor into a folder")
    return problems


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    assert broken_links(page) == []


def test_docs_pages_exist():
    expected = {"models", "export", "runtime", "run", "demo", "kernels", "serve", "eval", "bench", "gpu-install",
                "status", "bundle-format", "architecture"}
    present = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert expected <= present, f"missing docs pages: {sorted(expected - present)}"


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    assert any("rtseg run" in line for line in lines[:RUN_WITHIN_LINES]), (
        f"`rtseg run` must appear within the README's first {RUN_WITHIN_LINES} lines")


def test_checker_catches_broken_links(tmp_path):
    """The checker itself: a missing file, a wrong anchor and a same-page anchor are told apart."""
    (tmp_path / "other.md").write_text("# Other page\n\n## `rtseg run --remote` and several sources\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## conv_efficiency.py\n\n"
        "[ok](other.md) [ok](other.md#rtseg-run---remote-and-several-sources) [ok](#conv_efficiencypy)\n"
        "[ext](https://example.com/x.md) `[code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n"
        "[bad](missing.md) [bad anchor](other.md#nope) ![bad image](img.png) [bad here](#nowhere)\n")
    problems = broken_links(page)
    assert len(problems) == 4, problems
    assert any("missing.md" in p for p in problems)
    assert any("other.md#nope" in p for p in problems)
    assert any("img.png" in p for p in problems)
    assert any("#nowhere" in p for p in problems)
