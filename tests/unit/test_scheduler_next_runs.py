"""scheduler.next_runs: the next fire times of a rate and of a cron expression."""

from __future__ import annotations

from datetime import datetime, timezone

from clickstream.local import scheduler


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def test_a_rate_fires_every_period_counted_from_its_anchor():
    rate = scheduler.parse("rate(1 hour)", anchor=utc(2030, 3, 14, 9, 20))
    assert scheduler.next_runs(rate, 3, utc(2030, 3, 14, 9, 20, 5)) == [
        utc(2030, 3, 14, 10, 20), utc(2030, 3, 14, 11, 20), utc(2030, 3, 14, 12, 20)]


def test_a_cron_fires_at_its_times_across_midnight():
    cron = scheduler.parse("cron(15 11,23 * * ? *)")
    assert scheduler.next_runs(cron, 3, utc(2030, 3, 14, 11, 15)) == [
        utc(2030, 3, 14, 23, 15), utc(2030, 3, 15, 11, 15), utc(2030, 3, 15, 23, 15)]
    assert scheduler.next_runs(cron, 0, utc(2030, 3, 14)) == []
