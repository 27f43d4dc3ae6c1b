"""shiny/www: the vendored Chart.js and chartjs-chart-matrix are the versions recorded next to them, byte for byte
with their licences, hold every chart type the dashboard's configs use, and are what shiny/app.py serves (itself: no
CDN, no charting wheel)."""

from __future__ import annotations

import hashlib
import re
import runpy
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from clickstream.analytics import dashboard_charts as charts

ROOT = Path(__file__).resolve().parents[2]
WWW = ROOT / "shiny" / "www"
VENDORED = {"chart.js.txt": ("chart.js", "chart.umd.min.js", "Chart.js v{version}"),
            "chartjs-chart-matrix.txt": ("chartjs-chart-matrix", "chartjs-chart-matrix.min.js",
                                         "chartjs-chart-matrix v{version}")}


def recorded(record: str) -> dict[str, str]:
    return dict(re.findall(r"^(\w+): (\S+)$", (WWW / record).read_text(encoding="utf-8"), re.M))


def script(record: str) -> str:
    return (WWW / recorded(record)["file"]).read_text(encoding="utf-8")


@pytest.mark.parametrize("record", VENDORED)
def test_each_vendored_script_is_the_recorded_version_byte_for_byte_with_its_license(record):
    package, file, banner = VENDORED[record]
    found = recorded(record)
    assert (found["package"], found["file"]) == (package, file)
    assert hashlib.sha256((WWW / file).read_bytes()).hexdigest() == found["sha256"]
    header = script(record)[:300]
    assert banner.format(version=found["version"]) in header and re.search(r"Released under the MIT [Ll]icense", header)
    assert "Permission is hereby granted, free of charge" in (WWW / record).read_text(encoding="utf-8")


def configs() -> list[dict]:
    days = [date(2024, 10, 7), date(2024, 10, 8)]
    return [
        charts.funnel_chart(pd.DataFrame({"segment": "all", "step_index": [1, 2, 3, 4], "step": list(charts.STEP_LABELS),
                                          "sessions": [9, 5, 2, 1]})),
        charts.trend_chart(pd.DataFrame({"bucket": pd.to_datetime(days), "events": [3, 4], "sessions": [1, 2]}), "day"),
        charts.product_trend_chart(pd.DataFrame({"day": days, "views": [4, 3], "add_to_cart": [1, 0],
                                                 "purchases": [1, 0], "revenue": [9.5, 0]})),
        charts.heatmap_chart(pd.DataFrame({"dow": [0], "hour": [9], "events": [12]}), "UTC"),
    ]


def test_the_scripts_hold_every_chart_type_the_configs_use():
    used = {config["type"] for config in configs()}
    assert used == {"bar", "line", "matrix"}
    assert {'id="bar"', 'id="line"'} <= set(re.findall(r'id="\w+"', script("chart.js.txt")))  # controllers' ids
    assert 'id="matrix"' in script("chartjs-chart-matrix.txt")


def test_the_app_serves_chart_js_then_the_matrix_type_then_the_binding_and_no_charting_wheel():
    app = runpy.run_path(str(ROOT / "shiny" / "app.py"))
    chart_js, matrix, binding = app["CHART_SCRIPTS"]
    for dependency, record in ((chart_js, "chart.js.txt"), (matrix, "chartjs-chart-matrix.txt")):
        assert (dependency.name, str(dependency.version)) == (recorded(record)["package"], recorded(record)["version"])
        assert Path(dependency.source["subdir"]) == WWW
        assert str(dependency.as_html_tags()).endswith(f'/{recorded(record)["file"]}"></script>')  # in order, no async
    assert str(binding.as_html_tags()).endswith('/chart_output.js"></script>')
    assert not re.search(r"^\s*(import|from) (plotly|matplotlib)\b", (ROOT / "shiny" / "app.py").read_text(), re.M)
