"""The README's lesson table is the one generated from the notebook files (run `make toc` after adding one)."""

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
make_toc = runpy.run_path(str(ROOT / "notebooks" / "make_toc.py"))


def test_readme_lists_every_notebook_as_generated():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert make_toc["with_toc"](readme, make_toc["toc"]()) == readme
    assert all(path.name in readme for _, _, path in make_toc["lessons"]())
    assert len(make_toc["lessons"]()) == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) >= 2
