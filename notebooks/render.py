"""Execute the workshop's notebooks in order and render each to HTML with its outputs, plus an index page.

For instructors who present or share the series without running it (`make notebooks`). The notebooks run on a
private local stack of their own (free ports, a temporary folder, stopped at the end), so a learner's stack in
./.clickstream is never touched and every rendering starts from the same empty state, as CI does.

    python notebooks/render.py                  # every lesson -> build/notebooks/NN_name.html + index.html
    python notebooks/render.py --only 00 04     # some lessons (in order; later ones may need earlier ones)
    python notebooks/render.py --out /tmp/site --timeout 900
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from tqdm import tqdm

from make_toc import NOTEBOOKS, lessons

DEFAULT_OUT = NOTEBOOKS.parent / "build" / "notebooks"


def execute(path: Path, timeout: int) -> nbformat.NotebookNode:
    """The notebook at `path` after running every cell in a fresh kernel whose working folder is the notebook's."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


def render(notebook: nbformat.NotebookNode, title: str) -> str:
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook, resources={"metadata": {"name": title}})
    return body


def index_page(rows: list[tuple[str, str, str, float | None]]) -> str:
    """The contents: one line per lesson (number, title, file, seconds it took; None: it failed)."""
    items = "\n".join(
        f'<li><a href="{html.escape(file)}">{html.escape(number)} · {html.escape(title)}</a>'
        + (f" <small>({seconds:.0f} s)</small>" if seconds is not None else " <strong>(failed: see the page)</strong>")
        + "</li>"
        for number, title, file, seconds in rows)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Clickstream workshop</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;line-height:1.6}"
            "li{margin:.3rem 0}</style></head>\n<body><h1>Clickstream analytics workshop</h1>\n"
            f"<p>Rendered {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, executed on a fresh local stack.</p>\n"
            f"<ol>\n{items}\n</ol>\n</body></html>\n")


def render_series(out: Path, only: set[str] | None = None, timeout: int = 900, folder: Path = NOTEBOOKS) -> list:
    """Execute and render the lessons of `folder` (all, or the numbers in `only`) into `out`; returns the index rows.
    A failing lesson is rendered up to the failing cell (its error shown) and the series goes on."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    chosen = [lesson for lesson in lessons(folder) if only is None or lesson[0] in only]
    for number, title, path in tqdm(chosen, unit="notebook", desc="executing"):
        started = time.monotonic()
        seconds: float | None
        try:
            notebook = execute(path, timeout)
            seconds = time.monotonic() - started
        except CellExecutionError as error:
            tqdm.write(f"{path.name}: a cell failed\n{str(error)[-600:]}")
            notebook, seconds = nbformat.read(path, as_version=4), None
            notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"**This lesson failed to execute:**\n\n```\n{error}\n```"))
        file = path.with_suffix(".html").name
        (out / file).write_text(render(notebook, f"{number} · {title}"), encoding="utf-8")
        rows.append((number, title, file, seconds))
    (out / "index.html").write_text(index_page(rows), encoding="utf-8")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", metavar="NN", help="lesson numbers to render (default: all)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds a cell may run (default: 900)")
    parser.add_argument("--no-stack", action="store_true",
                        help="do not start a private local stack (the notebooks then use CLICKSTREAM_HOME's)")
    args = parser.parse_args()
    if args.no_stack:
        context = nullcontext()
    else:
        from clickstream.local.stack import private_stack

        context = private_stack(apply_to_environ=True)
    with context:
        rows = render_series(args.out, set(args.only) if args.only else None, args.timeout)
    failed = [number for number, _, _, seconds in rows if seconds is None]
    print(f"{len(rows)} lessons rendered into {args.out / 'index.html'}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
