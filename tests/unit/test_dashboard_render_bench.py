"""The pure parts of benchmarks/dashboard_render.py: figures, a change's timing from the page's records, and the
original approach's in-app sessions and panels."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dashboard_render  # noqa: E402


def test_summary_is_the_median_and_the_nearest_rank_p95():
    times = [float(n) for n in range(1, 21)]  # 1..20: the 95th percentile by nearest rank is the 19th value
    assert dashboard_render.summary(times) == {"median_ms": 10.5, "p95_ms": 19.0, "n": 20}
    assert dashboard_render.summary([7.0]) == {"median_ms": 7.0, "p95_ms": 7.0, "n": 1}


def test_a_change_runs_from_its_input_to_the_last_value_and_the_first_round_stops_at_idle():
    changes = [["date_range", 5.0], ["tz", 100.0], ["products_table_data_view_rows", 300.0]]
    values = [["kpi_events", 90.0], ["kpi_events", 180.0], ["products_table", 190.0], ["product_trend_plot", 350.0]]
    idle = [95.0, 200.0, 360.0]
    received = [40.0, 170.0, 185.0, 330.0]  # messages with values: the last one's are drawn until 350
    timing = dashboard_render.change_timing(changes, values, idle, mark=50.0, received=received)
    assert timing == {"input": "tz", "server_ms": 230.0, "settled_ms": 250.0, "first_round_ms": 90.0,
                      "outputs": ["kpi_events", "product_trend_plot", "products_table"]}


def test_a_change_without_an_input_or_an_output_after_the_mark_is_an_error():
    with pytest.raises(ValueError, match="no input changed"):
        dashboard_render.change_timing([["tz", 10.0]], [["kpi_events", 20.0]], [30.0], mark=15.0, received=[18.0])
    with pytest.raises(ValueError, match="no output updated after tz"):
        dashboard_render.change_timing([["tz", 10.0]], [["kpi_events", 5.0]], [30.0], mark=1.0, received=[4.0])


def test_the_change_rows_hold_every_zone_but_the_raw_one_to_the_target():
    timings = [{"input_id": "tz", "case": zone, "server_ms": ms, "settled_ms": ms + 100, "first_round_ms": ms,
                "outputs": ["kpi_events"]} for zone, ms in (("Asia/Tokyo", 150.0), ("Asia/Kolkata", 900.0))]
    timings.append({"input_id": "device", "case": "mobile", "server_ms": 210.0, "settled_ms": 250.0,
                    "first_round_ms": 120.0, "outputs": ["trend_plot"]})
    rows = {(r["input_id"], r["case"]): r for r in dashboard_render.change_rows(timings)}
    assert rows[("tz", "Asia/Tokyo")]["met"] is True  # held to its server time, not to its settled 250 ms
    assert rows[("tz", "Asia/Kolkata")]["met"] is None and rows[("tz", "Asia/Kolkata")]["target_ms"] is None
    assert rows[("device", "")]["met"] is False
    assert rows[("device", "")]["first_round"]["p95_ms"] == 120.0


def events(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["event_timestamp", "event_name", "client_id", "is_bot", "signed_in",
                                        "device_category", "context_product_id", "context_product_category", "value"])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def test_sessions_split_after_30_minutes_and_the_funnel_steps_count_in_order():
    rows = events(
        ("2026-11-16 10:00", "product_view", "a", False, False, "mobile", "p1", "shoes", None),
        ("2026-11-16 10:05", "add_to_cart", "a", False, True, "desktop", "p1", "shoes", None),
        ("2026-11-16 10:20", "begin_checkout", "a", False, True, "desktop", None, None, None),
        ("2026-11-16 10:25", "purchase", "a", False, True, "desktop", "p1", "shoes", 30.0),
        ("2026-11-16 11:00", "add_to_cart", "a", False, True, "desktop", "p2", "hats", None),  # 35 min later
        ("2026-11-16 11:01", "product_view", "a", False, True, "desktop", "p2", "hats", None),  # view after cart
        ("2026-11-16 10:00", "product_view", "b", True, False, "desktop", "p1", "shoes", None),  # a bot
    )
    found = dashboard_render.sessions(rows)
    assert len(found) == 3
    assert found["device_category"].tolist().count("mobile") == 1  # a session is its first event's device
    assert found["purchase"].notna().sum() == 1
    assert found["add_to_cart"].notna().sum() == 1  # the second session's cart came before its view

    panels = dashboard_render.original_panels(rows, None, "all", "all", False)
    assert panels["kpis"]["events"] == 6 and panels["kpis"]["sessions"] == 2 and panels["kpis"]["visitors"] == 1
    assert panels["kpis"]["conversion"] == 0.5 and panels["kpis"]["revenue"] == 30.0
    assert panels["funnel"] == {"product_view": 2, "add_to_cart": 1, "begin_checkout": 1, "purchase": 1}
    assert panels["products"].index[0] == "p1"
    signed_in = dashboard_render.original_panels(rows, None, "signed_in", "all", True)
    assert signed_in["kpis"]["sessions"] == 1 and signed_in["kpis"]["events"] == 5


def test_the_report_gives_the_queries_one_after_another_and_at_once():
    figures = {"first_render": dashboard_render.summary([900.0]), "changes": [],
               "original": {"rows": 10, "select_and_compute": dashboard_render.summary([50.0]),
                            "compute_only": dashboard_render.summary([5.0])},
               "server_breakdown": {"queries_ms": {"kpis": 30.0, "products": 50.0}, "queries_at_once_ms": 61.4,
                                    "chart_specs_ms": {"funnel_plot": 1.0, "heatmap_plot": 4.0}}}
    report = dashboard_render.markdown(figures)
    assert "| first full render (1 loads) | 900 | 900 | <= 1,000 | yes |" in report
    assert "queries kpis 30, products 50 (sum 80; all eight at once on the app's reader connections 61)" in report
    assert "funnel_plot 1, heatmap_plot 4 (sum 5)" in report
