"""etl.explain_etl_event: what the ETL makes of an invocation event, as one row of a table."""

from __future__ import annotations

from datetime import date

from clickstream.analytics import etl


def test_a_date_a_prefix_and_a_default_run_are_explained_with_the_lookback_only_for_the_default_run():
    assert etl.explain_etl_event({"date": "2030-03-14"}, 3) == {
        "date": date(2030, 3, 14), "prefix": None, "lookback_days": None, "error": None}
    assert etl.explain_etl_event({"overridePrefix": "events/2030/03/14/09/"}, 3) == {
        "date": None, "prefix": "events/2030/03/14/09/", "lookback_days": None, "error": None}
    assert etl.explain_etl_event({}, 3)["lookback_days"] == 3
    assert etl.explain_etl_event({"hoursBack": 6}, 3)["lookback_days"] == 0.25


def test_a_mistake_is_explained_by_the_parser_s_message():
    row = etl.explain_etl_event({"date": "14/03/2030"}, 3)
    assert row["error"] == "date must be a date YYYY-MM-DD, not '14/03/2030'"
    assert (row["date"], row["prefix"], row["lookback_days"]) == (None, None, None)
    assert "unknown keys day" in etl.explain_etl_event({"day": "2030-03-14"})["error"]
