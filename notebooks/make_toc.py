"""Print the workshop's table of contents as a markdown table, generated from the notebook file names.

Lessons are the files `NN_snake_slug.ipynb` in this folder, in number order; a lesson's title is the first
heading of its first markdown cell (without a leading "NN ·"), else its slug.

    python notebooks/make_toc.py              # links relative to the repository root (for README.md)
    python notebooks/make_toc.py --link-base . # links relative to notebooks/
    python notebooks/make_toc.py --readme README.md  # rewrite the table between the README's markers
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
    args = parser.parse_args()
    if args.readme:
        args.readme.write_text(with_toc(args.readme.read_text(encoding="utf-8"), toc(args.link_base)), encoding="utf-8")
    else:
        print(toc(args.link_base))


if __name__ == "__main__":
    main()
