"""MkDocs hooks of the cnnviz site (mkdocs.yml `hooks:`).

- `index.md` is README.md, its `docs/` links made site-relative: the front page is written once.
- `reference/options.md` is generated from the commands' option tables (reference.py).
- A page's `<!-- cnnviz: methods -->` becomes the table of `cnnviz cam` methods, and
  `<!-- cnnviz: include PATH -->` the file PATH of the repository (headings one level down).
- A page under docs/ that the nav does not list is added under "More", so a new page is
  reachable (and built strictly) before someone places it in the nav.
"""

import re
import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]  # this checkout's cnnviz_cli

import reference  # noqa: E402

GENERATED = {"index.md": lambda: front_page(), "reference/options.md": reference.options_page}
MARKER = re.compile(r"<!-- cnnviz: (methods|include (\S+)) -->")


def front_page() -> str:
    """README.md with its links into docs/ made relative to the site."""
    return (ROOT / "README.md").read_text(encoding="utf-8").replace("](docs/", "](")


def on_files(files: Files, config) -> Files:
    for path, make in GENERATED.items():
        files.append(File.generated(config, path, content=make()))
    listed = set(_pages(config["nav"] or []))
    unlisted = sorted(page.src_uri for page in files.documentation_pages()
                      if page.src_uri not in listed)
    if unlisted and config["nav"] is not None:
        config["nav"].append({"More": unlisted})
    return files


def _pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _pages(value)]
    return [page for entry in nav for page in _pages(entry)]


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(_expand, markdown)


def _expand(found: re.Match) -> str:
    if found[1] == "methods":
        return reference.methods_table()
    text = (ROOT / found[2]).read_text(encoding="utf-8")
    return re.sub(r"^#", "##", text, flags=re.M)
