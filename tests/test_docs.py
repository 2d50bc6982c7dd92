"""The docs site's sources: README as its front page, every page in the navigation, every
link from README to a page that exists. (`make docs` builds the site with --strict in CI.)"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return set(re.findall(r":\s*([\w/.-]+\.md)\s*$", nav, flags=re.M))


def test_readme_links_become_site_links():
    text = "See [serving](docs/guides/serving.md), [news](CHANGELOG.md) and [x](https://a/docs/b)."
    assert _hooks().readme_for_site(text) == (
        "See [serving](guides/serving.md), [news](changelog.md) and [x](https://a/docs/b).")


def test_the_pointer_to_the_site_is_left_out_of_the_site():
    text = ("Intro.\n\nThe full documentation is the docs site: `make docs` builds it\n"
            "into `site/`.\n\n## Install\n")
    assert _hooks().readme_for_site(text) == "Intro.\n\n## Install\n"


def test_every_docs_page_is_in_the_navigation():
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages == _nav_pages()


def test_readme_links_point_at_files_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in t]
    assert len(links) >= 10
    assert [t for t in links if not (ROOT / t).exists()] == []
    # and each docs page it links to is one the site builds
    assert {t.removeprefix("docs/") for t in links if t.startswith("docs/")} <= _nav_pages()


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README has {len(lines)} lines; the details belong in docs/"
    assert any(line.strip() == "make test" or line.startswith("make test ") for line in lines)


def test_code_lines_fit_the_sites_column():
    """The site's content column shows about 78 characters of code at 1280 px; a longer
    line hides its end (often a comment) behind a horizontal scroll."""
    long = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        fenced = False
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and len(line) > 78:
                long.append(f"{page.relative_to(ROOT)}:{number} ({len(line)})")
    assert not long, long
