"""The README's seed-objectives table: every seed item has a row, every row names a section and a Verify assert that exist."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from notebook_text import NOTEBOOKS, ROOT, asserts, bound_names, headings, links, load, section, sources_of

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = "## Seed objectives"
SEED = ROOT.parent / "shared" / "seed"
SEED_COPY = Path(__file__).parent / "data" / "seed_objectives_and_scope.txt"
OUT_OF_SCOPE = "To keep the lab feasible, we explicitly do not cover:"
COLUMNS = ["seed list", "seed item", "notebook", "section", "proved by", "differs from the seed"]
# Seed items the workshop deliberately teaches differently (its storefront, tracker and dashboards).
DIFFERENT = re.compile(r"Next\.js|Amplify|R Shiny")


@dataclass(frozen=True)
class Row:
    seed_list: str
    item: str
    notebook: str
    section: str
    proved_by: str
    differs: str


def readme_section() -> str:
    assert f"\n{SECTION}\n" in README, f"the README has no {SECTION!r} section"
    return README.split(f"\n{SECTION}\n", 1)[1].split("\n## ", 1)[0]


def rows() -> list[Row]:
    lines = [line for line in readme_section().splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == COLUMNS, header
    found = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split(" | ")]
        assert len(cells) == len(COLUMNS), line
        notebook = re.fullmatch(r"\[`?\d\d`?\]\(notebooks/(\d\d_\w+\.ipynb)\)", cells[2])
        assert notebook, f"the notebook cell is a link [NN](notebooks/NN_name.ipynb): {cells[2]}"
        proof = re.fullmatch(r"`(.+)`", cells[4])
        assert proof, f"the proved-by cell is one code span: {cells[4]}"
        found.append(Row(cells[0], cells[1], notebook[1], cells[3], proof[1], cells[5]))
    return found


def seed_items(text: str) -> dict[str, list[str]]:
    """{heading: items} of the seed's bullet lists, as the page's text export shows them.

    The export broke each code span out onto a line of its own (an identifier first: lower case or with an
    underscore), which continues the item before it, and flattened nested lists: a sub-item may follow its parent
    on the same line after " - " or ":-".
    """
    lists: dict[str, list[str]] = {}
    heading = ""
    for line in filter(None, (line.strip() for line in text.splitlines())):
        if line.startswith("- "):
            lists.setdefault(heading, []).append(line[2:])
        elif lists.get(heading) and re.match(r"[a-z0-9]|\S*_", line):
            before = lists[heading][-1]
            lists[heading][-1] = before + ("" if before.endswith("(") else " ") + line
        else:
            heading = line
    return {name: [part.strip() for line in lines for part in re.split(r"\s-\s|(?<=:)-\s*", line) if part.strip()]
            for name, lines in lists.items()}


def seed_text() -> str:
    """The seed's text, from the repository's copy (CI has no ../shared/seed)."""
    return SEED_COPY.read_text(encoding="utf-8")


def test_the_copy_of_the_seed_is_the_seed():
    """Where the seed folder sits next to the repository (a developer's machine), the copy must equal it."""
    originals = sorted(SEED.glob("*.txt")) if SEED.is_dir() else []
    if originals:
        assert SEED_COPY.read_text(encoding="utf-8") == "\n".join(p.read_text(encoding="utf-8") for p in originals)
    assert len(seed_items(seed_text())) >= 3


def test_seed_items_are_read_from_the_flattened_export():
    text = ("Practical skills\n- Send events to S3 Raw (\nclickstream-s3-ingest). - Configure an endpoint.\n"
            "- Configure a Lambda (\nSBW_ETL) that:- Reads files from\ns3://bucket/events/ - Transforms events\n"
            "Scope\n- Running\nSBW_ETL inside the VPC\n")
    assert seed_items(text) == {
        "Practical skills": ["Send events to S3 Raw (clickstream-s3-ingest).", "Configure an endpoint.",
                             "Configure a Lambda (SBW_ETL) that:", "Reads files from s3://bucket/events/",
                             "Transforms events"],
        "Scope": ["Running SBW_ETL inside the VPC"],
    }


def test_every_seed_item_has_one_row_in_the_seeds_words():
    expected = [(heading, item) for heading, items in seed_items(seed_text()).items() if heading != OUT_OF_SCOPE
                for item in items]
    assert len(expected) > 30, expected
    assert [(row.seed_list, row.item) for row in rows()] == expected


def test_the_out_of_scope_items_are_named():
    out_of_scope = seed_items(seed_text())[OUT_OF_SCOPE]
    assert out_of_scope and all(item in readme_section() for item in out_of_scope)


def test_items_the_workshop_teaches_differently_say_what_instead():
    different = [row for row in rows() if DIFFERENT.search(row.item)]
    assert different
    assert all(row.differs for row in different), [row.item for row in different if not row.differs]
    for row in rows():
        for href in links(row.differs):
            assert (ROOT / href.partition("#")[0]).is_file(), href
    assert any("NEXTJS_AND_AMPLIFY.md" in href for row in different for href in links(row.differs))


@pytest.mark.parametrize("row", rows(), ids=lambda row: row.item[:60])
def test_row_names_a_section_and_an_assert_on_a_value_it_computes(row):
    path = NOTEBOOKS / row.notebook
    assert path.is_file(), f"no notebook {row.notebook}"
    cells = load(path)
    written = [h.text for cell in cells if cell["cell_type"] == "markdown" for h in headings(cell["source"])]
    assert row.section in written, f"{row.notebook} has no heading {row.section!r}"
    verify = section(cells, "Verify")
    matching = [(source, names) for source, names in asserts(verify) if row.proved_by in source]
    assert matching, f"no assert of {row.notebook}'s Verify contains {row.proved_by!r}"
    computed = bound_names(section(cells, row.section))
    assert any(sources_of(names, verify) & computed for _, names in matching), (
        f"{row.proved_by!r} reads no value computed in {row.notebook}'s section {row.section!r}")
