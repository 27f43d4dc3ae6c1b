"""The README's lesson table is the one generated from the notebook files (run `make toc` after adding one)."""

import runpy
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
make_toc = runpy.run_path(str(ROOT / "notebooks" / "make_toc.py"))


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
