"""The README's lesson table is the one generated from the notebook files (run `make toc` after adding one)."""

import json
import re
import runpy
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
make_toc = runpy.run_path(str(ROOT / "notebooks" / "make_toc.py"))
NAV_TAG = make_toc["NAV_TAG"]


def test_readme_lists_every_notebook_as_generated():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert make_toc["with_toc"](readme, make_toc["toc"]()) == readme
    assert all(path.name in readme for _, _, path in make_toc["lessons"]())
    assert len(make_toc["lessons"]()) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) >= 2


def layout_tree(readme: str) -> dict[str, list[str]]:
    """The README's layout tree: {top folder: [its subfolders listed under it]}."""
    section = readme.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    tree: dict[str, list[str]] = {}
    for line in block.splitlines():
        folder = line.split()[0]
        assert folder.endswith("/") and line.split(maxsplit=1)[1:], f"layout line without a folder and what it holds: {line!r}"
        if line.startswith("  "):
            tree[last].append(folder.rstrip("/"))
        else:
            last = folder.rstrip("/")
            tree[last] = []
    return tree


def ignored_by_git(path: Path) -> bool:
    """Whether git ignores a folder (the venv, test output, build folders); outside a git checkout, by name."""
    if (ROOT / ".git").exists():
        return subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path.name]).returncode == 0
    return path.name in {"venv", "build", "dist", "__pycache__", "test-output"} or path.name.endswith(".egg-info")


def test_the_readme_layout_tree_is_the_folders_that_exist():
    tree = layout_tree((ROOT / "README.md").read_text(encoding="utf-8"))
    tops = {path.name for path in ROOT.iterdir() if path.is_dir() and not path.name.startswith(".")
            and any(path.rglob("*.*")) and not ignored_by_git(path)}
    listed_tops = {folder.split("/")[0] for folder in tree}
    assert listed_tops == tops, "README layout: add or remove the top folders that changed"
    package = ROOT / "lib" / "clickstream"
    subfolders = {path.name for path in package.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert set(tree["lib/clickstream"]) == subfolders, "README layout: lib/clickstream's folders changed"


def test_every_lesson_has_the_generated_navigation_and_no_stale_next_line():
    for number, _, path in make_toc["lessons"]():
        notebook = json.loads(path.read_text(encoding="utf-8"))
        positions = make_toc["nav_cells"](notebook)
        assert positions == [1, len(notebook["cells"]) - 1], f"{path.name}: navigation cells at {positions} (run make toc)"
        expected = make_toc["nav"](path)
        assert all("".join(notebook["cells"][i]["source"]) == expected for i in positions), f"{path.name}: run make toc"
        for cell in notebook["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and NAV_TAG not in cell["metadata"].get("tags", []):
                assert "**Next" not in text and "**Previous" not in text, f"{path.name}: a hand-written Next/Previous line"
            for target in re.findall(r"\]\(([^)#]+\.ipynb)", text):
                assert (path.parent / target).exists(), f"{path.name} links to a lesson that does not exist: {target}"


def test_navigation_follows_the_file_names(tmp_path):
    for name in ("00_a.ipynb", "01_b.ipynb", "03_c.ipynb"):
        cells = [{"cell_type": "markdown", "metadata": {}, "source": f"# {name[3]} title"},
                 {"cell_type": "markdown", "metadata": {}, "source": "body"}]
        (tmp_path / name).write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert len(make_toc["write_nav"](tmp_path)) == 3 and make_toc["write_nav"](tmp_path) == []
    middle = json.loads((tmp_path / "01_b.ipynb").read_text())
    assert ["".join(c["source"]) for c in middle["cells"]][1:3] == [make_toc["nav"](tmp_path / "01_b.ipynb"), "body"]
    assert make_toc["nav"](tmp_path / "01_b.ipynb") == (
        "← **Previous:** [00 · a title](00_a.ipynb) · **Contents:** [all lessons](../README.md#the-workshop) · "
        "**Next:** [03 · c title](03_c.ipynb) →")
    assert "Previous" not in make_toc["nav"](tmp_path / "00_a.ipynb")
    assert "Next" not in make_toc["nav"](tmp_path / "03_c.ipynb")
