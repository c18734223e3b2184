"""`elt schedule export`: the project's schedules as files another scheduler runs, each calling
`elt schedule run NAME` in the project.

- `crontab`: one file, `crontab`, a line per schedule after a `CRON_TZ=` line (cronie reads it).
- `github-actions`: a workflow per schedule, `elt-NAME.yml` (checkout, install, run). GitHub runs cron
  in UTC, so the expression is converted; a zone with daylight saving time gets one cron per UTC
  offset, and `elt schedule run --if-due` runs only the one that is the schedule's slot.
- `systemd`: `elt-NAME.service` and `elt-NAME.timer` per schedule; `OnCalendar=` carries the zone.

Schedules that are disabled, have no interval or run `@once` are left out, with a warning.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from elt.errors import EltError
from elt.project import Project
from elt.schedule.cron import WEEKDAYS, Cron, offsets, zone
from elt.schedule.model import Schedule, load_schedules

FORMATS = ("crontab", "github-actions", "systemd")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # a ${NAME} without a default


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    schedule: str | None  # None for a file of every schedule (the crontab)


@dataclass(frozen=True)
class Export:
    """The files written and what the user should know about them."""

    files: tuple[ExportedFile, ...]
    warnings: tuple[str, ...]
    install: str  # how to put the files to use


def export_schedules(
    project: Project, fmt: str, out_dir: Path, *, elt_command: str | None = None, at: datetime | None = None
) -> Export:
    """Write the schedules of `project` in format `fmt` (crontab, github-actions, systemd) into
    `out_dir`; `elt_command` is the elt executable the files call (default: this one's full path)."""
    if fmt not in FORMATS:
        raise EltError(f"unknown export format '{fmt}': expected one of {', '.join(FORMATS)}")
    warnings: list[str] = []
    exported = []
    for schedule in load_schedules(project):
        if not schedule.enabled:
            warnings.append(f"{schedule.name}: disabled (enabled: false), not exported")
        elif schedule.cron is None:
            what = "runs @once" if schedule.once else "has no interval"
            warnings.append(f"{schedule.name}: {what}, not exported (only `elt scheduler` runs it)")
        else:
            exported.append(schedule)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = elt_command or _elt_executable()
    at = at or datetime.now(UTC)
    if fmt == "crontab":
        files = [_crontab(project, exported, out_dir, command)]
        install = f"crontab -l | cat - {files[0].path} | crontab -   (adds the lines to your crontab)"
    elif fmt == "systemd":
        files = [f for s in exported for f in _systemd(project, s, out_dir, command, warnings)]
        install = (
            f"cp {out_dir}/elt-*.service {out_dir}/elt-*.timer ~/.config/systemd/user/ && "
            "systemctl --user daemon-reload && systemctl --user enable --now elt-NAME.timer"
        )
    else:
        files = [_workflow(project, s, out_dir, at, warnings) for s in exported]
        install = f"copy {out_dir}/elt-*.yml into .github/workflows/ of the repository"
    return Export(tuple(files), tuple(warnings), install)


def _elt_executable() -> str:
    here = Path(sys.executable).parent / "elt"
    return str(here) if here.exists() else (shutil.which("elt") or "elt")


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


# -- crontab --------------------------------------------------------------------------------------------


def _crontab(project: Project, schedules: list[Schedule], out_dir: Path, command: str) -> ExportedFile:
    lines = [
        f"# elt schedules of {project.root}",
        "# written by `elt schedule export --format crontab`; add to your crontab with",
        "#   crontab -l | cat - crontab | crontab -",
        "# CRON_TZ sets the time zone of the lines after it (cronie reads it; a cron that does not, such as",
        "# Debian's, runs them in the system's time zone: there, prefer the systemd export).",
        "SHELL=/bin/bash",
    ]
    for schedule in schedules:
        assert schedule.cron is not None
        log = f".elt/logs/schedule-{_file_name(schedule.name)}.log"
        run = _run_command(project, command, schedule.name)
        line = f"cd {shlex.quote(str(project.root))} && {run} >> {shlex.quote(log)} 2>&1"
        lines += [
            "",
            f"# {schedule.name}: {schedule.description()} → {schedule.target}",
            f"CRON_TZ={schedule.timezone}",
            f"{' '.join(schedule.cron.fields)} {line.replace('%', chr(92) + '%')}",
        ]
    path = out_dir / "crontab"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ExportedFile(path, None)


def _run_command(project: Project, command: str, name: str) -> str:
    environment = f"ELT_ENVIRONMENT={shlex.quote(project.environment)} " if project.environment else ""
    return f"{environment}{shlex.quote(command)} schedule run {shlex.quote(name)}"


# -- systemd --------------------------------------------------------------------------------------------


def _systemd(
    project: Project, schedule: Schedule, out_dir: Path, command: str, warnings: list[str]
) -> list[ExportedFile]:
    assert schedule.cron is not None
    unit = f"elt-{_file_name(schedule.name)}"
    environment = f"Environment=ELT_ENVIRONMENT={project.environment}\n" if project.environment else ""
    service = (
        f"[Unit]\nDescription=elt schedule {schedule.name}: {schedule.target}\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        f"[Service]\nType=oneshot\nWorkingDirectory={project.root}\n{environment}"
        f"ExecStart={_systemd_quote(command)} schedule run {_systemd_quote(schedule.name)}\n"
    )
    calendars = "".join(f"OnCalendar={spec}\n" for spec in on_calendar(schedule.cron, schedule.timezone))
    # Persistent: a slot missed while the machine was off runs once at boot, as `catchup: false` does.
    timer = (
        f"[Unit]\nDescription=elt schedule {schedule.name}: {schedule.description()}\n\n"
        f"[Timer]\n{calendars}Persistent=true\nUnit={unit}.service\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    if schedule.catchup:
        warnings.append(
            f"{schedule.name}: systemd runs one missed slot after downtime, not each (catchup: true)"
        )
    service_path, timer_path = out_dir / f"{unit}.service", out_dir / f"{unit}.timer"
    service_path.write_text(service, encoding="utf-8")
    timer_path.write_text(timer, encoding="utf-8")
    return [ExportedFile(service_path, schedule.name), ExportedFile(timer_path, schedule.name)]


def _systemd_quote(word: str) -> str:
    return word if re.fullmatch(r"[A-Za-z0-9_./:@+-]+", word) else json.dumps(word)


def on_calendar(cron: Cron, timezone: str) -> list[str]:
    """systemd `OnCalendar=` specs for `cron` in `timezone` (two when both day fields are restricted:
    cron runs on either day, systemd on days that match both)."""
    minutes = _list(cron.minutes, 60, "{:02d}")
    hours = _list(cron.hours, 24, "{:02d}")
    months = _list(cron.months, 12, "{:02d}")
    days = _list(cron.days, 31, "{:02d}")
    weekdays = ",".join(WEEKDAYS[d].capitalize() for d in cron.weekdays) if len(cron.weekdays) < 7 else ""
    time = f"{hours}:{minutes}:00 {timezone}"
    if days != "*" and weekdays and not (cron.day_star or cron.weekday_star):
        return [f"*-{months}-{days} {time}", f"{weekdays} *-{months}-* {time}"]
    prefix = f"{weekdays} " if weekdays else ""
    return [f"{prefix}*-{months}-{days} {time}"]


def _list(values: tuple[int, ...], size: int, form: str) -> str:
    return "*" if len(values) == size else ",".join(form.format(v) for v in values)


# -- GitHub Actions ------------------------------------------------------------------------------------


def _workflow(
    project: Project, schedule: Schedule, out_dir: Path, at: datetime, warnings: list[str]
) -> ExportedFile:
    assert schedule.cron is not None
    crons, guard, note = utc_crons(schedule.cron, schedule.timezone, at)
    if note:
        warnings.append(f"{schedule.name}: {note}")
    if _fires_every_minutes(schedule.cron) < 5:
        warnings.append(f"{schedule.name}: GitHub runs a scheduled workflow at most every 5 minutes")
    run = f"elt schedule run {shlex.quote(schedule.name)}"
    if guard is not None:
        run += f" ${{{{ github.event_name == 'schedule' && '--if-due {guard}m' || '' }}}}"
    env = {"ELT_ENVIRONMENT": project.environment} if project.environment else {}
    for name in _secrets(project):
        env[name] = f"${{{{ secrets.{name} }}}}"
    if _state_is_local(project) and (project.data.get("plugins") or {}).get("extractors"):
        warnings.append(
            f"{schedule.name}: state is kept in .elt/elt.db, which each GitHub run starts without; "
            "use a state_backend (postgresql://, s3://) for incremental syncs"
        )
    directory = _repository_path(project.root)
    install = (
        "pip install -r requirements.txt"
        if (project.root / "requirements.txt").is_file()
        else (f"pip install {shlex.quote('elt==' + _version())}")
    )
    lines = [
        f"# elt schedule {schedule.name}: {schedule.description()} → {schedule.target}",
        "# written by `elt schedule export --format github-actions`; copy to .github/workflows/",
        f"name: {json.dumps('elt ' + schedule.name)}",
        '"on":',
        "  schedule:",
        *(f"    - cron: {json.dumps(line)}{'  # ' + comment if comment else ''}" for line, comment in crons),
        "  workflow_dispatch: {}",
        "concurrency:",
        f"  group: {json.dumps('elt-' + schedule.name)}",
        "  cancel-in-progress: false",
        "jobs:",
        "  run:",
        "    runs-on: ubuntu-latest",
        "    defaults:",
        "      run:",
        f"        working-directory: {json.dumps(directory)}",
    ]
    if env:
        lines.append("    env:")
        lines += [f"      {key}: {json.dumps(value)}" for key, value in env.items()]
    lines += [
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        f"          python-version: {json.dumps(f'{sys.version_info.major}.{sys.version_info.minor}')}",
        f"      - run: {json.dumps(install)}",
        "      - run: elt install",
        f"      - run: {json.dumps(run)}",
    ]
    path = out_dir / f"elt-{_file_name(schedule.name)}.yml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ExportedFile(path, schedule.name)


def utc_crons(
    cron: Cron, timezone: str, at: datetime
) -> tuple[list[tuple[str, str]], int | None, str | None]:
    """`cron` in `timezone` as UTC cron lines (with a comment each), the `--if-due` window in minutes
    when the lines fire more often than the schedule (None when they are exact), and a note."""
    used = offsets(zone(timezone), at)
    minutes = [int(o.total_seconds() // 60) for o in used]
    if minutes == [0]:
        return [(" ".join(cron.fields), "")], None, None
    lines: list[tuple[str, str]] = []
    for offset in minutes:
        shifted = _shift(cron, offset)
        if shifted is None:
            break
        lines += [(line, f"UTC{_offset(offset)}") for line in shifted if line not in [x for x, _ in lines]]
    else:
        if len(minutes) == 1:
            return lines, None, None
        gap = min(b - a for a, b in zip(minutes, minutes[1:], strict=False))
        return (
            lines,
            max(5, gap - 10),
            (
                f"{timezone} changes its UTC offset ({', '.join('UTC' + _offset(m) for m in minutes)}): the "
                "workflow runs at each UTC time and `--if-due` runs only the one that is the schedule's slot"
            ),
        )
    hourly = sorted({(m - o) % 60 for m in cron.minutes for o in minutes})
    line = f"{','.join(map(str, hourly))} * * * *"
    return (
        [(line, "each hour; --if-due picks the slots")],
        55,
        (
            f"'{cron.expression}' in {timezone} has no UTC cron equivalent: the workflow runs every hour "
            "and `--if-due` runs the schedule's slots"
        ),
    )


def _shift(cron: Cron, offset: int) -> list[str] | None:
    """`cron` (local = UTC + offset minutes) as UTC cron lines, or None when the day fields cannot move."""
    shifted = [h * 60 + m - offset for h in cron.hours for m in cron.minutes]
    days_moved = {t // 1440 for t in shifted}
    every_day = len(cron.days) == 31 and len(cron.weekdays) == 7 and len(cron.months) == 12
    if days_moved == {0} or every_day:
        day_fields = " ".join(cron.fields[2:]) if not every_day else "* * *"
    elif len(days_moved) == 1 and len(cron.days) == 31 and len(cron.months) == 12:
        move = days_moved.pop()
        day_fields = "* * " + ",".join(str(d) for d in sorted({(d + move) % 7 for d in cron.weekdays}))
    else:
        return None
    by_hour: dict[int, list[int]] = {}
    for t in sorted({t % 1440 for t in shifted}):
        by_hour.setdefault(t // 60, []).append(t % 60)
    by_minutes: dict[tuple[int, ...], list[int]] = {}
    for hour, mins in by_hour.items():
        by_minutes.setdefault(tuple(mins), []).append(hour)
    return [
        f"{_list(mins, 60, '{}')} {_list(tuple(hours), 24, '{}')} {day_fields}"
        for mins, hours in by_minutes.items()
    ]


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _fires_every_minutes(cron: Cron) -> int:
    """The shortest gap, in minutes, between two slots of a day."""
    times = sorted(h * 60 + m for h in cron.hours for m in cron.minutes)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)] + [times[0] + 1440 - times[-1]]
    return min(gaps)


def _secrets(project: Project) -> list[str]:
    """`${NAME}`s of the project file without a default and not set by its `env:`: the workflow takes
    them from the repository's secrets."""
    text = project.file.read_text(encoding="utf-8")
    declared = set(project.env())
    return sorted({n for n in _VARIABLE.findall(text) if n not in declared})


def _state_is_local(project: Project) -> bool:
    backend = project.environment_entry().get("state_backend") or project.data.get("state_backend") or {}
    uri = str(backend.get("uri") or "systemdb") if isinstance(backend, dict) else "systemdb"
    return uri == "systemdb" or uri.startswith("file://")


def _repository_path(root: Path) -> str:
    """The project folder relative to its git repository ("." at the top, or without a repository)."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            relative = root.relative_to(folder).as_posix()
            return relative or "."
    return "."


def _version() -> str:
    from importlib.metadata import version

    return version("elt")
