"""Schedules as values: cron expressions and their slots in a time zone (daylight saving time included),
descriptions in words, `elt validate` of `schedules:` and `triggers:`, `elt schedule list`, the files of
`elt schedule export` (parsed back), and `elt schedule run --if-due` claiming a slot once."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from elt.schedule.cron import CronError, describe, next_slot, parse_cron, previous_slot, slots, zone
from tests.conftest import run_elt

PARIS = zone("Europe/Paris")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def hours(found: list[datetime]) -> list[str]:
    return [f"{s:%m-%d %H:%M}" for s in found]


# -- cron ---------------------------------------------------------------------------------------------


def test_cron_fields_read_lists_ranges_steps_names_and_aliases() -> None:
    cron = parse_cron("*/20 8-18/5 1,15 jan-mar mon-fri")
    assert cron.minutes == (0, 20, 40)
    assert cron.hours == (8, 13, 18)
    assert cron.days == (1, 15)
    assert cron.months == (1, 2, 3)
    assert cron.weekdays == (1, 2, 3, 4, 5)
    assert parse_cron("0 0 * * 7").weekdays == (0,)  # 7 is Sunday too
    assert parse_cron("@daily").fields == ("0", "0", "*", "*", "*")
    assert parse_cron("@hourly").fields == ("0", "*", "*", "*", "*")
    assert parse_cron("@weekly").weekdays == (0,)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "minute field '61': 61 is not within 0-59"),
        ("* 24 * * *", "hour field '24': 24 is not within 0-23"),
        ("* * * * * *", "expected 5 fields"),
        ("0 0 30 2 *", "matches no date"),
        ("5-1 * * * *", "range 5-1 goes backwards"),
        ("*/0 * * * *", "a step of 0"),
        ("0 0 * foo *", "'foo' is not a number or a name (jan, feb"),
        ("@often", "unknown interval '@often'"),
    ],
)
def test_an_invalid_expression_names_the_field_and_what_it_expects(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_cron(expression)


def test_a_daily_slot_keeps_its_local_time_across_daylight_saving_time() -> None:
    daily = parse_cron("0 6 * * *")
    winter = slots(daily, PARIS, utc(2024, 1, 10), utc(2024, 1, 12))
    summer = slots(daily, PARIS, utc(2024, 7, 10), utc(2024, 7, 12))
    assert hours(winter) == ["01-10 05:00", "01-11 05:00"]  # UTC+1
    assert hours(summer) == ["07-10 04:00", "07-11 04:00"]  # UTC+2


def test_a_time_skipped_by_clocks_going_forward_fires_once_at_the_change() -> None:
    # Paris, 31 March 2024: 02:00 CET became 03:00 CEST (01:00 UTC); 02:30 did not exist.
    found = slots(parse_cron("30 2 * * *"), PARIS, utc(2024, 3, 29), utc(2024, 4, 2))
    assert hours(found) == ["03-29 01:30", "03-30 01:30", "03-31 01:00", "04-01 00:30"]


def test_a_time_repeated_by_clocks_going_back_fires_once_unless_every_hour() -> None:
    # Paris, 27 October 2024: 03:00 CEST became 02:00 CET (01:00 UTC); 02:00-02:59 happened twice.
    daily = slots(parse_cron("30 2 * * *"), PARIS, utc(2024, 10, 26), utc(2024, 10, 28))
    assert hours(daily) == ["10-26 00:30", "10-27 00:30"]  # the first 02:30 only
    hourly = slots(parse_cron("30 * * * *"), PARIS, utc(2024, 10, 26, 23), utc(2024, 10, 27, 3))
    # every hour of real time, through both passes of 02:30
    assert hours(hourly) == ["10-26 23:30", "10-27 00:30", "10-27 01:30", "10-27 02:30"]


def test_next_and_previous_slot() -> None:
    leap = parse_cron("0 12 29 2 *")
    assert next_slot(leap, UTC, utc(2025, 1, 1)) == utc(2028, 2, 29, 12)
    assert previous_slot(leap, UTC, utc(2025, 1, 1)) == utc(2024, 2, 29, 12)
    minute = parse_cron("* * * * *")
    assert next_slot(minute, UTC, utc(2024, 1, 1, 10, 0, 0)) == utc(2024, 1, 1, 10, 1)  # strictly after
    assert previous_slot(minute, UTC, utc(2024, 1, 1, 10, 0, 30)) == utc(2024, 1, 1, 10, 0)
    weekdays = parse_cron("0 6 * * mon-fri")
    assert next_slot(weekdays, PARIS, utc(2024, 1, 5, 6)) == utc(2024, 1, 8, 5)  # Friday → Monday 06:00 CET


def test_both_day_fields_restricted_match_either_day_as_in_cron() -> None:
    either = parse_cron("0 0 13 * 5")  # the 13th, or any Friday
    days = [f"{s:%d %a}" for s in slots(either, UTC, utc(2024, 9, 1), utc(2024, 9, 30))]
    assert days == ["06 Fri", "13 Fri", "20 Fri", "27 Fri"]
    days = [f"{s:%d %a}" for s in slots(either, UTC, utc(2024, 10, 1), utc(2024, 10, 20))]
    assert days == ["04 Fri", "11 Fri", "13 Sun", "18 Fri"]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 6 * * *", "every day at 06:00 (Europe/Paris)"),
        ("@hourly", "every hour at :00 (Europe/Paris)"),
        ("*/15 * * * *", "every 15 minutes (Europe/Paris)"),
        ("* * * * *", "every minute (Europe/Paris)"),
        ("30 */2 * * *", "every 2 hours at :30 (Europe/Paris)"),
        ("0 6,18 * * 1-5", "on Monday to Friday at 06:00 and 18:00 (Europe/Paris)"),
        ("0 0 1 * *", "on day 1 of the month at 00:00 (Europe/Paris)"),
        ("0 0 1 1 *", "on 1 January at 00:00 (Europe/Paris)"),
        (
            "*/10 8-18 * * sat,sun",
            "every 10 minutes from 08:00 to 18:59, on Sunday and Saturday (Europe/Paris)",
        ),
    ],
)
def test_a_schedule_is_described_in_words(expression: str, words: str) -> None:
    assert describe(parse_cron(expression), "Europe/Paris") == words


# -- elt.yml ------------------------------------------------------------------------------------------

PROJECT = """
version: 1
pipelines:
  daily:
    variables: {region: none}
    steps:
      - {name: note, shell: "echo ${vars.region} >> ran.txt"}
  publish:
    steps:
      - {name: note, shell: "echo publish >> ran.txt"}
schedules:
  - name: nightly
    pipeline: daily
    interval: "0 6 * * *"
    timezone: Europe/Paris
    variables: {region: eu}
  - name: hourly
    pipeline: daily
    cron_interval: "@hourly"
  - name: paused
    pipeline: daily
    interval: "*/5 * * * *"
    enabled: false
triggers:
  - {name: new-orders, kind: file, pipeline: daily, path: "incoming/*.csv", poll: 10s}
  - {name: after-daily, kind: completion, after: daily, pipeline: publish}
  - {name: from-ci, kind: webhook, pipeline: daily, auth: hmac-sha256, secret: "${WEBHOOK_SECRET:-s}"}
"""


def test_validate_reports_schedule_and_trigger_mistakes_with_their_lines(write_project) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          daily:
            steps:
              - {name: a, shell: "true"}
        schedules:
          - name: nightly
            pipeline: dialy
            interval: "0 25 * * *"
            timezone: Europe/Pariss
          - name: nightly
            job: daily
            interval: "@daily"
            start_date: yesterday
        triggers:
          - {name: files, kind: file, pipeline: daily}
          - {name: after, kind: completion, pipeline: daily, after: daily, path: "x/*"}
          - {name: hook, kind: webhook, pipeline: daily, auth: hmac-sha256}
          - {name: odd, kind: sometimes, pipeline: daily}
        """
    )
    proc = run_elt("validate", cwd=project, check=False)
    assert proc.returncode == 2
    errors = proc.stderr
    assert "elt.yml:8: key 'schedules[0].pipeline': expected the name of a pipeline or job of this file, " \
           "got 'dialy'; did you mean 'daily'?" in errors  # fmt: skip
    assert "elt.yml:9: key 'schedules[0].interval': hour field '25': 25 is not within 0-23" in errors
    assert "elt.yml:10: key 'schedules[0].timezone': unknown time zone 'Europe/Pariss'" in errors
    assert "elt.yml:11: key 'schedules[1].name': expected a unique name, got 'nightly' twice" in errors
    assert "elt.yml:14: key 'schedules[1].start_date': start_date 'yesterday' is not a date" in errors
    assert "elt.yml:16: key 'triggers[0].path': required key is missing" in errors
    assert (
        "elt.yml:17: key 'triggers[1].path': 'path' is for file triggers, this one is a completion" in errors
    )
    assert "elt.yml:18: key 'triggers[2].secret': required key is missing" in errors
    assert "elt.yml:19: key 'triggers[3].kind': expected one of 'file', 'completion', 'webhook'" in errors


def test_schedule_list_says_when_each_schedule_runs_next(write_project) -> None:
    project = write_project(PROJECT)
    listed = json.loads(run_elt("schedule", "list", "--format", "json", cwd=project).stdout)
    by_name = {s["name"]: s for s in listed["schedules"]}
    nightly = by_name["nightly"]
    assert nightly["description"] == "every day at 06:00 (Europe/Paris)"
    assert nightly["target"] == "daily" and nightly["variables"] == {"region": "eu"}
    upcoming = datetime.fromisoformat(nightly["next_run"])
    assert upcoming.astimezone(PARIS).strftime("%H:%M") == "06:00"
    assert timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(days=1)
    assert by_name["hourly"]["description"] == "every hour at :00 (UTC)"
    assert by_name["paused"]["enabled"] is False and by_name["paused"]["next_run"] is None
    assert listed["schedulers"] == []
    text = run_elt("schedule", "list", cwd=project).stdout
    assert "nightly  →  daily" in text and "every day at 06:00 (Europe/Paris)" in text
    assert "paused  →  daily  (disabled)" in text
    triggers = json.loads(run_elt("trigger", "list", "--format", "json", cwd=project).stdout)
    assert [(t["name"], t["kind"]) for t in triggers] == [
        ("new-orders", "file"), ("after-daily", "completion"), ("from-ci", "webhook")]  # fmt: skip


# -- export ---------------------------------------------------------------------------------------------


def test_export_crontab_writes_a_line_per_schedule_in_its_time_zone(write_project) -> None:
    project = write_project(PROJECT)
    proc = run_elt("schedule", "export", "--format", "crontab", cwd=project)
    out = project / ".elt" / "schedules" / "crontab"
    assert f"wrote {out}" in proc.stdout
    assert "paused: disabled (enabled: false), not exported" in proc.stderr
    lines = [line for line in out.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "SHELL=/bin/bash"
    assert lines[1] == "CRON_TZ=Europe/Paris"
    fields = lines[2].split(" ", 5)
    assert fields[:5] == ["0", "6", "*", "*", "*"]
    assert fields[5].startswith(f"cd {project} && ") and " schedule run nightly >> " in fields[5]
    assert lines[3:5] == ["CRON_TZ=UTC", lines[4]] and lines[4].startswith("0 * * * * cd ")


def test_export_github_actions_converts_the_schedule_to_utc(write_project) -> None:
    project = write_project(PROJECT)
    out = project / "workflows"
    run_elt("schedule", "export", "--format", "github-actions", "--out", str(out), cwd=project)
    nightly = yaml.safe_load((out / "elt-nightly.yml").read_text())
    crons = [entry["cron"] for entry in nightly["on"]["schedule"]]
    # 06:00 in Paris is 05:00 UTC in winter and 04:00 UTC in summer: both run, --if-due keeps the slot
    assert sorted(crons) == ["0 4 * * *", "0 5 * * *"]
    steps = nightly["jobs"]["run"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@") and steps[1]["uses"].startswith(
        "actions/setup-python@"
    )
    assert steps[-1]["run"] == (
        "elt schedule run nightly ${{ github.event_name == 'schedule' && '--if-due 50m' || '' }}"
    )
    assert "workflow_dispatch" in nightly["on"]
    hourly = yaml.safe_load((out / "elt-hourly.yml").read_text())
    assert [e["cron"] for e in hourly["on"]["schedule"]] == ["0 * * * *"]  # UTC: as written
    assert hourly["jobs"]["run"]["steps"][-1]["run"] == "elt schedule run hourly"
    assert not (out / "elt-paused.yml").exists()


def test_export_systemd_writes_a_service_and_a_timer_per_schedule(write_project) -> None:
    project = write_project(PROJECT)
    proc = run_elt("schedule", "export", "--format", "systemd", cwd=project)
    folder = project / ".elt" / "schedules"
    assert f"wrote {folder / 'elt-nightly.timer'}" in proc.stdout
    service, timer = configparser.ConfigParser(), configparser.ConfigParser()
    service.read(folder / "elt-nightly.service")
    timer.read(folder / "elt-nightly.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == str(project)
    assert service["Service"]["ExecStart"].endswith("/elt schedule run nightly")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 06:00:00 Europe/Paris"
    assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["Unit"] == "elt-nightly.service"
    analyze = shutil.which("systemd-analyze")
    if analyze:  # systemd itself reads the calendar spec and agrees on the next slot
        shown = subprocess.run([analyze, "calendar", timer["Timer"]["OnCalendar"]], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert "06:00:00 Europe/Paris" in shown


def test_systemd_calendar_of_both_day_fields_is_two_specs() -> None:
    from elt.schedule.export import on_calendar

    assert on_calendar(parse_cron("0 9 13 * fri"), "UTC") == ["*-*-13 09:00:00 UTC", "Fri *-*-* 09:00:00 UTC"]
    assert on_calendar(parse_cron("*/15 8-9 * jan mon-fri"), "UTC") == [
        "Mon,Tue,Wed,Thu,Fri *-01-* 08,09:00,15,30,45:00 UTC"]  # fmt: skip


def test_utc_conversion_moves_weekdays_across_midnight() -> None:
    from elt.schedule.export import utc_crons

    crons, guard, _ = utc_crons(parse_cron("30 0 * * mon"), "Asia/Tokyo", utc(2024, 1, 1))
    assert crons == [("30 15 * * 0", "UTC+09:00")] and guard is None  # Monday 00:30 JST = Sunday 15:30 UTC
    crons, guard, note = utc_crons(parse_cron("0 0 1 * *"), "Asia/Kolkata", utc(2024, 1, 1))
    assert crons == [("30 * * * *", "each hour; --if-due picks the slots")] and guard == 55
    assert note is not None and "no UTC cron equivalent" in note


# -- elt schedule run ---------------------------------------------------------------------------------


def test_schedule_run_if_due_runs_a_slot_once(write_project) -> None:
    project = write_project(PROJECT)
    first = json.loads(run_elt("schedule", "run", "hourly", "--if-due", "61m", "--format", "json",
                               cwd=project).stdout)  # fmt: skip
    again = json.loads(run_elt("schedule", "run", "hourly", "--if-due", "61m", "--format", "json",
                               cwd=project).stdout)  # fmt: skip
    # the slot is the last full hour: run once, then claimed (unless the hour turned between the two)
    assert first["status"] == "success" and first["slot"].endswith(":00:00+00:00")
    if again.get("run") is None:
        assert "was fired already" in again["skipped"]
    assert (project / "ran.txt").read_text().split().count("none") >= 1
    shown = json.loads(run_elt("runs", "show", first["run_id"], "--format", "json", cwd=project).stdout)
    assert shown["request"]["trigger"]["schedule"] == "hourly"
    assert shown["request"]["trigger"]["slot"] == first["slot"]
    by_hand = json.loads(run_elt("schedule", "run", "nightly", "--format", "json", cwd=project).stdout)
    assert by_hand["status"] == "success"
    assert (project / "ran.txt").read_text().split()[-1] == "eu"  # the schedule's variables
    not_due = run_elt("schedule", "run", "nightly", "--if-due", "1s", cwd=project).stdout
    assert not_due.startswith("not run: no slot of 'nightly' in the last 1s")


def test_utc_conversion_of_a_fixed_offset_zone_is_exact() -> None:
    from elt.schedule.export import utc_crons

    crons, guard, note = utc_crons(parse_cron("0 9 * * 1-5"), "Asia/Tokyo", utc(2024, 1, 1))
    assert crons == [("0 0 * * 1-5", "UTC+09:00")] and guard is None and note is None
