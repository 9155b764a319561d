"""The README stays a front page, and every link inside the repository's docs leads somewhere: a relative link
names a file that exists, and a `#anchor` names a heading of the page it points at, as GitHub slugs headings."""

import itertools
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250


def doc_pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def github_slug(heading: str) -> str:
    """GitHub's heading anchor (github-slugger's `slug`): lower case, every character that is not a letter, a
    digit, a space, '-' or '_' dropped, spaces made '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _tokens(page: Path) -> list:
    return MarkdownIt("commonmark").enable("table").parse(page.read_text())


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on the page; a repeated heading gets `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    tokens = _tokens(page)
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open":
            slug = github_slug("".join(child.content for child in inline.children or []))
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def links(page: Path) -> list[str]:
    """Every link target in the page's text (links inside code are not links)."""
    found = []
    for token in _tokens(page):
        for child in token.children or []:
            if child.type == "link_open":
                found.append(str(child.attrs["href"]))
    return found


def broken_links(root: Path = ROOT) -> list[str]:
    """`page: target (why)` for every relative link that leads nowhere."""
    problems = []
    for page in doc_pages(root):
        for target in links(page):
            parts = urlsplit(target)
            if parts.scheme or parts.netloc:
                continue  # outside the repository
            linked = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            where = f"{page.relative_to(root)}: {target}"
            if not linked.exists():
                problems.append(f"{where} (no such file)")
            elif parts.fragment and (linked.suffix != ".md" or parts.fragment not in anchors(linked)):
                problems.append(f"{where} (no heading #{parts.fragment} in {linked.relative_to(root)})")
    return problems


def test_every_relative_link_and_anchor_resolves() -> None:
    assert len(doc_pages()) > 1, "docs/ holds the deep pages"
    assert broken_links() == []


# A pointer from code or config to a section of the docs: `README, "Prerequisites"`, `docs/flows.md, "<heading>"`.
SECTION_POINTER = re.compile(r'(README|docs/[\w-]+\.md)(?:\.md)?, "([^"]+)"')


def pointed_sections(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(file, page, section) for every section pointer in the repository's code and config (not the docs or tests;
    hidden folders and virtualenvs, such as .venv-other, are not walked)."""
    kinds = (".py", ".txt", ".yaml", ".toml", "Dockerfile", ".prefectignore", ".dockerignore")
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith((".", "venv", "__")) and d != "tests"]
        files += [Path(folder, name) for name in names if name.endswith(kinds)]
    return [
        (str(path.relative_to(root)), "README.md" if page == "README" else page, section)
        for path in sorted(files)
        for page, section in SECTION_POINTER.findall(path.read_text(errors="replace"))
    ]


def test_code_and_config_point_at_sections_that_exist() -> None:
    """A section named in a message or a comment is a heading of that page, or a bold lead-in (`**...**`) in it."""
    pointers = pointed_sections()
    assert ("__main__.py", "README.md", "Prerequisites") in pointers
    assert ("flows/requirements.txt", "docs/flows.md", "Your flows' own Python packages") in pointers
    stale = []
    for where, page, section in pointers:
        text = (ROOT / page).read_text()
        if github_slug(section) not in anchors(ROOT / page) and f"**{section}**" not in text:
            stale.append(f"{where}: {page}, {section!r}")
    assert stale == []


def test_readme_stays_a_front_page() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("How it works: Prefect's hybrid model", "how-it-works-prefects-hybrid-model"),
        ("Deploying without Docker (`workerImage`)", "deploying-without-docker-workerimage"),
        ("Work pools: `process` or `ecs`, Spot and scale", "work-pools-process-or-ecs-spot-and-scale"),
        ("Runs that die or get stuck", "runs-that-die-or-get-stuck"),
        ("Task definitions at a team's scale", "task-definitions-at-a-teams-scale"),
    ],
)
def test_slugs_are_githubs(heading: str, slug: str) -> None:
    """Punctuation, code spans and apostrophes in this repository's own headings slug as github-slugger does."""
    assert github_slug(heading) == slug


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Top\n\n[ok](docs/a.md#a-b) [gone](docs/b.md) [bad](docs/a.md#nope)\n")
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## A b\n\n[up](../README.md#top) `[code](nowhere.md)`\n")
    assert broken_links(tmp_path) == [
        "README.md: docs/b.md (no such file)",
        "README.md: docs/a.md#nope (no heading #nope in docs/a.md)",
    ]
