"""The report's PNG charts (matplotlib on the Agg canvas, no display)."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from clickstream.analytics import charts
from test_analytics_args import SAMPLE_REPORT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_charts_writes_four_non_empty_pngs(tmp_path):
    backend = matplotlib.get_backend()
    paths = charts.write_charts(SAMPLE_REPORT, tmp_path / "out")
    assert [p.name for p in paths] == ["funnel.png", "top_products.png", "activity_heatmap.png", "daily_events.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path.name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    assert matplotlib.get_backend() == backend  # the caller's backend is left alone


def test_charts_of_an_empty_report_are_still_written(tmp_path):
    empty = {**SAMPLE_REPORT, "daily_event_counts": {}, "top_products": [], "peak_activity": [],
             "funnel": [{"step": s, "sessions": 0} for s in ("product_view", "add_to_cart", "begin_checkout",
                                                            "purchase")]}
    assert len(charts.write_charts(empty, tmp_path)) == 4


def test_the_heatmap_puts_each_cell_at_its_day_and_hour():
    fig = charts.heatmap_figure(pd.DataFrame({"dow": [6, 0], "hour": [23, 0], "events": [5, 2]}), "Asia/Ho_Chi_Minh")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (7, 24) and grid[6, 23] == 5 and grid[0, 0] == 2 and grid.sum() == 7
    assert "Asia/Ho_Chi_Minh" in fig.axes[0].get_xlabel()


def test_top_products_keeps_the_best_n_by_the_metric():
    fig = charts.top_products_figure(SAMPLE_REPORT["top_products"], top=1)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Laptop"]


def test_chart_data_without_the_needed_columns_is_refused():
    with pytest.raises(ValueError, match="lacks the columns events"):
        charts.heatmap_figure([{"dow": 1, "hour": 2}])
