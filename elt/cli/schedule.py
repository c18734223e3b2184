"""Commands of schedules and triggers: `elt schedule list|run|export`, `elt scheduler`, `elt trigger`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from elt.cli.common import FORMAT, Context, make_reporter, print_json, print_step

LOG_FORMAT = click.option(
    "--log-format", type=click.Choice(["text", "json"]),
    help="Progress on stderr: text (default on a terminal) or JSON lines (default elsewhere).",
)  # fmt: skip


@click.group()
def schedule() -> None:
    """Schedules of elt.yml: list them, run one now, export them for cron, GitHub Actions or systemd."""


@schedule.command("list")
@FORMAT
@click.pass_obj
def schedule_list(obj: Context, fmt: str) -> None:
    """Each schedule: what it runs, when (in words), its next slot and its last run."""
    from elt.schedule.status import live_schedulers, schedule_statuses

    project = obj.project()
    now = datetime.now(UTC)
    statuses = schedule_statuses(project, now)
    running = live_schedulers(project)
    if fmt == "json":
        print_json({"schedules": [s.to_json() for s in statuses], "schedulers": running})
        return
    if not statuses:
        click.echo("no schedules in " + project.file.name)
    for s in statuses:
        state = "" if s.enabled else "  (disabled)"
        click.echo(f"{s.name}  →  {s.target}{state}")
        click.echo(f"    {s.description}" + (f"   [{s.interval}]" if s.interval else ""))
        if s.next_run:
            upcoming = datetime.fromisoformat(s.next_run).astimezone(ZoneInfo(s.timezone))
            click.echo(f"    next: {upcoming:%Y-%m-%d %H:%M %Z} ({_until(upcoming, now)})")
        if s.last:
            click.echo(f"    last: {s.last.status} — slot {s.last.key}, run {s.last.run_id}")
    click.echo(
        f"schedulers running: {', '.join(running)}" if running else "no scheduler running (elt scheduler)"
    )


@schedule.command("run")
@click.argument("name")
@click.option(
    "--if-due", "if_due", metavar="DURATION",
    help="Run only if a slot of the schedule fell within DURATION (15m, 1h) and was not fired yet.",
)  # fmt: skip
@LOG_FORMAT
@FORMAT
@click.pass_obj
def schedule_run(obj: Context, name: str, if_due: str | None, log_format: str | None, fmt: str) -> None:
    """Run schedule NAME's pipeline now, with its variables (as cron or CI would)."""
    from elt.errors import RunError
    from elt.orchestrator.executor import StepResult
    from elt.orchestrator.model import parse_duration
    from elt.schedule.fire import run_schedule

    project = obj.project()
    window = parse_duration(if_due, "--if-due") if if_due is not None else None

    def on_step(step: StepResult) -> None:
        if fmt == "text" and step.status == "success":
            print_step(step)

    done = run_schedule(project, name, reporter=make_reporter(log_format), if_due=window, on_step=on_step)
    if done.result is None:
        if fmt == "json":
            print_json({"schedule": name, "run": None, "skipped": done.skipped})
        else:
            click.echo(f"not run: {done.skipped}")
        return
    result = done.result
    if fmt == "json":
        print_json(
            {"schedule": name, "slot": done.slot.isoformat() if done.slot else None, **result.to_json()}
        )
    failure = result.failure()
    if failure is not None:
        raise RunError(f"step '{failure.name}' failed: {failure.error}",
                       hint=f"see `elt runs show {result.run_id}`")  # fmt: skip
    if fmt == "text":
        click.echo(f"✔ schedule {name}: {result.pipeline} in {result.seconds:.1f}s (run {result.run_id})")


@schedule.command("export")
@click.option("--format", "fmt", type=click.Choice(["crontab", "github-actions", "systemd"]), required=True,
              help="What to write.")  # fmt: skip
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: .elt/schedules/ of the project).")  # fmt: skip
@click.pass_obj
def schedule_export(obj: Context, fmt: str, out_dir: Path | None) -> None:
    """Write files that run the schedules from cron, GitHub Actions or systemd timers."""
    from elt.schedule.export import export_schedules

    project = obj.project()
    written = export_schedules(project, fmt, out_dir or project.system_dir / "schedules")
    for file in written.files:
        click.echo(f"wrote {file.path}")
    for warning in written.warnings:
        click.echo(f"warning: {warning}", err=True)
    if written.files:
        click.echo(f"install: {written.install}")
    else:
        click.echo("nothing to export: no enabled schedule with an interval")


@click.command()
@click.option("--once", is_flag=True, help="Fire what is due now, wait for those runs, and exit.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between two looks.")
@click.option("--grace", type=float, default=60.0, show_default=True,
              help="On SIGTERM, seconds to let runs finish before interrupting them.")  # fmt: skip
@click.option("--clock-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              envvar="ELT_SCHEDULER_CLOCK_FILE", help="Read the time from this file (tests).")  # fmt: skip
@LOG_FORMAT
@click.pass_obj
def scheduler(obj: Context, once: bool, poll: float, grace: float, clock_file: Path | None,
              log_format: str | None) -> None:  # fmt: skip
    """Run the schedules and triggers of elt.yml until stopped (SIGTERM or Ctrl-C)."""
    from elt.schedule.scheduler import FileClock, RealClock, Scheduler

    project = obj.project()
    clock = FileClock(clock_file) if clock_file else RealClock()
    daemon = Scheduler(project, make_reporter(log_format), clock=clock, poll=poll, grace=grace, once=once)
    daemon.run()


@click.group()
def trigger() -> None:
    """Triggers of elt.yml: list them, fire one now."""


@trigger.command("list")
@FORMAT
@click.pass_obj
def trigger_list(obj: Context, fmt: str) -> None:
    """Each trigger: its kind, what it runs, and its last run."""
    from elt.schedule.status import trigger_statuses

    statuses = trigger_statuses(obj.project())
    if fmt == "json":
        print_json([t.to_json() for t in statuses])
        return
    if not statuses:
        click.echo("no triggers")
    for t in statuses:
        state = "" if t.enabled else "  (disabled)"
        click.echo(f"{t.name}  ({t.kind})  →  {t.target}{state}")
        click.echo(f"    {t.description}")
        if t.last:
            click.echo(f"    last: {t.last.status} — run {t.last.run_id} at {t.last.fired_at}")


@trigger.command("fire")
@click.argument("name")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Set a pipeline variable (VALUE is read as JSON when it is: [1, 2], true).")  # fmt: skip
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 1 if it failed.")
@FORMAT
@click.pass_obj
def trigger_fire(obj: Context, name: str, variables: tuple[str, ...], wait: bool, fmt: str) -> None:
    """Start trigger NAME's pipeline now, in the background; print the run id."""
    from elt.errors import RunError
    from elt.schedule.fire import fire_trigger, wait_for_run

    project = obj.project()
    run_id = fire_trigger(project, name, _variables(variables))
    if not wait:
        if fmt == "json":
            print_json({"trigger": name, "run_id": run_id})
        else:
            click.echo(f"started run {run_id} (elt runs show {run_id})")
        return
    record = wait_for_run(project, run_id)
    if fmt == "json":
        print_json(record.to_json())
    elif record.status == "success":
        click.echo(f"✔ run {run_id} succeeded")
    if record.status != "success":
        raise RunError(f"run {run_id} {record.status}: {record.error}", hint=f"see `elt runs show {run_id}`")


def _variables(items: tuple[str, ...]) -> dict[str, Any]:
    import json

    from elt.errors import EltError

    found: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise EltError(f"--var expects NAME=VALUE, got '{item}'")
        try:
            found[name] = (
                json.loads(value) if value.startswith(("[", "{")) or value in ("true", "false") else value
            )
        except ValueError:
            found[name] = value
    return found


def _until(then: datetime, now: datetime) -> str:
    seconds = int((then - now).total_seconds())
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"in {days}d {hours}h"
    if hours:
        return f"in {hours}h {minutes}m"
    return f"in {minutes}m" if minutes else "in less than a minute"
