"""Prefect schedules (cron, interval, rrule) as the cron expressions of elt's `schedules:`.

elt schedules are cron expressions (or @hourly-style names) in a time zone. A Prefect interval becomes
one when it divides an hour or a day evenly; an RRULE when it says minutes, hours, weekdays, days of the
month and months without counts, end dates, positions or week numbers. Whatever else is answered with
None and the reason, for a TODO.
"""

from __future__ import annotations

from dataclasses import dataclass

_WEEKDAYS = {"SU": 0, "MO": 1, "TU": 2, "WE": 3, "TH": 4, "FR": 5, "SA": 6}


@dataclass(frozen=True)
class CronOrReason:
    """The cron expression of a schedule, or why there is none; `note` qualifies an exact match."""

    cron: str | None
    reason: str = ""
    note: str = ""


def interval_cron(seconds: float) -> CronOrReason:
    """`*/15 * * * *` for 900 s, `0 */2 * * *` for 7200 s, `0 0 * * *` for a day, `0 0 * * 0` a week."""
    note = "Prefect counts intervals from the anchor date; the cron fires on the clock's multiples"
    if seconds <= 0 or seconds % 60:
        return CronOrReason(None, f"an interval of {seconds:g} s is not a whole number of minutes")
    minutes = int(seconds // 60)
    if minutes < 60 and 60 % minutes == 0:
        return CronOrReason("* * * * *" if minutes == 1 else f"*/{minutes} * * * *", note=note)
    if minutes % 60 == 0:
        hours = minutes // 60
        if hours < 24 and 24 % hours == 0:
            return CronOrReason("0 * * * *" if hours == 1 else f"0 */{hours} * * *", note=note)
        if hours == 24:
            return CronOrReason("0 0 * * *", note=note)
        if hours == 168:
            return CronOrReason("0 0 * * 0", note=note)
    return CronOrReason(
        None, f"every {_minutes(minutes)} does not divide an hour or a day: cron cannot say it"
    )


def rrule_cron(text: str) -> CronOrReason:
    """The cron expression of an RRULE (`FREQ=WEEKLY;BYDAY=MO;BYHOUR=7` → `0 7 * * 1`)."""
    rule, start = _parse(text)
    if rule is None:
        return CronOrReason(None, f"'{text}' is not an RRULE")
    unsupported = sorted(set(rule) & {"COUNT", "UNTIL", "BYSETPOS", "BYWEEKNO", "BYYEARDAY", "BYEASTER"})
    if unsupported:
        return CronOrReason(None, f"the RRULE's {', '.join(unsupported)} has no cron equivalent")
    freq = rule.get("FREQ", "")
    interval = int(rule.get("INTERVAL", "1") or 1)
    minute = rule.get("BYMINUTE") or (str(start[1]) if start else None)
    hour = rule.get("BYHOUR") or (str(start[0]) if start else None)
    note = ""
    if rule.get("BYSECOND", "0") not in ("0", ""):
        return CronOrReason(None, "cron has no seconds (BYSECOND)")
    days = rule.get("BYDAY")
    dow = "*"
    if days:
        try:
            dow = ",".join(str(_WEEKDAYS[d]) for d in days.split(","))
        except KeyError:
            return CronOrReason(None, f"BYDAY={days} names positions (1MO, -1FR) that cron cannot say")
    month_day = rule.get("BYMONTHDAY", "*")
    month = rule.get("BYMONTH", "*")
    if any(v.startswith("-") for v in month_day.split(",")):
        return CronOrReason(None, "cron cannot count days from the end of the month")
    if freq == "MINUTELY":
        if 60 % interval:
            return CronOrReason(None, f"every {interval} minutes does not divide an hour")
        minutes = "*" if interval == 1 else f"*/{interval}"
        return CronOrReason(f"{minutes} {hour or '*'} {month_day} {month} {dow}")
    if minute is None:
        minute, note = "0", "the RRULE has no DTSTART or BYMINUTE: minute 0 assumed"
    if freq == "HOURLY":
        if hour is not None and rule.get("BYHOUR"):
            return CronOrReason(f"{minute} {hour} {month_day} {month} {dow}", note=note)
        if 24 % interval:
            return CronOrReason(None, f"every {interval} hours does not divide a day")
        hours = "*" if interval == 1 else f"*/{interval}"
        return CronOrReason(f"{minute} {hours} {month_day} {month} {dow}", note=note)
    if hour is None:
        hour, note = "0", "the RRULE has no DTSTART or BYHOUR: midnight assumed"
    if freq == "DAILY" and interval == 1:
        return CronOrReason(f"{minute} {hour} {month_day} {month} {dow}", note=note)
    if freq == "WEEKLY" and interval == 1:
        if dow == "*":
            return CronOrReason(None, "a weekly RRULE without BYDAY starts on its DTSTART's weekday")
        return CronOrReason(f"{minute} {hour} * {month} {dow}", note=note)
    if freq == "MONTHLY" and 12 % interval == 0:
        if month_day == "*" and dow == "*":
            return CronOrReason(None, "a monthly RRULE without BYMONTHDAY starts on its DTSTART's day")
        months = month if interval == 1 else f"*/{interval}"
        return CronOrReason(f"{minute} {hour} {month_day} {months} {dow}", note=note)
    if freq == "YEARLY" and interval == 1 and month != "*" and month_day != "*":
        return CronOrReason(f"{minute} {hour} {month_day} {month} *", note=note)
    return CronOrReason(None, f"FREQ={freq or '?'} with INTERVAL={interval} has no cron equivalent")


def _parse(text: str) -> tuple[dict[str, str] | None, tuple[int, int] | None]:
    """The RRULE's parts and its DTSTART's (hour, minute) if it has one."""
    rule: dict[str, str] | None = None
    start = None
    for line in text.replace("\\n", "\n").splitlines():
        line = line.strip()
        if line.upper().startswith("DTSTART"):
            stamp = line.rpartition(":")[2]
            if "T" in stamp and len(stamp.partition("T")[2]) >= 4:
                clock = stamp.partition("T")[2]
                start = (int(clock[:2]), int(clock[2:4]))
            continue
        body = line[len("RRULE:") :] if line.upper().startswith("RRULE:") else line
        if "FREQ=" in body.upper():
            rule = {}
            for part in body.split(";"):
                key, _, value = part.partition("=")
                rule[key.strip().upper()] = value.strip().upper()
    return rule, start


def _minutes(minutes: int) -> str:
    return f"{minutes} minutes" if minutes % 60 else f"{minutes // 60} hours"
