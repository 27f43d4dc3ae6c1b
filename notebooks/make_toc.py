"""Print the workshop's table of contents as a markdown table, generated from the notebook file names.

Lessons are the files `NN_snake_slug.ipynb` in this folder, in number order; a lesson's title is the first
heading of its first markdown cell (without a leading "NN ·"), else its slug.

    python notebooks/make_toc.py              # links relative to the repository root (for README.md)
    python notebooks/make_toc.py --link-base . # links relative to notebooks/
    python notebooks/make_toc.py --readme README.md  # rewrite the table between the README's markers
    python notebooks/make_toc.py --nav               # rewrite each lesson's navigation cells (previous/contents/next)

Each lesson has two navigation cells, tagged "nav": the second cell and the last one. They are generated here
from the file names, so a renamed, added or removed lesson never leaves a stale link (`make toc` rewrites them).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
LESSON_FILE = re.compile(r"^(?P<number>\d{2})_(?P<slug>[a-z0-9_]+)\.ipynb$")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*$", re.MULTILINE)
NUMBER_PREFIX = re.compile(r"^\d{2}\s*[·:.\-–—]\s*")


def lessons(folder: Path = NOTEBOOKS) -> list[tuple[str, str, Path]]:
    """(number, title, path) of every lesson notebook in `folder`, in number order."""
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        match = LESSON_FILE.match(path.name)
        if match:
            found.append((match["number"], title(path, match["slug"]), path))
    return found


def title(path: Path, slug: str) -> str:
    """The first heading of the notebook's first markdown cell, else the slug in words."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            heading = HEADING.search("".join(source) if isinstance(source, list) else source)
            if heading:
                return NUMBER_PREFIX.sub("", heading["text"])
            break
    return slug.replace("_", " ").capitalize()


def toc(link_base: str = "notebooks", folder: Path = NOTEBOOKS) -> str:
    """The markdown table: number, title, link to the file."""
    base = "" if link_base in ("", ".") else link_base.rstrip("/") + "/"
    rows = ["| # | lesson | notebook |", "|---|---|---|"]
    for number, lesson_title, path in lessons(folder):
        rows.append(f"| {number} | {lesson_title} | [`{path.name}`]({base}{path.name}) |")
    return "\n".join(rows)


NAV_TAG = "nav"
CONTENTS_LINK = "../README.md#the-workshop"


def nav(path: Path) -> str:
    """The navigation line of lesson `path`: previous lesson, contents (the README's table), next lesson."""
    found = lessons(path.parent)
    index = [p for _, _, p in found].index(path)

    def link(number: str, lesson_title: str, target: Path) -> str:
        return f"[{number} · {lesson_title}]({target.name})"

    parts = []
    if index > 0:
        parts.append("← **Previous:** " + link(*found[index - 1]))
    parts.append(f"**Contents:** [all lessons]({CONTENTS_LINK})")
    if index + 1 < len(found):
        parts.append("**Next:** " + link(*found[index + 1]) + " →")
    return " · ".join(parts)


def nav_cells(notebook: dict) -> list[int]:
    return [i for i, cell in enumerate(notebook["cells"]) if NAV_TAG in cell.get("metadata", {}).get("tags", [])]


def with_nav(notebook: dict, text: str) -> dict:
    """`notebook` with its navigation cells (re)made: the second cell and the last one."""
    cells = [cell for i, cell in enumerate(notebook["cells"]) if i not in set(nav_cells(notebook))]

    def cell(position: str) -> dict:
        return {"cell_type": "markdown", "id": f"nav-{position}", "metadata": {"tags": [NAV_TAG]},
                "source": text.splitlines(keepends=True)}

    return {**notebook, "cells": [*cells[:1], cell("top"), *cells[1:], cell("bottom")]}


def write_nav(folder: Path = NOTEBOOKS) -> list[Path]:
    """Rewrite the navigation cells of every lesson in `folder`; returns the files that changed."""
    changed = []
    for _, _, path in lessons(folder):
        text = path.read_text(encoding="utf-8")
        updated = json.dumps(with_nav(json.loads(text), nav(path)), indent=1, ensure_ascii=False) + "\n"
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


START, END = "<!-- notebooks:start -->", "<!-- notebooks:end -->"


def with_toc(readme: str, table: str) -> str:
    """`readme` with the text between the notebook markers replaced by `table`."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link-base", default="notebooks", help="prefix of the links (default: notebooks)")
    parser.add_argument("--readme", type=Path, help="rewrite the table between the markers in this file")
    parser.add_argument("--nav", action="store_true", help="rewrite every lesson's navigation cells")
    args = parser.parse_args()
    if args.nav:
        for path in write_nav():
            print("navigation updated:", path.name)
    if args.readme:
        args.readme.write_text(with_toc(args.readme.read_text(encoding="utf-8"), toc(args.link_base)), encoding="utf-8")
    elif not args.nav:
        print(toc(args.link_base))


if __name__ == "__main__":
    main()
