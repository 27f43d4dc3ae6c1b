"""The local scheduler: EventBridge rate and cron expressions give the right next fire times, and due jobs run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from clickstream.local.scheduler import Job, ScheduleError, Scheduler, parse, scheduled_event

UTC = timezone.utc
T0 = datetime(2026, 11, 24, 13, 7, 30, tzinfo=UTC)  # a Tuesday


def fires(expression: str, start: datetime = T0, count: int = 3) -> list[str]:
    schedule = parse(expression, anchor=start)
    times, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        times.append(moment.strftime("%a %Y-%m-%d %H:%M"))
    return times


@pytest.mark.parametrize(("expression", "expected"), [
    ("rate(1 hour)", ["Tue 2026-11-24 14:07", "Tue 2026-11-24 15:07", "Tue 2026-11-24 16:07"]),
    ("rate(15 minutes)", ["Tue 2026-11-24 13:22", "Tue 2026-11-24 13:37", "Tue 2026-11-24 13:52"]),
    ("rate(2 days)", ["Thu 2026-11-26 13:07", "Sat 2026-11-28 13:07", "Mon 2026-11-30 13:07"]),
    ("cron(0 * * * ? *)", ["Tue 2026-11-24 14:00", "Tue 2026-11-24 15:00", "Tue 2026-11-24 16:00"]),
    ("cron(5 * * * ? *)", ["Tue 2026-11-24 14:05", "Tue 2026-11-24 15:05", "Tue 2026-11-24 16:05"]),
    ("cron(0/20 13 * * ? *)", ["Tue 2026-11-24 13:20", "Tue 2026-11-24 13:40", "Wed 2026-11-25 13:00"]),
    ("cron(10,50 8-9 * * ? *)", ["Wed 2026-11-25 08:10", "Wed 2026-11-25 08:50", "Wed 2026-11-25 09:10"]),
    ("cron(15 10 ? * MON-FRI *)", ["Wed 2026-11-25 10:15", "Thu 2026-11-26 10:15", "Fri 2026-11-27 10:15"]),
    ("cron(0 6 ? * 1 *)", ["Sun 2026-11-29 06:00", "Sun 2026-12-06 06:00", "Sun 2026-12-13 06:00"]),  # 1 = Sunday
    ("cron(0 0 L * ? *)", ["Mon 2026-11-30 00:00", "Thu 2026-12-31 00:00", "Sun 2027-01-31 00:00"]),
    ("cron(0 12 29 FEB ? *)", ["Tue 2028-02-29 12:00", "Sun 2032-02-29 12:00", "Fri 2036-02-29 12:00"]),
    ("cron(30 2 1 JAN,JUL ? 2027-2028)", ["Fri 2027-01-01 02:30", "Thu 2027-07-01 02:30", "Sat 2028-01-01 02:30"]),
])
def test_next_fire_times(expression, expected):
    assert fires(expression) == expected


def test_cron_fires_at_the_exact_minute_only_after_it():
    hourly = parse("cron(0 * * * ? *)")
    on_the_hour = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert hourly.next_after(on_the_hour - timedelta(seconds=1)) == on_the_hour
    assert hourly.next_after(on_the_hour) == on_the_hour + timedelta(hours=1)


def test_rate_counts_from_its_anchor_and_times_are_utc():
    rate = parse("rate(1 hour)", anchor=T0)
    assert rate.next_after(T0 - timedelta(days=1)) == T0 + timedelta(hours=1)
    assert rate.next_after(T0 + timedelta(hours=5, minutes=59)) == T0 + timedelta(hours=6)
    berlin = timezone(timedelta(hours=1))
    assert rate.next_after(T0.astimezone(berlin)) == T0 + timedelta(hours=1)
    with pytest.raises(ValueError, match="timezone-aware"):
        rate.next_after(datetime(2026, 11, 24, 13, 0))


@pytest.mark.parametrize(("expression", "message"), [
    ("rate(1 hours)", "singular unit for 1"),
    ("rate(5 minute)", "singular unit for 1 and the plural otherwise"),
    ("rate(0 minutes)", "positive"),
    ("rate(2 weeks)", "minute"),
    ("every hour", "neither rate"),
    ("cron(0 * * * *)", "6 fields"),
    ("cron(0 * * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 * ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(60 * * * ? *)", "minutes value '60'"),
    ("cron(0 10 ? * MON#2 *)", "not supported by the local scheduler"),
    ("cron(0 10 15W * ? *)", "not supported by the local scheduler"),
    ("cron(0 10 ? * 6L *)", "not supported by the local scheduler"),
    ("cron(0 10 30 2 ? *)", "does not fire within"),
    ("cron(0 9-5 * * ? *)", "runs backwards"),
])
def test_invalid_or_unsupported_expressions_are_clear_errors(expression, message):
    with pytest.raises(ScheduleError, match=message):
        parse(expression, anchor=T0).next_after(T0)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment


def make_job(invoke, clock: FakeClock, expression: str = "rate(1 hour)") -> Job:
    schedule = parse(expression, anchor=clock())
    return Job(rule="clickstream-etl-unit", expression=schedule, function="SBW_Lamda_ETL-unit", invoke=invoke,
               event=lambda moment: scheduled_event("arn:aws:events:us-east-1:123456789012:rule/r", "us-east-1", moment),
               next_run=schedule.next_after(clock()))


def test_a_due_job_runs_once_with_a_scheduled_event_and_missed_runs_are_not_caught_up():
    clock = FakeClock(T0)
    events = []
    job = make_job(lambda event: events.append(event) or {"loaded": 1}, clock)
    scheduler = Scheduler([job], now=clock)

    assert scheduler.run_due() == [] and events == []
    clock.moment = T0 + timedelta(hours=1)
    assert scheduler.run_due() == [job]
    (event,) = events
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-11-24T14:07:30Z" and event["detail"] == {}
    assert job.last_run["ok"] is True and job.last_run["result"] == {"loaded": 1}
    assert job.next_run == T0 + timedelta(hours=2)

    clock.moment = T0 + timedelta(hours=5, minutes=30)  # a laptop asleep for three runs
    scheduler.run_due()
    assert len(events) == 2, "one run for the missed ones, as EventBridge (which never back-fills)"
    assert job.next_run == T0 + timedelta(hours=6)


def test_a_failing_run_is_recorded_and_the_schedule_goes_on():
    clock = FakeClock(T0)
    changes = []

    def broken(event):
        raise ConnectionError("warehouse down")

    job = make_job(broken, clock)
    scheduler = Scheduler([job], now=clock, on_change=lambda jobs: changes.append([j.describe() for j in jobs]))
    clock.moment = T0 + timedelta(hours=1, seconds=5)
    scheduler.run_due()
    assert job.last_run["ok"] is False and "warehouse down" in job.last_run["error"]
    assert job.next_run == T0 + timedelta(hours=2)
    assert changes[-1][0]["next_run"] == (T0 + timedelta(hours=2)).isoformat()


def test_run_forever_returns_when_stopped():
    clock = FakeClock(T0)
    job = make_job(lambda event: None, clock)
    scheduler = Scheduler([job], now=clock)
    scheduler.stop.set()
    scheduler.run_forever()
