"""shiny/www: the vendored plotly.js bundle is the one recorded next to it, holds every trace type the dashboard's
charts use, and is what shiny/app.py serves (itself: no CDN, no plotly wheel)."""

from __future__ import annotations

import hashlib
import re
import runpy
from datetime import date
from pathlib import Path

import pandas as pd

from clickstream.analytics import dashboard_charts as charts

ROOT = Path(__file__).resolve().parents[2]
WWW = ROOT / "shiny" / "www"


def recorded() -> dict[str, str]:
    return dict(re.findall(r"^(\w+): (\S+)$", (WWW / "plotly-cartesian.txt").read_text(encoding="utf-8"), re.M))


def bundle() -> str:
    return (WWW / recorded()["file"]).read_text(encoding="utf-8")


def test_the_vendored_bundle_is_the_recorded_version_byte_for_byte_with_its_license():
    record = recorded()
    assert record["package"] == "plotly.js-cartesian-dist-min" and record["file"] == "plotly-cartesian.min.js"
    assert hashlib.sha256((WWW / record["file"]).read_bytes()).hexdigest() == record["sha256"]
    header = bundle()[:300]
    assert f"plotly.js (cartesian - minified) v{record['version']}" in header
    assert "Licensed under the MIT license" in header
    assert "Permission is hereby granted, free of charge" in (WWW / "plotly-cartesian.txt").read_text(encoding="utf-8")


def test_the_bundle_registers_every_trace_type_the_charts_draw():
    days = [date(2024, 10, 7), date(2024, 10, 8)]
    specs = [
        charts.funnel_chart(pd.DataFrame({"segment": "all", "step_index": [1, 2, 3, 4], "step": list(charts.STEP_LABELS),
                                          "sessions": [9, 5, 2, 1]})),
        charts.trend_chart(pd.DataFrame({"bucket": pd.to_datetime(days), "events": [3, 4], "sessions": [1, 2]}), "day"),
        charts.product_trend_chart(pd.DataFrame({"day": days, "views": [4, 3], "add_to_cart": [1, 0],
                                                 "purchases": [1, 0], "revenue": [9.5, 0]})),
        charts.heatmap_chart(pd.DataFrame({"dow": [0], "hour": [9], "events": [12]}), "UTC"),
    ]
    used = {trace["type"] for spec in specs for trace in spec["data"]}
    registered = set(re.findall(r'moduleType:"trace",name:"(\w+)"', bundle()))
    assert used == {"bar", "scatter", "heatmap"} and used <= registered
    assert not {"scattergl", "scatter3d", "choropleth"} & registered  # a partial bundle, not the full one


def test_the_app_serves_the_vendored_bundle_async_and_not_the_plotly_wheel():
    app = runpy.run_path(str(ROOT / "shiny" / "app.py"))
    plotly_js, binding = app["CHART_SCRIPTS"]
    assert (plotly_js.name, str(plotly_js.version)) == ("plotly", recorded()["version"])
    assert Path(plotly_js.source["subdir"]) == WWW
    assert str(plotly_js.as_html_tags()).endswith('/plotly-cartesian.min.js" async=""></script>')
    assert "plotly-cartesian.min.js" in (WWW / "plotly_chart.js").read_text(encoding="utf-8")  # awaits that script
    assert not re.search(r"^\s*(import|from) plotly\b", (ROOT / "shiny" / "app.py").read_text(), re.M)
