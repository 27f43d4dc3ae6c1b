"""Read the workshop's Markdown and notebooks as GitHub and Jupyter show them: headings, anchors, links, asserts."""

from __future__ import annotations

import ast
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
_MARKDOWN = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str    # as written, e.g. "5. The `clickstream` command line"
    plain: str   # as rendered, e.g. "5. The clickstream command line"


def headings(markdown: str) -> list[Heading]:
    tokens = _MARKDOWN.parse(markdown)
    found = []
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open":
            plain = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
            found.append(Heading(int(opening.tag[1]), inline.content, plain))
    return found


def links(markdown: str) -> list[str]:
    """The href of every Markdown link."""
    hrefs = []
    for token in _MARKDOWN.parse(markdown):
        for child in token.children or []:
            if child.type == "link_open":
                hrefs.append(str(child.attrs["href"]))
    return hrefs


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in headings(markdown):
        slug = re.sub(r"[^\w\- ]", "", heading.plain.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def load(path: Path) -> list[dict]:
    """A notebook's cells, each with its source as one string."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [{**cell, "source": "".join(cell["source"])} for cell in cells]


def lessons() -> list[Path]:
    """The lessons 01 onwards (00 is the welcome), in order."""
    return sorted(path for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not path.name.startswith("00_"))


def section(cells: list[dict], text: str) -> list[dict]:
    """The cells of the section under the heading written `text`, up to the next heading of its level or higher."""
    inside: list[dict] = []
    level = None
    for cell in cells:
        found = headings(cell["source"]) if cell["cell_type"] == "markdown" else []
        if level is None:
            match = [h for h in found if h.text == text]
            if match:
                level = match[0].level
                inside.append(cell)
        elif any(h.level <= level for h in found):
            break
        else:
            inside.append(cell)
    return inside


@functools.cache
def _python(source: str) -> tuple[str, ast.Module]:
    python = TransformerManager().transform_cell(source)
    return python, ast.parse(python)


def code(cells: list[dict]) -> list[tuple[str, ast.Module]]:
    """(Python, its syntax tree) of each code cell, IPython magics translated."""
    return [_python(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def _stored(tree: ast.AST, comprehensions: bool) -> set[str]:
    """The names `tree` assigns or assigns into (`d[k] = v`), with or without the variables of its comprehensions."""
    local = {id(n) for c in ast.walk(tree) if isinstance(c, ast.comprehension) for n in ast.walk(c.target)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            while isinstance(node, (ast.Subscript, ast.Attribute)):
                node = node.value
            if isinstance(node, ast.Name):
                names.add(node.id)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and (comprehensions or id(node) not in local):
            names.add(node.id)
    return names


def bound_names(cells: list[dict]) -> set[str]:
    """The names the cells' code assigns (assignments, loop and with targets; not imports or comprehension variables)."""
    return {name for _, tree in code(cells) for name in _stored(tree, comprehensions=False)}


def asserts(cells: list[dict]) -> list[tuple[str, set[str]]]:
    """(source, names it reads from outside itself) of every assert statement in the cells' code."""
    found = []
    for source, tree in code(cells):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} - _stored(node.test, True)
                found.append((ast.get_source_segment(source, node) or "", names))
    return found


def sources_of(names: set[str], cells: list[dict]) -> set[str]:
    """`names` and, through every assignment of the cells' code, the names their values were computed from."""
    inputs: dict[str, set[str]] = {}
    for _, tree in code(cells):
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
                value = node.iter if isinstance(node, ast.For) else node.value
                if value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                read = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} - _stored(value, True)
                for name in (n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)):
                    inputs.setdefault(name, set()).update(read)
    found, todo = set(), set(names)
    while todo:
        name = todo.pop()
        found.add(name)
        todo |= inputs.get(name, set()) - found
    return found
