"""clickstream.analytics.dashboard_charts: the Chart.js configs hold the frames' numbers, as JSON, in the look asked."""

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
    config = charts.funnel_chart(funnel({"all": [1200, 300, 90, 45]}).iloc[::-1])  # the steps' order is restored
    assert config["type"] == "bar"
    assert config["data"]["labels"] == ["Product view", "Add to cart", "Begin checkout", "Purchase"]
    (bars,) = config["data"]["datasets"]
    assert bars["data"] == [1200, 300, 90, 45]
    options = config["options"]
    assert options["plugins"]["barLabels"]["labels"] == ["1,200", "300", "90", "45"]
    assert options["plugins"]["legend"]["display"] is False and options["scales"]["y"]["title"]["text"] == "sessions"
    assert options["scales"]["y"]["beginAtZero"] is True
    json.dumps(config, allow_nan=False)  # numpy ints became JSON numbers


def test_a_broken_down_funnel_is_grouped_bars_one_colour_and_legend_entry_per_segment():
    frame = funnel({"desktop": [50, 20, 10, 5], "mobile": [70, 30, 8, 2], "tablet": [9, 3, 1, 0]})
    config = charts.funnel_chart(frame[~((frame["segment"] == "tablet") & (frame["step"] == "purchase"))])
    datasets = config["data"]["datasets"]
    assert [d["label"] for d in datasets] == ["desktop", "mobile", "tablet"]
    assert [d["data"] for d in datasets] == [[50, 20, 10, 5], [70, 30, 8, 2], [9, 3, 1, 0]]  # a missing step is 0
    assert [d["backgroundColor"] for d in datasets] == list(charts.COLORS[:3])
    assert config["options"]["plugins"]["legend"]["display"] is True
    assert "barLabels" not in config["options"]["plugins"]


def test_the_daily_trend_has_events_over_sessions_on_stacked_axes_with_day_labels():
    frame = pd.DataFrame({"bucket": pd.to_datetime(["2024-10-07", "2024-10-08", "2024-10-09"]),
                          "events": [100, 250, 0], "sessions": [10, 25, 0]})
    config = charts.trend_chart(frame, "day")
    assert config["type"] == "line" and config["data"]["labels"] == ["Oct 07", "Oct 08", "Oct 09"]
    events, sessions = config["data"]["datasets"]
    assert (events["data"], sessions["data"]) == ([100, 250, 0], [10, 25, 0])
    assert (events["yAxisID"], sessions["yAxisID"]) == ("y", "y2") and events["pointRadius"] > 0
    scales = config["options"]["scales"]
    assert scales["y"]["title"]["text"] == "events per day" and scales["y2"]["title"]["text"] == "sessions per day"
    assert scales["y"]["stack"] == scales["y2"]["stack"]  # one above the other, not two axes over one plot
    assert events["borderColor"] == charts.COLORS[0] and events["backgroundColor"] == "rgba(37, 99, 235, 0.12)"
    assert events["fill"] == "origin"


def test_the_hourly_trend_keeps_local_hours_without_markers():
    hours = pd.DataFrame({"bucket": pd.date_range("2024-10-07 22:00", periods=3, freq="h"),
                          "events": [1, 2, 3], "sessions": [1, 1, 1]})
    config = charts.trend_chart(hours, "hour")
    assert config["data"]["labels"] == ["Oct 07 22:00", "Oct 07 23:00", "Oct 08 00:00"]
    assert config["data"]["datasets"][0]["pointRadius"] == 0
    assert config["options"]["scales"]["y"]["title"]["text"] == "events per hour"


def test_the_product_trend_has_its_three_daily_series():
    frame = pd.DataFrame({"day": [date(2024, 10, 7), date(2024, 10, 8)], "views": [40, 38], "add_to_cart": [4, 6],
                          "purchases": [1, 0], "revenue": [Decimal("19.90"), Decimal("0")]})
    config = charts.product_trend_chart(frame)
    assert [d["label"] for d in config["data"]["datasets"]] == ["views", "add to cart", "purchases"]
    assert [d["data"] for d in config["data"]["datasets"]] == [[40, 38], [4, 6], [1, 0]]
    assert config["data"]["labels"] == ["Oct 07", "Oct 08"] and config["options"]["plugins"]["legend"]["display"]


def test_the_heatmap_is_weekday_by_hour_in_the_zone_with_missing_cells_zero_and_darker_for_more():
    frame = pd.DataFrame({"dow": [0, 0, 6], "hour": [9, 23, 0], "events": [Decimal(12), Decimal(3), Decimal(7)]})
    config = charts.heatmap_chart(frame, "Asia/Tokyo")
    assert config["type"] == "matrix"
    (dataset,) = config["data"]["datasets"]
    cells = {(c["y"], c["x"]): c for c in dataset["data"]}
    assert len(cells) == 7 * 24 and {day for day, _ in cells} == set(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    assert cells["Mon", "09"]["v"] == 12 and cells["Mon", "23"]["v"] == 3 and cells["Sun", "00"]["v"] == 7
    assert sum(c["v"] for c in dataset["data"]) == 22
    assert cells["Mon", "09"]["label"] == "Mon 09:00: 12 events"
    colour = dict(zip(((c["y"], c["x"]) for c in dataset["data"]), dataset["backgroundColor"]))
    assert colour["Mon", "09"] == charts.BLUES[-1] and colour["Tue", "09"] == charts.BLUES[0]
    assert charts.BLUES.index(colour["Mon", "23"]) < charts.BLUES.index(colour["Sun", "00"]) < len(charts.BLUES) - 1
    scales = config["options"]["scales"]
    assert scales["x"]["title"]["text"] == "hour of day (Asia/Tokyo)" and scales["x"]["labels"][9] == "09"
    assert scales["y"]["labels"][0] == "Mon" and scales["y"]["reverse"] is False  # Monday on top
    assert "12" in config["options"]["plugins"]["subtitle"]["text"]
    json.dumps(config, allow_nan=False)


def test_an_empty_heatmap_is_all_light_and_says_so():
    config = charts.heatmap_chart(pd.DataFrame({"dow": [], "hour": [], "events": []}), "UTC")
    assert set(config["data"]["datasets"][0]["backgroundColor"]) == {charts.BLUES[0]}
    assert config["options"]["plugins"]["subtitle"]["text"] == "no events in this range"
