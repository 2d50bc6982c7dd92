"""mkdocs hooks: README.md as the site's front page, and the benchmarks' results in the site.

README is the repository's front page and the site's, so it is written once: its links point
into ``docs/`` (as GitHub shows them), and :func:`on_page_markdown` strips that prefix for the
site. ``docs/index.md`` holds only a pointer to this hook. :func:`on_files` adds the figures
and JSON of ``benchmarks/results/`` under the same paths, so the benchmarks page links to the
files the scripts wrote, not to copies.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def readme_for_site(text: str) -> str:
    """README's markdown with ``](docs/x.md)`` links as ``](x.md)`` and the repository's own
    files (``](CHANGELOG.md)``) as their docs pages."""
    # the pointer from the repository to the site is no news on the site
    text = re.sub(r"\nThe full documentation is the docs site:.*?\n\n", "\n", text, flags=re.S)
    text = re.sub(r"\]\(docs/", "](", text)
    return text.replace("](CHANGELOG.md)", "](changelog.md)")


def on_files(files, config):  # noqa: ARG001 - mkdocs API
    from mkdocs.structure.files import File

    for path in sorted((ROOT / "benchmarks" / "results").glob("*")):
        if path.suffix in (".png", ".svg", ".json"):
            files.append(File(f"benchmarks/results/{path.name}", src_dir=str(ROOT),
                              dest_dir=config["site_dir"], use_directory_urls=False))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs API
    if page.file.src_uri == "index.md":
        return readme_for_site((ROOT / "README.md").read_text(encoding="utf-8"))
    return markdown
