"""PNG charts of a report (`clickstream.analytics.questions.report`): funnel, top products, activity heatmap, daily events.

    paths = charts.write_charts(report, "out/charts")      # four PNG files, no display needed

Each `*_figure` function takes the report's value for its chart (a list of dicts) or a DataFrame with the
same columns, and returns a matplotlib Figure drawn on the Agg canvas: no pyplot, no display, and the
backend of the caller (a notebook's inline one) is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clickstream.analytics.questions import DAY_NAMES

DPI = 110


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _frame(data: Any, columns: list[str]) -> pd.DataFrame:
    rows = data if isinstance(data, pd.DataFrame) else list(data)
    frame = pd.DataFrame(rows).copy() if len(rows) else pd.DataFrame(columns=columns)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"chart data lacks the columns {', '.join(missing)}")
    return frame


def funnel_figure(funnel: Any, title: str = "Funnel: sessions reaching each step in order") -> Figure:
    frame = _frame(funnel, ["step", "sessions"])
    fig, ax = _figure(8, 3.6)
    sessions = frame["sessions"].astype(float).to_numpy()
    bars = ax.barh(frame["step"][::-1], sessions[::-1], color="tab:blue")
    top = sessions[0] if len(sessions) and sessions[0] else None
    labels = [f"{int(n):,}" + (f"  ({n / top:.1%})" if top else "") for n in sessions[::-1]]
    ax.bar_label(bars, labels=labels, padding=4)
    ax.set_xlabel("sessions")
    ax.set_xlim(0, max(sessions.max() if len(sessions) else 0, 1) * 1.25)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def top_products_figure(products: Any, top: int = 10, metric: str = "revenue",
                        title: str | None = None) -> Figure:
    """The `top` products by `metric` (a column of top_products), leaving out zeros when any is above zero."""
    frame = _frame(products, ["product_id", metric])
    frame[metric] = frame[metric].astype(float)
    if (frame[metric] > 0).any():
        frame = frame[frame[metric] > 0]
    frame = frame.sort_values([metric, "product_id"], ascending=[False, True]).head(top)
    names = frame["product_name"].fillna(frame["product_id"]) if "product_name" in frame else frame["product_id"]
    fig, ax = _figure(9, 0.4 * max(len(frame), 3) + 1.2)
    ax.barh(list(names)[::-1], frame[metric].to_numpy()[::-1], color="tab:green")
    ax.set_xlabel(metric.replace("_", " ") + (" (USD)" if metric == "revenue" else ""))
    ax.set_title(title or f"Top {len(frame)} products by {metric.replace('_', ' ')}")
    fig.tight_layout()
    return fig


def heatmap_figure(peak_activity: Any, tz: str = "UTC", title: str | None = None) -> Figure:
    frame = _frame(peak_activity, ["dow", "hour", "events"])
    grid = np.zeros((7, 24))
    for row in frame.itertuples(index=False):
        grid[int(row.dow), int(row.hour)] += float(row.events)
    fig, ax = _figure(11, 3.8)
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(7), DAY_NAMES)
    ax.set_xticks(range(24), [str(hour) for hour in range(24)])
    ax.set_xlabel(f"hour of day ({tz})")
    ax.set_title(title or f"Events by day of week and hour ({tz})")
    fig.colorbar(image, ax=ax, label="events")
    fig.tight_layout()
    return fig


def daily_figure(daily: Any, title: str = "Events per day") -> Figure:
    """`daily`: the report's {day: {event_name: n}} or a DataFrame with columns day, event_name, events."""
    if isinstance(daily, Mapping):
        daily = [{"day": day, "event_name": name, "events": n} for day, names in daily.items()
                 for name, n in names.items()]
    frame = _frame(daily, ["day", "event_name", "events"])
    table = frame.pivot_table(index="day", columns="event_name", values="events", aggfunc="sum", fill_value=0)
    table = table.set_axis(pd.to_datetime(table.index)).sort_index()
    fig, ax = _figure(10, 4)
    for name in table.columns:
        ax.plot(table.index, table[name], marker="o", label=name)
    if not table.empty:
        ax.legend(fontsize="small", ncols=2)
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(table) // 14)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
        fig.autofmt_xdate()
    ax.set_ylim(bottom=0)
    ax.set_ylabel("events")
    ax.set_xlabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def write_charts(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write funnel.png, top_products.png, activity_heatmap.png and daily_events.png; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    span = f"{report['from']} to {report['to']}"
    figures = {
        "funnel.png": funnel_figure(report["funnel"], f"Funnel, {span}: sessions reaching each step in order"),
        "top_products.png": top_products_figure(report["top_products"], title=f"Top products by revenue, {span}"),
        "activity_heatmap.png": heatmap_figure(report["peak_activity"], report.get("tz", "UTC")),
        "daily_events.png": daily_figure(report["daily_event_counts"], f"Events per day ({report.get('tz', 'UTC')})"),
    }
    paths = []
    for name, fig in figures.items():
        path = out / name
        fig.savefig(path, dpi=DPI)
        paths.append(path)
    return paths
