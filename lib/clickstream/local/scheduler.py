"""The templates' EventBridge schedules, honoured locally: run each rule's target function on its clock.

moto stores `AWS::Events::Rule` but never fires it, so `clickstream up --schedule` starts this module as a
background process (recorded in state.json, stopped by pid by `clickstream down`):

    CLICKSTREAM_HOME=.clickstream python -m clickstream.local.scheduler

Each rule with a ScheduleExpression invokes its target through the local Lambda runtime with the event
EventBridge would send (a "Scheduled Event", or the target's Input). Expressions (UTC, as in AWS):

- `rate(N minute|minutes|hour|hours|day|days)`: every N units from when the scheduler starts (EventBridge
  counts from the rule's creation); the first run is one period after the start.
- `cron(minutes hours day-of-month month day-of-week year)`: AWS's six fields with `*`, `?`, lists `a,b`,
  ranges `a-b`, steps `a/n` `*/n` `a-b/n`, month and weekday names (JAN, SUN-SAT; day-of-week 1 = Sunday)
  and `L` (last day) in day-of-month. One of day-of-month and day-of-week must be `?`. `W`, `#` and `L` in
  day-of-week are not supported locally (a clear error, not a wrong schedule).

Missed runs are not caught up (EventBridge does not either); runs of one rule never overlap here. The
process writes `<home>/scheduler.json` (pid, each rule's next and last run) for `clickstream status`.
"""

from __future__ import annotations

import argparse
import calendar
import json
import logging
import os
import re
import signal
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from clickstream.settings import LOCAL_ACCOUNT_ID, Settings

log = logging.getLogger("clickstream.local.scheduler")
STATUS_FILE = "scheduler.json"
MAX_WAIT_SECONDS = 60.0  # re-check the clock at least this often (a suspended laptop wakes up late)
CRON_SEARCH_YEARS = 5  # a cron expression that does not fire within this many years is an error

RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")
CRON_RE = re.compile(r"^cron\((.*)\)$")
RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
MONTHS = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


class ScheduleError(ValueError):
    """A schedule expression is invalid, or uses a form the local scheduler does not support."""


class Expression(Protocol):
    text: str

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (UTC)."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("schedule times must be timezone-aware")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Rate:
    """`rate(N unit)`: fire at anchor + k x period, k = 1, 2, ..."""

    text: str
    period: timedelta
    anchor: datetime

    def next_after(self, moment: datetime) -> datetime:
        moment, anchor = _utc(moment), _utc(self.anchor)
        if moment < anchor:
            return anchor + self.period
        periods = (moment - anchor) // self.period + 1
        return anchor + periods * self.period


@dataclass(frozen=True)
class Cron:
    """`cron(minutes hours day-of-month month day-of-week year)`, UTC, each field expanded to its values."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: day-of-month is `?`
    last_day: bool  # `L` in day-of-month
    months: frozenset[int]
    weekdays: frozenset[int] | None  # AWS numbering, 1 = Sunday; None: day-of-week is `?`
    years: frozenset[int] | None  # None: any year

    def day_matches(self, day: date) -> bool:
        if self.years is not None and day.year not in self.years:
            return False
        if day.month not in self.months:
            return False
        if self.weekdays is not None:
            return day.isoweekday() % 7 + 1 in self.weekdays  # isoweekday: Monday 1 .. Sunday 7
        last = calendar.monthrange(day.year, day.month)[1]
        return (self.last_day and day.day == last) or (self.days is not None and day.day in self.days)

    def next_after(self, moment: datetime) -> datetime:
        start = _utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        times = sorted((hour, minute) for hour in self.hours for minute in self.minutes)
        day = start.date()
        for _ in range(CRON_SEARCH_YEARS * 366):
            if self.day_matches(day):
                for hour, minute in times:
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                    if candidate >= start:
                        return candidate
            day += timedelta(days=1)
        raise ScheduleError(f"{self.text} does not fire within {CRON_SEARCH_YEARS} years of {start:%Y-%m-%d}")


def next_runs(expression: Expression, count: int, after: datetime) -> list[datetime]:
    """The first `count` fire times of `expression` strictly after `after`, in order."""
    runs: list[datetime] = []
    for _ in range(count):
        runs.append(expression.next_after(runs[-1] if runs else after))
    return runs


def parse(expression: str, anchor: datetime | None = None) -> Rate | Cron:
    """Parse an EventBridge schedule expression; `anchor` is when a rate schedule starts counting (now)."""
    text = expression.strip()
    if match := RATE_RE.match(text):
        value, unit = int(match.group(1)), match.group(2)
        singular = unit.removesuffix("s")
        if singular not in RATE_UNITS:
            raise ScheduleError(f"{text}: the unit must be minute(s), hour(s) or day(s)")
        if value < 1:
            raise ScheduleError(f"{text}: the value must be a positive whole number")
        if (value == 1) != (unit == singular):
            raise ScheduleError(f"{text}: use the singular unit for 1 and the plural otherwise, as EventBridge does")
        return Rate(text, value * RATE_UNITS[singular], _utc(anchor or utc_now()))
    if match := CRON_RE.match(text):
        return _parse_cron(text, match.group(1).split())
    raise ScheduleError(f"{expression!r} is neither rate(...) nor cron(...)")


def _parse_cron(text: str, fields: list[str]) -> Cron:
    if len(fields) != 6:
        raise ScheduleError(f"{text}: cron needs 6 fields (minutes hours day-of-month month day-of-week year)")
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(f"{text}: exactly one of day-of-month and day-of-week must be '?'")
    last_day = False
    days = None
    if dom != "?":
        if dom == "L":
            last_day, days = True, frozenset()
        else:
            days = _field(text, "day-of-month", dom, 1, 31)
    return Cron(
        text=text,
        minutes=_field(text, "minutes", minutes, 0, 59),
        hours=_field(text, "hours", hours, 0, 23),
        days=days,
        last_day=last_day,
        months=_field(text, "month", month, 1, 12, MONTHS),
        weekdays=None if dow == "?" else _field(text, "day-of-week", dow, 1, 7, WEEKDAYS),
        years=None if year in ("*", "?") else _field(text, "year", year, 1970, 2199),
    )


def _field(text: str, name: str, spec: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """Expand one cron field (`*`, `a`, `a-b`, `a/n`, `*/n`, `a-b/n`, lists of them) to its values."""
    if spec == "?":
        raise ScheduleError(f"{text}: '?' is only allowed in day-of-month or day-of-week")
    values: set[int] = set()
    for part in spec.split(","):
        body, _, step_text = part.partition("/")
        step = _number(text, name, step_text, 1, high - low + 1) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            first_text, last_text = body.split("-", 1)
            first, last = _value(text, name, first_text, low, high, names), _value(text, name, last_text, low, high, names)
            if first > last:
                raise ScheduleError(f"{text}: {name} range {body} runs backwards")
        else:
            first = _value(text, name, body, low, high, names)
            last = high if step_text else first  # "5/15": from 5 every 15 to the end of the range
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _value(text: str, name: str, token: str, low: int, high: int, names: dict[str, int] | None) -> int:
    if names and token.upper() in names:
        return names[token.upper()]
    if not token.isdigit() and any(mark in token.upper() for mark in ("L", "W", "#")):
        raise ScheduleError(f"{text}: {name} {token!r} (L, W or #) is not supported by the local scheduler")
    return _number(text, name, token, low, high)


def _number(text: str, name: str, token: str, low: int, high: int) -> int:
    if not token.isdigit() or not low <= int(token) <= high:
        raise ScheduleError(f"{text}: {name} value {token!r} is not a number from {low} to {high}")
    return int(token)


def scheduled_event(rule_arn: str, region: str, moment: datetime) -> dict[str, Any]:
    """The event EventBridge sends a target of a scheduled rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass
class Job:
    """One rule's target: when it runs next and how the last run went."""

    rule: str
    expression: Rate | Cron
    function: str
    invoke: Callable[[dict[str, Any]], Any]
    event: Callable[[datetime], dict[str, Any]]
    next_run: datetime
    last_run: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {"rule": self.rule, "expression": self.expression.text, "function": self.function,
                "next_run": self.next_run.isoformat(), "last_run": self.last_run}


@dataclass
class Scheduler:
    """Runs each job when its time comes; `now` and `wait` are injectable so tests need no real clock."""

    jobs: list[Job]
    now: Callable[[], datetime] = utc_now
    on_change: Callable[[list[Job]], None] = lambda jobs: None
    stop: threading.Event = field(default_factory=threading.Event)

    def run_due(self) -> list[Job]:
        """Invoke every job whose time has come (once, however late), then schedule its next run."""
        ran = []
        for job in self.jobs:
            fire_time = job.next_run
            if self.now() < fire_time:
                continue
            started = self.now()
            try:
                result = job.invoke(job.event(fire_time))
                job.last_run = {"scheduled_for": fire_time.isoformat(), "started_at": started.isoformat(),
                                "ok": True, "result": result}
                log.info("%s ran %s: %s", job.rule, job.function, json.dumps(result, default=str))
            except Exception as error:  # one failed run must not stop the schedule (EventBridge keeps firing)
                job.last_run = {"scheduled_for": fire_time.isoformat(), "started_at": started.isoformat(),
                                "ok": False, "error": f"{type(error).__name__}: {error}"}
                log.error("%s: %s failed\n%s", job.rule, job.function, traceback.format_exc())
            job.next_run = job.expression.next_after(max(self.now(), fire_time))
            ran.append(job)
        if ran:
            self.on_change(self.jobs)
        return ran

    def run_forever(self) -> None:
        self.on_change(self.jobs)
        while not self.stop.is_set():
            self.run_due()
            if not self.jobs:
                self.stop.wait(MAX_WAIT_SECONDS)
                continue
            wait = (min(job.next_run for job in self.jobs) - self.now()).total_seconds()
            self.stop.wait(min(max(wait, 0.0), MAX_WAIT_SECONDS))


# --- the background process ------------------------------------------------------------------
def status_file(settings: Settings) -> Path:
    return settings.home / STATUS_FILE


def read_status(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(status_file(settings).read_text())
    except (OSError, ValueError):
        return {}


def _write_status(settings: Settings, jobs: list[Job]) -> None:
    path = status_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "jobs": [job.describe() for job in jobs]}, indent=2, default=str))
    os.replace(tmp, path)


def build_jobs(settings: Settings, start: datetime | None = None) -> list[Job]:
    """One job per enabled scheduled rule target of the templates, its function loaded (init phase)."""
    from clickstream.infra.templates import load_stacks  # here, so that parsing expressions needs no templates
    from clickstream.local.lambda_runtime import LocalLambda

    start = _utc(start or utc_now()).replace(microsecond=0)
    jobs = []
    for stack in load_stacks(settings):
        functions = stack.functions()
        for schedule in stack.schedules():
            if not schedule.enabled:
                log.info("%s is DISABLED in %s: not scheduled", schedule.name, stack.path.name)
                continue
            expression = parse(schedule.expression, anchor=start)
            function = LocalLambda(functions[schedule.function], settings)
            function.init()
            rule_arn = stack.get_att(schedule.logical_id, "Arn")
            payload = schedule.input

            def event(moment: datetime, rule_arn: str = rule_arn, payload: Any = payload) -> dict[str, Any]:
                return payload if payload is not None else scheduled_event(rule_arn, settings.region, moment)

            jobs.append(Job(rule=schedule.name, expression=expression, function=function.function.name,
                            invoke=function.invoke, event=event, next_run=expression.next_after(start)))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    jobs = build_jobs(settings)
    scheduler = Scheduler(jobs, on_change=lambda jobs: _write_status(settings, jobs))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop.set())
    for job in jobs:
        log.info("%s: %s -> %s, next run %s", job.rule, job.expression.text, job.function, job.next_run.isoformat())
    scheduler.run_forever()
    log.info("stopped")


if __name__ == "__main__":
    main()
