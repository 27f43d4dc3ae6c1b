"""Helpers the notebooks 04 and 05 call: a question's SQL shown as Markdown, heatmap cells, the truth's heatmap
in a time zone, the KPI change as the dashboard words it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from clickstream.analytics import dashboard, questions
from clickstream.shop import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("source, folder", [("raw", "sql/analytics"), ("rollup", "sql/analytics/rollup")])
def test_show_sql_gives_the_file_with_its_path_as_markdown(source, folder):
    shown = questions.show_sql("funnel", source)
    assert shown.path == f"{folder}/funnel.sql"
    assert shown.text == (ROOT / folder / "funnel.sql").read_text(encoding="utf-8")
    markdown = shown._repr_markdown_()
    assert markdown.startswith(f"`{folder}/funnel.sql`\n\n```sql\n")
    assert markdown.endswith(shown.text.strip() + "\n```")


def test_show_sql_refuses_an_unknown_question():
    with pytest.raises(questions.AnalyticsError, match="unknown question 'bounces'"):
        questions.show_sql("bounces")


def test_heatmap_cells_keeps_the_cells_with_events():
    frame = pd.DataFrame({"dow": [0, 0, 6], "hour": [3, 4, 23], "events": [5, 0, 2]})
    assert questions.heatmap_cells(frame) == {(0, 3): 5, (6, 23): 2}


def test_truth_heatmap_moves_each_utc_hour_to_its_local_cell_and_keeps_the_local_dates():
    truth = {"hourly_utc": {"2030-05-05T16": 1,    # Sunday 23:00 in Ho Chi Minh City: before the local range
                            "2030-05-05T17": 2,    # Monday 00:00 there
                            "2030-05-06T20": 3,    # Monday 20:00 UTC, Tuesday 03:00 there
                            "2030-05-07T17": 4}}   # Wednesday 00:00 there: after a range ending on Tuesday
    assert simulate.truth_heatmap(truth, date(2030, 5, 6), date(2030, 5, 7), "Asia/Ho_Chi_Minh") == {
        (0, 0): 2, (1, 3): 3}
    assert simulate.truth_heatmap(truth, date(2030, 5, 6), date(2030, 5, 7)) == {(0, 20): 3, (1, 17): 4}
    assert simulate.truth_heatmap(truth, date(2030, 5, 5), date(2030, 5, 5)) == {(6, 16): 1, (6, 17): 2}


def test_truth_heatmap_adds_up_hours_that_land_in_the_same_cell():
    truth = {"hourly_utc": {"2030-05-06T10": 1, "2030-05-13T10": 6}}  # two Mondays 10:00
    assert simulate.truth_heatmap(truth, date(2030, 5, 6), date(2030, 5, 13)) == {(0, 10): 7}


@pytest.mark.parametrize("key, value, before, expected", [
    ("events", 90, 120, ("-25.0% vs previous period", "down")),
    ("revenue", Decimal("30.00"), Decimal("20.00"), ("+50.0% vs previous period", "up")),
    ("sessions", 7, 0, ("new: none in the previous period", "up")),
    ("visitors", 0, 0, ("none in either period", "flat")),
    ("conversion", 0.05, 0.04, ("+1.00 pp vs previous period", "up")),
    ("conversion", None, 0.04, ("no conversion to compare", "flat")),
])
def test_format_change_words_the_change_as_the_page_does(key, value, before, expected):
    assert dashboard.format_change(key, value, before) == expected


def test_kpis_by_needs_the_values_of_a_filter_the_page_has_no_choices_for():
    with pytest.raises(questions.AnalyticsError, match="give the values of 'tz'"):
        dashboard.kpis_by(None, dashboard.Filters(date(2030, 5, 6), date(2030, 5, 12)), "tz")


def test_follow_cells_moves_each_utc_cell_seven_hours_on_in_ho_chi_minh_city():
    utc = pd.DataFrame({"dow": [0, 6], "hour": [20, 18], "events": [4, 2]})
    local = pd.DataFrame({"dow": [1, 0], "hour": [3, 1], "events": [4, 2]})  # Sunday 18:00 UTC: Monday 01:00
    followed = questions.follow_cells(utc, local, date(2030, 5, 6), "Asia/Ho_Chi_Minh")
    assert followed.to_dict("records") == [
        {"UTC": "Mon 20:00", "events in UTC": 4, "Asia/Ho_Chi_Minh": "Tue 03:00", "events in Asia/Ho_Chi_Minh": 4},
        {"UTC": "Sun 18:00", "events in UTC": 2, "Asia/Ho_Chi_Minh": "Mon 01:00", "events in Asia/Ho_Chi_Minh": 2}]


def test_follow_cells_needs_a_range_starting_on_a_monday():
    frame = pd.DataFrame({"dow": [0], "hour": [1], "events": [1]})
    with pytest.raises(questions.AnalyticsError, match="on a Monday"):
        questions.follow_cells(frame, frame, date(2030, 5, 7), "UTC")
