"""The dashboard's charts as Chart.js configs: plain {"type", "data", "options"} dicts of JSON values, built from the
frames of clickstream.analytics.dashboard and drawn on a canvas in the browser by Chart.js (shiny/app.py's
www/chart_output.js; the heatmap is chartjs-chart-matrix's "matrix" type).

    config = funnel_chart(dashboard.funnel(conn, f, "device"))    # grouped bars, one dataset per segment

Every label is formatted here (dates, hours, thousands separators), so the browser only draws.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from clickstream.analytics.questions import DAY_NAMES

COLORS = ("#2563eb", "#f97316", "#10b981", "#a855f7", "#ef4444", "#14b8a6", "#eab308", "#64748b")
STEP_LABELS = {"product_view": "Product view", "add_to_cart": "Add to cart", "begin_checkout": "Begin checkout",
               "purchase": "Purchase"}
BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
DAY_FORMAT = "%b %d"
HOUR_FORMAT = "%b %d %H:00"
MAX_TICKS = 12
Config = dict[str, Any]


def number(value) -> int | float:
    """A JSON number (an int when whole; NULL is 0)."""
    value = 0.0 if value is None or pd.isna(value) else float(value)
    return int(value) if value.is_integer() else value


def numbers(values) -> list[int | float]:
    """JSON numbers of a column (a plain loop: the frames here are small, where pandas' per-call cost dominates)."""
    return [number(value) for value in list(values)]


def labels(values, fmt: str) -> list[str]:
    """Dates or local timestamps as the axis shows them ("Oct 07", "Oct 07 14:00")."""
    return [value.strftime(fmt) for value in list(values)]


def translucent(color: str, alpha: float) -> str:
    """"#rrggbb" as an rgba() string with `alpha`."""
    red, green, blue = (int(color[n:n + 2], 16) for n in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def shade(value: float, top: float) -> str:
    """The BLUES colour of `value` on a scale from 0 to `top` (the lightest when top is 0)."""
    return BLUES[round(value / top * (len(BLUES) - 1)) if top else 0]


def title(text: str) -> dict:
    return {"display": True, "text": text}


def counts(text: str | None = None, **extra: Any) -> dict:
    """A count axis from zero, titled `text`."""
    return {"beginAtZero": True, "ticks": {"precision": 0}, **({"title": title(text)} if text else {}), **extra}


def time_axis() -> dict:
    return {"ticks": {"maxRotation": 0, "autoSkipPadding": 16, "maxTicksLimit": MAX_TICKS}, "grid": {"display": False}}


def legend(shown: bool) -> dict:
    return {"display": shown, "position": "top", "align": "end", "labels": {"boxWidth": 12}}


def chart(kind: str, x: list, datasets: list[dict], scales: dict, shown_legend: bool = False, **plugins: Any) -> Config:
    return {"type": kind, "data": {"labels": x, "datasets": datasets},
            "options": {"scales": scales, "plugins": {"legend": legend(shown_legend), **plugins}}}


def funnel_chart(frame: pd.DataFrame) -> Config:
    """Sessions per funnel step: one labelled bar per step, grouped bars with a legend when broken down by segment."""
    sessions: dict[Any, dict[str, int | float]] = {}
    for segment, step, count in zip(list(frame["segment"]), list(frame["step"]), list(frame["sessions"])):
        sessions.setdefault(segment, {})[step] = number(count)
    datasets = [{"label": str(segment), "data": [steps.get(step, 0) for step in STEP_LABELS],
                 "backgroundColor": COLORS[n % len(COLORS)]} for n, (segment, steps) in enumerate(sessions.items())]
    segments = list(sessions)
    config = chart("bar", list(STEP_LABELS.values()), datasets,
                   {"x": {"grid": {"display": False}}, "y": counts("sessions", grace="8%")},
                   shown_legend=len(segments) > 1)
    if len(segments) == 1:
        config["options"]["plugins"]["barLabels"] = {"labels": [f"{v:,}" for v in datasets[0]["data"]]}
    return config


def line(name: str, values, color: str, markers: bool, **extra: Any) -> dict:
    return {"label": name, "data": numbers(values), "borderColor": color, "backgroundColor": color,
            "borderWidth": 2, "pointRadius": 3 if markers else 0, **extra}


def trend_chart(frame: pd.DataFrame, grain: str) -> Config:
    """Events (top) and sessions (bottom) per hour or day, filled to zero, sharing the time axis."""
    x = labels(frame["bucket"], DAY_FORMAT if grain == "day" else HOUR_FORMAT)
    datasets = [line(column, frame[column], color, grain == "day", yAxisID=axis, fill="origin",
                     backgroundColor=translucent(color, 0.12))
                for column, color, axis in zip(("events", "sessions"), COLORS, ("y", "y2"))]
    stacked = {"stack": "trend", "offset": True}
    scales = {"x": time_axis(), "y2": counts(f"sessions per {grain}", type="linear", **stacked),
              "y": counts(f"events per {grain}", **stacked)}  # a stack's first axis is drawn at the bottom
    return chart("line", x, datasets, scales)


def product_trend_chart(frame: pd.DataFrame) -> Config:
    """A product's daily views, add-to-carts and purchases."""
    datasets = [line(column.replace("_", " "), frame[column], color, True)
                for column, color in zip(("views", "add_to_cart", "purchases"), COLORS)]
    return chart("line", labels(frame["day"], DAY_FORMAT), datasets, {"x": time_axis(), "y": counts()},
                 shown_legend=True)


def heatmap_chart(frame: pd.DataFrame, tz: str) -> Config:
    """Events by hour of day (x, in `tz`) and day of week (y, Monday on top): a cell per hour and day, darker for
    more events, its tooltip its count."""
    z: list[list[int | float]] = [[0] * 24 for _ in DAY_NAMES]
    for dow, hour, events in zip(list(frame["dow"]), list(frame["hour"]), list(frame["events"])):
        z[int(dow)][int(hour)] += number(events)
    top = max(map(max, z))
    hours = [f"{hour:02d}" for hour in range(24)]
    cells = [{"x": hours[hour], "y": day, "v": value, "label": f"{day} {hours[hour]}:00: {value:,} events"}
             for dow, day in enumerate(DAY_NAMES) for hour, value in enumerate(z[dow])]
    dataset = {"label": "events", "data": cells, "backgroundColor": [shade(cell["v"], top) for cell in cells],
               "borderWidth": 0}
    category = {"type": "category", "offset": True, "grid": {"display": False}}
    scales = {"x": {**category, "labels": hours, "title": title(f"hour of day ({tz})")},
              "y": {**category, "labels": list(DAY_NAMES), "reverse": False}}  # Monday on top: the matrix type reverses
    key = f"darker: more events (the busiest hour: {top:,})" if top else "no events in this range"
    return chart("matrix", hours, [dataset], scales, subtitle={"display": True, "text": key, "align": "end"})
