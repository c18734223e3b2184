"""`schedules:` and `triggers:` of elt.yml as plain values, and the checks `elt validate` makes of them.

A schedule runs a pipeline (or a Meltano job, or an extractor and a loader) at the slots of a cron
expression in a time zone. A trigger runs a pipeline when files appear or change (`file`), when a run of
another pipeline succeeds (`completion`), or when the API is called (`webhook`). docs/schedules.md
describes the YAML.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from elt.errors import ProjectError
from elt.schedule.cron import Cron, CronError, describe, parse_cron, zone

if TYPE_CHECKING:
    from elt.project import Project
    from elt.yamlfile import LocatedDocument

TRIGGER_KINDS = ("file", "completion", "webhook")
ONCE = "@once"
# Keys that only one kind of trigger reads.
_KIND_KEYS = {
    "file": ("path", "variable", "poll", "s3"),
    "completion": ("after",),
    "webhook": ("auth", "secret", "variables_from_body"),
}
DEFAULT_POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Schedule:
    """One entry of `schedules:`: what to run, when, with which variables."""

    name: str
    blocks: tuple[str, ...]  # what `elt run` is given: a pipeline, a job, or extractor loader [dbt:run]
    interval: str | None  # as written; None: only `elt schedule run NAME` runs it
    cron: Cron | None  # None for `@once` and for a schedule without interval
    timezone: str = "UTC"
    variables: dict[str, Any] = field(default_factory=dict)
    catchup: bool = False
    enabled: bool = True
    start_date: datetime | None = None  # timezone-aware
    env: dict[str, str] = field(default_factory=dict)

    @property
    def once(self) -> bool:
        return self.interval == ONCE

    @property
    def target(self) -> str:
        """What it runs, as `elt run` would be given it."""
        return " ".join(self.blocks)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def description(self) -> str:
        """When it runs, in words: "every day at 06:00 (Europe/Paris)"."""
        if self.cron is not None:
            return describe(self.cron, self.timezone)
        if self.once:
            start = f" at {self.start_date.isoformat()}" if self.start_date else ""
            return f"once{start}"
        return "only when run by hand (no interval)"


@dataclass(frozen=True)
class Trigger:
    """One entry of `triggers:`."""

    name: str
    kind: str  # file | completion | webhook
    blocks: tuple[str, ...]
    variables: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    env: dict[str, str] = field(default_factory=dict)
    path: str | None = None  # file: a glob relative to the project, or s3://bucket/prefix/*.csv
    variable: str = "files"  # file: the pipeline variable that gets the new or changed paths
    poll: float = DEFAULT_POLL_SECONDS  # file: seconds between two listings
    s3: dict[str, Any] = field(default_factory=dict)  # file: boto3 client options
    after: str | None = None  # completion: the pipeline whose successful runs fire it
    auth: str | None = None  # webhook: token | hmac-sha256
    secret: str | None = None  # webhook
    variables_from_body: bool = False  # webhook: the call's JSON body gives variables (elt serve)

    @property
    def target(self) -> str:
        return " ".join(self.blocks)

    def description(self) -> str:
        if self.kind == "file":
            return f"new or changed files {self.path} (every {self.poll:g}s) → ${{vars.{self.variable}}}"
        if self.kind == "completion":
            return f"after a successful run of {self.after}"
        return f"a call to the API ({self.auth or 'token'})"


def load_schedules(project: Project) -> list[Schedule]:
    """The project's schedules, in file order."""
    return [_schedule(project, i, entry) for i, entry in enumerate(project.data.get("schedules") or [])]


def load_triggers(project: Project) -> list[Trigger]:
    """The project's triggers, in file order."""
    return [_trigger(project, i, entry) for i, entry in enumerate(project.data.get("triggers") or [])]


def find_schedule(project: Project, name: str) -> Schedule:
    schedules = load_schedules(project)
    for schedule in schedules:
        if schedule.name == name:
            return schedule
    raise ProjectError(
        _unknown("schedule", name, [s.name for s in schedules]),
        hint="`elt schedule list` shows the schedules",
    )


def find_trigger(project: Project, name: str) -> Trigger:
    triggers = load_triggers(project)
    for trigger in triggers:
        if trigger.name == name:
            return trigger
    raise ProjectError(
        _unknown("trigger", name, [t.name for t in triggers]), hint="`elt trigger list` shows the triggers"
    )


def _unknown(what: str, name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    return f"no {what} named '{name}' ({what}s: {', '.join(known) or 'none'}){hint}"


def _schedule(project: Project, index: int, entry: dict[str, Any]) -> Schedule:
    where = project.where(f"schedules[{index}]")
    interval = entry.get("interval") or entry.get("cron_interval")
    timezone = str(entry.get("timezone") or "UTC")
    try:
        cron = parse_cron(str(interval)) if interval and interval != ONCE else None
        zone(timezone)
        start = _start_date(entry.get("start_date"), timezone)
    except (CronError, ValueError) as error:
        raise ProjectError(f"{where}: schedule '{entry.get('name')}': {error}") from None
    return Schedule(
        name=str(entry["name"]),
        blocks=_schedule_blocks(entry),
        interval=str(interval) if interval else None,
        cron=cron,
        timezone=timezone,
        variables=dict(entry.get("variables") or {}),
        catchup=bool(entry.get("catchup", False)),
        enabled=bool(entry.get("enabled", True)),
        start_date=start,
        env={k: str(v) for k, v in (entry.get("env") or {}).items()},
    )


def _schedule_blocks(entry: dict[str, Any]) -> tuple[str, ...]:
    if entry.get("pipeline"):
        return (str(entry["pipeline"]),)
    if entry.get("job"):
        return (str(entry["job"]),)
    transform = str(entry.get("transform") or "skip")
    if transform == "only":
        return ("dbt:run",)
    pair = (str(entry.get("extractor")), str(entry.get("loader")))
    return (*pair, "dbt:run") if transform == "run" else pair


def _start_date(value: Any, timezone: str) -> datetime | None:
    """Meltano's `start_date` (`2024-01-01`, `2024-01-01 06:00:00`, ISO 8601), in the schedule's zone."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(
                f"start_date '{value}' is not a date such as 2024-01-01 or 2024-01-01T06:00:00"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone(timezone))


def _trigger(project: Project, index: int, entry: dict[str, Any]) -> Trigger:
    from elt.orchestrator.model import parse_duration

    where = project.where(f"triggers[{index}]")
    kind = str(entry["kind"])
    poll = parse_duration(entry.get("poll", DEFAULT_POLL_SECONDS), f"{where}.poll")
    return Trigger(
        name=str(entry["name"]),
        kind=kind,
        blocks=(str(entry["pipeline"]),),
        variables=dict(entry.get("variables") or {}),
        enabled=bool(entry.get("enabled", True)),
        env={k: str(v) for k, v in (entry.get("env") or {}).items()},
        path=str(entry["path"]) if entry.get("path") else None,
        variable=str(entry.get("variable") or "files"),
        poll=max(poll, 0.05),
        s3=dict(entry.get("s3") or {}),
        after=str(entry["after"]) if entry.get("after") else None,
        auth=str(entry["auth"]) if entry.get("auth") else None,
        secret=str(entry["secret"]) if entry.get("secret") is not None else None,
        variables_from_body=bool(entry.get("variables_from_body", False)),
    )


# -- checks for `elt validate` ---------------------------------------------------------------------

_Problem = Callable[[str, str], None]  # (key path, message)
_Check = Callable[..., None]


def check_document(doc: LocatedDocument) -> list[tuple[int, str]]:
    """What the schema cannot say about `schedules:` and `triggers:`: cron expressions, time zones,
    start dates, unique names, and that what they run (and wait for) exists. (line, message) pairs."""
    data = doc.data if isinstance(doc.data, dict) else {}
    problems: list[tuple[int, str]] = []

    def problem(path: str, message: str) -> None:
        line = doc.line_of(path)
        problems.append((line, f"{doc.file.name}:{line}: key '{path}': {message}"))

    pipelines = data.get("pipelines")
    jobs = data.get("jobs")
    runnable = [str(n) for n in pipelines] if isinstance(pipelines, dict) else []
    runnable += [str(j.get("name")) for j in jobs if isinstance(j, dict)] if isinstance(jobs, list) else []

    def check_runnable(path: str, name: Any, what: str = "a pipeline or job") -> None:
        if not isinstance(name, str) or "${" in name or name in runnable:
            return
        guess = difflib.get_close_matches(name, runnable, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        problem(path, f"expected the name of {what} of this file, got '{name}'{hint}")

    schedules = data.get("schedules")
    for i, entry in enumerate(schedules if isinstance(schedules, list) else []):
        if isinstance(entry, dict):
            _check_schedule(entry, f"schedules[{i}]", problem, check_runnable)
    _check_unique(schedules, "schedules", problem)
    triggers = data.get("triggers")
    for i, entry in enumerate(triggers if isinstance(triggers, list) else []):
        if isinstance(entry, dict):
            _check_trigger(entry, f"triggers[{i}]", problem, check_runnable)
    _check_unique(triggers, "triggers", problem)
    return problems


def _check_schedule(entry: dict[str, Any], path: str, problem: _Problem, check_runnable: _Check) -> None:
    key = "interval" if "interval" in entry else "cron_interval"
    interval = entry.get(key)
    if isinstance(interval, str) and "${" not in interval and interval != ONCE:
        try:
            parse_cron(interval)
        except CronError as error:
            problem(f"{path}.{key}", str(error))
    timezone = entry.get("timezone")
    if isinstance(timezone, str) and "${" not in timezone:
        try:
            zone(timezone)
        except CronError as error:
            problem(f"{path}.timezone", str(error))
    if entry.get("start_date") not in (None, ""):
        try:
            _start_date(entry["start_date"], "UTC")
        except ValueError as error:
            problem(f"{path}.start_date", str(error))
    given = [k for k in ("pipeline", "job", "extractor") if entry.get(k)]
    if len(given) > 1:
        problem(
            f"{path}.{given[1]}", f"expected one of pipeline, job or extractor, got {' and '.join(given)}"
        )
    elif not given and entry.get("transform") != "only":
        problem(path, "expected what to run: `pipeline: NAME`, `job: NAME`, or `extractor:` and `loader:`")
    elif given == ["extractor"] and not entry.get("loader"):
        problem(f"{path}.loader", "required key is missing (an extractor needs a loader)")
    for key in ("pipeline", "job"):
        if key in entry:
            check_runnable(f"{path}.{key}", entry[key])


def _check_trigger(entry: dict[str, Any], path: str, problem: _Problem, check_runnable: _Check) -> None:
    kind = entry.get("kind")
    if kind in _KIND_KEYS:
        for other, keys in _KIND_KEYS.items():
            for key in keys:
                if other != kind and key in entry:
                    problem(f"{path}.{key}", f"'{key}' is for {other} triggers, this one is a {kind} trigger")
    check_runnable(f"{path}.pipeline", entry.get("pipeline"))
    if kind == "completion":
        check_runnable(f"{path}.after", entry.get("after"))
    file_path = entry.get("path")
    if kind == "file" and isinstance(file_path, str) and file_path.startswith("s3://"):
        bucket = file_path[len("s3://") :].split("/", 1)[0]
        if not bucket or any(c in bucket for c in "*?["):
            problem(
                f"{path}.path",
                f"expected s3://BUCKET/PREFIX/PATTERN with a plain bucket name, got '{file_path}'",
            )


def _check_unique(entries: Any, key: str, problem: _Problem) -> None:
    seen: set[str] = set()
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in seen:
                problem(f"{key}[{i}].name", f"expected a unique name, got '{name}' twice")
            seen.add(name)
