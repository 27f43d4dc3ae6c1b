"""The dashboard's charts as plotly.js figure specs: plain {"data": [...], "layout": {...}} dicts of JSON values,
built from the frames of clickstream.analytics.dashboard and drawn in the browser by plotly.js (shiny/app.py).

    spec = funnel_chart(dashboard.funnel(conn, f, "device"))    # grouped bars, one trace per segment

No plotly import here: building the dicts directly skips plotly.graph_objects' validation, the slow part.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from clickstream.analytics.questions import DAY_NAMES

COLORS = ("#2563eb", "#f97316", "#10b981", "#a855f7", "#ef4444", "#14b8a6", "#eab308", "#64748b")
STEP_LABELS = {"product_view": "Product view", "add_to_cart": "Add to cart", "begin_checkout": "Begin checkout",
               "purchase": "Purchase"}
GRID = "#e5e7eb"
TEXT = "#374151"
DAY_MS = 86_400_000
MAX_DAY_TICKS = 12
BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
Spec = dict[str, Any]


def numbers(values) -> list[int | float]:
    """JSON numbers of a column (ints stay ints; NULL is 0)."""
    return [int(v) if float(v).is_integer() else float(v) for v in pd.Series(values).fillna(0).astype(float)]


def wall_times(values, fmt: str = "%Y-%m-%d %H:%M:%S") -> list[str]:
    """Dates or local timestamps as the zone-less strings plotly.js reads as they are."""
    return pd.to_datetime(pd.Series(values)).dt.strftime(fmt).tolist()


def translucent(color: str, alpha: float) -> str:
    """"#rrggbb" as an rgba() string with `alpha`."""
    red, green, blue = (int(color[n:n + 2], 16) for n in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def axis(title: str | None = None, **extra: Any) -> dict:
    return {"title": {"text": title} if title else None, "gridcolor": GRID, "zeroline": False,
            "tickfont": {"size": 11, "color": TEXT}, "automargin": True, **extra}


def layout(**extra: Any) -> dict:
    return {"margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "paper_bgcolor": "white", "plot_bgcolor": "white",
            "font": {"family": "system-ui, sans-serif", "size": 12, "color": TEXT}, "showlegend": False, **extra}


def day_ticks(days: list[str]) -> dict:
    """A tick a day labelled like "Oct 07" (every n-th day on long ranges)."""
    return {"type": "date", "tickformat": "%b %d", "dtick": DAY_MS * max(1, len(days) // MAX_DAY_TICKS)}


def funnel_chart(frame: pd.DataFrame) -> Spec:
    """Sessions per funnel step: one bar per step, grouped bars with a legend when broken down by segment."""
    segments = list(dict.fromkeys(frame["segment"]))
    data = []
    for n, segment in enumerate(segments):
        rows = frame[frame["segment"] == segment].sort_values("step_index")
        sessions = numbers(rows["sessions"])
        trace = {"type": "bar", "name": str(segment), "x": [STEP_LABELS[s] for s in rows["step"]], "y": sessions,
                 "marker": {"color": COLORS[n % len(COLORS)]}}
        if len(segments) == 1:
            trace |= {"text": [f"{v:,}" for v in sessions], "textposition": "outside", "cliponaxis": False}
        data.append(trace)
    return {"data": data, "layout": layout(
        barmode="group", showlegend=len(segments) > 1,
        legend={"orientation": "h", "x": 0.5, "xanchor": "center", "y": 1.02, "yanchor": "bottom"},
        xaxis=axis(categoryorder="array", categoryarray=list(STEP_LABELS.values())),
        yaxis=axis("sessions", rangemode="tozero", tickformat=",d"))}


def line(name: str, x: list[str], y, color: str, markers: bool, **extra: Any) -> dict:
    return {"type": "scatter", "mode": "lines+markers" if markers else "lines", "name": name, "x": x,
            "y": numbers(y), "line": {"color": color, "width": 2}, "marker": {"size": 6}, **extra}


def trend_chart(frame: pd.DataFrame, grain: str) -> Spec:
    """Events (top) and sessions (bottom) per hour or day, filled to zero, sharing the time axis."""
    x = wall_times(frame["bucket"])
    data = [line(column, x, frame[column], color, grain == "day", xaxis="x", yaxis=yaxis, fill="tozeroy",
                 fillcolor=translucent(color, 0.12))
            for column, color, yaxis in zip(("events", "sessions"), COLORS, ("y", "y2"))]
    xaxis = axis(anchor="y2", **(day_ticks(x) if grain == "day" else {"type": "date"}))
    return {"data": data, "layout": layout(
        xaxis=xaxis, yaxis=axis(f"events per {grain}", domain=[0.55, 1], rangemode="tozero", tickformat=",d"),
        yaxis2=axis(f"sessions per {grain}", domain=[0, 0.45], rangemode="tozero", tickformat=",d"))}


def product_trend_chart(frame: pd.DataFrame) -> Spec:
    """A product's daily views, add-to-carts and purchases."""
    x = wall_times(frame["day"], "%Y-%m-%d")
    data = [line(column.replace("_", " "), x, frame[column], color, True)
            for column, color in zip(("views", "add_to_cart", "purchases"), COLORS)]
    return {"data": data, "layout": layout(
        showlegend=True, legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        xaxis=axis(**day_ticks(x)), yaxis=axis(rangemode="tozero", tickformat=",d"))}


def heatmap_chart(frame: pd.DataFrame, tz: str) -> Spec:
    """Events by hour of day (x, in `tz`) and day of week (y, Monday on top)."""
    grid = frame.pivot_table(index="dow", columns="hour", values="events", aggfunc="sum")
    grid = grid.reindex(index=range(7), columns=range(24), fill_value=0).fillna(0)
    z = [numbers(row) for row in grid.to_numpy()]
    data = [{"type": "heatmap", "z": z, "x": list(range(24)), "y": list(DAY_NAMES), "xgap": 1, "ygap": 1,
             "colorscale": [[n / (len(BLUES) - 1), color] for n, color in enumerate(BLUES)], "colorbar": {"title": {"text": "events"}},
             "hovertemplate": "%{y} %{x}:00: %{z:,} events<extra></extra>"}]
    hours = list(range(0, 24, 2))
    return {"data": data, "layout": layout(
        xaxis=axis(f"hour of day ({tz})", tickvals=hours, ticktext=[f"{h:02d}" for h in hours], showgrid=False),
        yaxis=axis(autorange="reversed", showgrid=False))}
