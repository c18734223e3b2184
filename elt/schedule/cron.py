"""Cron expressions in a time zone: parse one, list its slots between two instants, find the next and
the previous slot, and say in words when it runs.

Five fields, `minute hour day-of-month month day-of-week`, each `*`, a number, a range `1-5`, a step
`*/15` or `8-18/2`, a list of those, or names (`jan`, `mon`); or `@hourly`, `@daily` (`@midnight`),
`@weekly`, `@monthly`, `@yearly` (`@annually`). As in cron, when both day fields are restricted (neither
starts with `*`) a day matches when either does.

Times are wall-clock times in the schedule's time zone, and daylight saving time is handled as Vixie
cron handles it:
- a time that does not exist because clocks go forward (02:30 on the last Sunday of March in Paris)
  fires once, at the moment of the change;
- a time that happens twice because clocks go back fires once, the first time, unless the hour field is
  `*`: an expression that runs every hour keeps running every hour of real time, through both passes.

Slots are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (  # name, lowest, highest, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # the most each month can have
# Wider than any daylight saving shift (2 h at most, anywhere): a slot's wall time is at most this far
# from its instant's wall time in another pass of a repeated hour.
_SLACK = timedelta(hours=3)
_SEARCH_YEARS = 9  # long enough to find a 29 February; an expression that matches nothing is refused


class CronError(ValueError):
    """An expression that is not a valid cron expression; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field allows."""

    expression: str  # as written (`@daily`, `0 6 * * 1-5`)
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]  # of the month, 1-31
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    fields: tuple[str, str, str, str, str]  # the five fields' text
    day_star: bool  # the day-of-month field starts with `*`
    weekday_star: bool

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether the date matches the day fields (either of them when both are restricted)."""
        weekday = (datetime(year, month, day).weekday() + 1) % 7
        in_days, in_weekdays = day in self.days, weekday in self.weekdays
        if self.day_star or self.weekday_star:
            return in_days and in_weekdays
        return in_days or in_weekdays


def parse_cron(text: str) -> Cron:
    """The `Cron` of an expression; CronError names the field at fault and what it expects."""
    expression = text.strip()
    fields = ALIASES.get(expression.lower(), expression).split()
    if expression.startswith("@") and expression.lower() not in ALIASES:
        raise CronError(f"unknown interval '{expression}': expected {', '.join(ALIASES)} or 5 cron fields")
    if len(fields) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}: "
            f"'{expression}'"
        )
    values = [_field(f, *spec) for f, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = tuple(sorted({v % 7 for v in values[4]}))
    cron = Cron(
        expression,
        values[0],
        values[1],
        values[2],
        values[3],
        weekdays,
        (fields[0], fields[1], fields[2], fields[3], fields[4]),
        fields[2].startswith("*"),
        fields[4].startswith("*"),
    )
    if next(_walls(cron, datetime(2000, 1, 1)), None) is None:
        raise CronError(f"'{expression}' matches no date (day {values[2][0]} is in none of its months)")
    return cron


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> tuple[int, ...]:
    found: set[int] = set()
    for part in text.lower().split(","):
        match = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?", part)
        if not match:
            raise CronError(f"{name} field '{text}': cannot read '{part}'")
        span, step_text = match.group(1), match.group(2)
        step = int(step_text) if step_text else 1
        if step == 0:
            raise CronError(f"{name} field '{text}': a step of 0")
        if span == "*":
            first, last = low, high if name != "day of week" else 6
        else:
            start, _, end = span.partition("-")
            first = _number(start, text, name, low, high, names)
            last = _number(end, text, name, low, high, names) if end else (high if step_text else first)
            if last < first:
                raise CronError(f"{name} field '{text}': range {span} goes backwards")
        found.update(range(first, last + 1, step))
    return tuple(sorted(found))


def _number(token: str, text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token in names:
        return names.index(token) + (1 if name == "month" else 0)
    if not token.isdigit():
        raise CronError(
            f"{name} field '{text}': '{token}' is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"{name} field '{text}': {value} is not within {low}-{high}")
    return value


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; CronError when there is none of that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown time zone '{name}': expected an IANA name such as UTC or Europe/Paris"
        ) from None


# -- slots -------------------------------------------------------------------------------------------


def slots(
    cron: Cron, tz: tzinfo, since: datetime, until: datetime, limit: int | None = None
) -> list[datetime]:
    """The instants (UTC) at which `cron` fires in `tz`, with since < instant <= until, in order;
    the first `limit` of them when a limit is given."""
    found: set[datetime] = set()
    end_wall = _wall(until, tz) + _SLACK
    stop_after: datetime | None = None
    for wall in _walls(cron, _wall(since, tz) - _SLACK):
        if wall > end_wall or (stop_after is not None and wall > stop_after):
            break
        for instant in _instants(wall, tz, cron.every_hour):
            if since < instant <= until:
                found.add(instant)
        if limit is not None and stop_after is None and len(found) >= limit:
            stop_after = wall + 2 * _SLACK  # what a repeated hour may still put before these
    ordered = sorted(found)
    return ordered if limit is None else ordered[:limit]


def next_slot(cron: Cron, tz: tzinfo, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (None for an expression that no longer fires)."""
    found = slots(cron, tz, after, after + timedelta(days=366 * _SEARCH_YEARS), limit=1)
    return found[0] if found else None


def previous_slot(cron: Cron, tz: tzinfo, at: datetime) -> datetime | None:
    """The latest slot at or before `at`."""
    for back in (
        timedelta(hours=2),
        timedelta(days=2),
        timedelta(days=33),
        timedelta(days=367),
        timedelta(days=366 * _SEARCH_YEARS),
    ):
        found = slots(cron, tz, at - back, at)
        if found:
            return found[-1]
    return None


def _wall(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _walls(cron: Cron, start: datetime) -> Iterator[datetime]:
    """Wall-clock times (naive) matching `cron`, from `start` on, in order."""
    t = start.replace(second=0, microsecond=0)
    if t < start:
        t += timedelta(minutes=1)
    last_year = t.year + _SEARCH_YEARS
    months, hours, minutes = set(cron.months), set(cron.hours), cron.minutes
    while t.year <= last_year:
        if t.month not in months:
            t = datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
        elif not cron.day_matches(t.year, t.month, t.day):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
        elif t.hour not in hours:
            t = t.replace(minute=0) + timedelta(hours=1)
        else:
            later = next((m for m in minutes if m >= t.minute), None)
            if later is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            t = t.replace(minute=later)
            yield t
            t += timedelta(minutes=1)


def _instants(wall: datetime, tz: tzinfo, every_hour: bool) -> list[datetime]:
    """The instants a wall-clock time stands for in `tz`: one, two in a repeated hour (the second only
    for an expression that runs every hour), or the end of the gap for a time clocks skip."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if _wall(first, tz) == wall:  # it exists twice: a repeated hour
        return [first, second] if every_hour else [first]
    if every_hour:  # the hour's other slots stand for it
        return []
    return [_gap_end(min(first, second), max(first, second), tz)]


def _gap_end(before: datetime, after: datetime, tz: tzinfo) -> datetime:
    """The instant clocks jumped, between `before` (old offset) and `after` (new offset), to the second."""
    offset = before.astimezone(tz).utcoffset()
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(tz).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return before + timedelta(seconds=high)


def offsets(tz: tzinfo, start: datetime, days: int = 366) -> list[timedelta]:
    """The UTC offsets `tz` uses over `days` from `start` (two for a zone with daylight saving time)."""
    found = set()
    for hour in range(0, days * 24, 6):
        offset = (start + timedelta(hours=hour)).astimezone(tz).utcoffset()
        if offset is not None:
            found.add(offset)
    return sorted(found)


# -- in words ---------------------------------------------------------------------------------------

_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def describe(cron: Cron, timezone: str) -> str:
    """When `cron` runs, for people: "every day at 06:00 (Europe/Paris)", "every 15 minutes (UTC)"."""
    when = _days(cron)
    time = _times(cron)
    if when == "every day" and time.startswith("every "):
        return f"{time} ({timezone})"
    if time.startswith("every "):
        return f"{time}, {when.removeprefix('every ')} ({timezone})"
    return f"{when} {time} ({timezone})"


def _times(cron: Cron) -> str:
    minutes, hours = cron.minutes, cron.hours
    minute_step = _step(minutes, 60)
    if len(minutes) == 60 and len(hours) == 24:
        return "every minute"
    if len(hours) == 24:
        if minute_step:
            return f"every {minute_step} minutes"
        return "every hour at " + _join([f":{m:02d}" for m in minutes])
    hour_step = _step(hours, 24)
    if hour_step and len(minutes) == 1:
        return f"every {hour_step} hours at :{minutes[0]:02d}"
    if len(hours) * len(minutes) <= 6:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    if len(minutes) == 60:
        every = "every minute"
    elif minute_step:
        every = f"every {minute_step} minutes"
    else:
        every = "at minutes " + _join([f":{m:02d}" for m in minutes]) + " of each hour"
    spans = _join([f"{a:02d}:00 to {b:02d}:59" for a, b in _runs(hours)])
    return f"{every} from {spans}"


def _days(cron: Cron) -> str:
    months_all = len(cron.months) == 12
    in_months = "" if months_all else " in " + _words(cron.months, lambda m: _MONTH_NAMES[m - 1])
    day_part = weekday_part = None
    if len(cron.days) < 31:
        if len(cron.months) == 1 and len(cron.days) == 1:
            day_part, in_months = f"on {cron.days[0]} {_MONTH_NAMES[cron.months[0] - 1]}", ""
        else:
            numbers = _words(cron.days, str)
            day_part = f"on day {numbers} of the month" if months_all else f"on day {numbers}"
    if len(cron.weekdays) < 7:
        weekday_part = "on " + _words(cron.weekdays, lambda d: _DAY_NAMES[d])
    if day_part and weekday_part:
        # Both restricted: cron runs on either day, unless one field starts with `*`.
        joined = ", when it is a " if (cron.day_star or cron.weekday_star) else " or on "
        return day_part + joined + weekday_part.removeprefix("on ") + in_months
    return (day_part or weekday_part or "every day") + in_months


def _step(values: tuple[int, ...], size: int) -> int | None:
    """N when `values` are 0, N, 2N… below `size` (N > 1), else None."""
    if len(values) < 2 or values[0] != 0:
        return None
    step = values[1] - values[0]
    return step if step > 1 and values == tuple(range(0, size, step)) else None


def _runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
    """Consecutive values as (first, last) pairs."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _words(values: tuple[int, ...], label: Callable[[int], str]) -> str:
    """Values in words, three or more consecutive ones as a range: "Monday to Friday", "1, 15 and 28"."""
    words: list[str] = []
    for first, last in _runs(values):
        if last - first >= 2:
            words.append(f"{label(first)} to {label(last)}")
        else:
            words.extend(label(v) for v in range(first, last + 1))
    return _join(words)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
