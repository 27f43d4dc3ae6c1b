"""clickstream.analytics.dashboard_charts: the plotly.js specs hold the frames' numbers, as JSON, in the look asked."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd

from clickstream.analytics import dashboard_charts as charts

STEPS = ("product_view", "add_to_cart", "begin_checkout", "purchase")


def funnel(segments: dict[str, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([{"segment": segment, "step_index": n + 1, "step": step, "sessions": np.int64(sessions[n])}
                         for segment, sessions in segments.items() for n, step in enumerate(STEPS)])


def test_an_unbroken_funnel_is_one_labelled_bar_per_step_without_a_legend():
    spec = charts.funnel_chart(funnel({"all": [1200, 300, 90, 45]}).iloc[::-1])  # the steps' order is restored
    (bars,) = spec["data"]
    assert bars["x"] == ["Product view", "Add to cart", "Begin checkout", "Purchase"]
    assert bars["y"] == [1200, 300, 90, 45] and bars["text"] == ["1,200", "300", "90", "45"]
    assert spec["layout"]["showlegend"] is False and spec["layout"]["yaxis"]["title"]["text"] == "sessions"
    json.dumps(spec, allow_nan=False)  # numpy ints became JSON numbers


def test_a_broken_down_funnel_is_grouped_bars_one_colour_and_legend_entry_per_segment():
    spec = charts.funnel_chart(funnel({"desktop": [50, 20, 10, 5], "mobile": [70, 30, 8, 2], "tablet": [9, 3, 1, 0]}))
    assert [t["name"] for t in spec["data"]] == ["desktop", "mobile", "tablet"]
    assert [t["y"] for t in spec["data"]] == [[50, 20, 10, 5], [70, 30, 8, 2], [9, 3, 1, 0]]
    assert [t["marker"]["color"] for t in spec["data"]] == list(charts.COLORS[:3])
    assert spec["layout"]["barmode"] == "group" and spec["layout"]["showlegend"] is True
    assert not any("text" in t for t in spec["data"])


def test_the_daily_trend_has_events_over_sessions_with_day_ticks():
    frame = pd.DataFrame({"bucket": pd.to_datetime(["2024-10-07", "2024-10-08", "2024-10-09"]),
                          "events": [100, 250, 0], "sessions": [10, 25, 0]})
    spec = charts.trend_chart(frame, "day")
    events, sessions = spec["data"]
    assert events["x"] == ["2024-10-07 00:00:00", "2024-10-08 00:00:00", "2024-10-09 00:00:00"]
    assert (events["y"], sessions["y"]) == ([100, 250, 0], [10, 25, 0])
    assert (events["yaxis"], sessions["yaxis"]) == ("y", "y2") and events["mode"] == "lines+markers"
    layout = spec["layout"]
    assert layout["yaxis"]["title"]["text"] == "events per day" and layout["yaxis2"]["title"]["text"] == "sessions per day"
    assert layout["xaxis"]["tickformat"] == "%b %d" and layout["xaxis"]["dtick"] == charts.DAY_MS
    assert events["line"]["color"] == charts.COLORS[0] and events["fillcolor"] == "rgba(37, 99, 235, 0.12)"


def test_the_hourly_trend_keeps_local_hours_and_a_long_daily_range_thins_its_ticks():
    hours = pd.DataFrame({"bucket": pd.date_range("2024-10-07 22:00", periods=3, freq="h"),
                          "events": [1, 2, 3], "sessions": [1, 1, 1]})
    spec = charts.trend_chart(hours, "hour")
    assert spec["data"][0]["x"] == ["2024-10-07 22:00:00", "2024-10-07 23:00:00", "2024-10-08 00:00:00"]
    assert spec["data"][0]["mode"] == "lines" and "dtick" not in spec["layout"]["xaxis"]
    days = pd.DataFrame({"bucket": pd.date_range("2024-10-01", periods=60, freq="D"), "events": 1, "sessions": 1})
    assert charts.trend_chart(days, "day")["layout"]["xaxis"]["dtick"] == charts.DAY_MS * 5


def test_the_product_trend_has_its_three_daily_series():
    frame = pd.DataFrame({"day": [date(2024, 10, 7), date(2024, 10, 8)], "views": [40, 38], "add_to_cart": [4, 6],
                          "purchases": [1, 0], "revenue": [Decimal("19.90"), Decimal("0")]})
    spec = charts.product_trend_chart(frame)
    assert [t["name"] for t in spec["data"]] == ["views", "add to cart", "purchases"]
    assert [t["y"] for t in spec["data"]] == [[40, 38], [4, 6], [1, 0]]
    assert spec["data"][0]["x"] == ["2024-10-07", "2024-10-08"] and spec["layout"]["showlegend"] is True


def test_the_heatmap_is_weekday_by_hour_in_the_zone_with_missing_cells_zero():
    frame = pd.DataFrame({"dow": [0, 0, 6], "hour": [9, 23, 0], "events": [Decimal(12), Decimal(3), Decimal(7)]})
    spec = charts.heatmap_chart(frame, "Asia/Tokyo")
    (cells,) = spec["data"]
    assert cells["y"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] and cells["x"] == list(range(24))
    assert len(cells["z"]) == 7 and all(len(row) == 24 for row in cells["z"])
    assert cells["z"][0][9] == 12 and cells["z"][0][23] == 3 and cells["z"][6][0] == 7
    assert sum(map(sum, cells["z"])) == 22
    assert spec["layout"]["xaxis"]["title"]["text"] == "hour of day (Asia/Tokyo)"
    assert spec["layout"]["yaxis"]["autorange"] == "reversed"  # Monday on top
    json.dumps(spec, allow_nan=False)
