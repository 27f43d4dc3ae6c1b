"""notebooks/render.py (`make notebooks`): lessons executed in order, rendered with their outputs, an index page."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def render():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import render as module
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return module


def lesson(folder: Path, name: str, title: str, code: str) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}"),
                                               nbformat.v4.new_code_cell(code)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, folder / name)


def test_every_lesson_is_executed_and_rendered_with_its_outputs(render, tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    lesson(lessons, "00_first.ipynb", "00 · First", "print(6 * 7)")
    lesson(lessons, "01_second.ipynb", "01 · Second", "from pathlib import Path; print('ran in', Path.cwd().name.upper())")
    lesson(lessons, "notes.ipynb", "not a lesson", "print('never run')")
    rows = render.render_series(tmp_path / "out", folder=lessons, timeout=60)
    assert [(number, title, file) for number, title, file, _ in rows] == [
        ("00", "First", "00_first.html"), ("01", "Second", "01_second.html")]
    assert all(seconds is not None for *_, seconds in rows)
    assert "42" in (tmp_path / "out" / "00_first.html").read_text()
    assert "ran in LESSONS" in (tmp_path / "out" / "01_second.html").read_text()  # in the notebook's own folder
    index = (tmp_path / "out" / "index.html").read_text()
    assert index.index('href="00_first.html"') < index.index('href="01_second.html"') and "notes" not in index


def test_a_failing_lesson_is_rendered_with_its_error_and_marked_in_the_index(render, tmp_path):
    lessons = tmp_path / "lessons"
    lessons.mkdir()
    lesson(lessons, "00_broken.ipynb", "Broken", "raise ValueError('the stack is not running')")
    lesson(lessons, "01_fine.ipynb", "Fine", "print('after')")
    rows = render.render_series(tmp_path / "out", only={"00", "01"}, folder=lessons, timeout=60)
    assert [seconds is None for *_, seconds in rows] == [True, False]
    assert "the stack is not running" in (tmp_path / "out" / "00_broken.html").read_text()
    assert "failed" in (tmp_path / "out" / "index.html").read_text()
