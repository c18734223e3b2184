"""What `elt schedule list` and `elt trigger list` show: each schedule's timing in words, its next slot
and its last run; each trigger and its last run; the schedulers running on the project."""

from __future__ import annotations

import contextlib
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from elt.errors import EltError
from elt.runs import RunLog
from elt.schedule import store
from elt.schedule.cron import next_slot
from elt.schedule.model import load_schedules, load_triggers
from elt.schedule.store import iso
from elt.systemdb import connect

if TYPE_CHECKING:
    from elt.project import Project


@dataclass(frozen=True)
class LastRun:
    """The latest run a schedule or trigger fired."""

    key: str  # the slot, or the trigger event
    fired_at: str
    run_id: str | None
    status: str  # the run's status in the run history (died, when its process is gone), else the slot's


@dataclass(frozen=True)
class ScheduleStatus:
    name: str
    target: str  # what it runs, as `elt run` is given it
    interval: str | None
    description: str
    timezone: str
    enabled: bool
    catchup: bool
    variables: dict[str, Any]
    next_run: str | None  # ISO, in the schedule's time zone
    next_run_utc: str | None
    last: LastRun | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TriggerStatus:
    name: str
    kind: str
    target: str
    description: str
    enabled: bool
    last: LastRun | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def schedule_statuses(project: Project, at: datetime) -> list[ScheduleStatus]:
    """Every schedule with its next slot after `at` and its last fired run."""
    found = []
    with closing(connect(project.system_db)) as conn:
        for schedule in load_schedules(project):
            upcoming = (
                next_slot(schedule.cron, schedule.tz, at) if schedule.cron and schedule.enabled else None
            )
            found.append(
                ScheduleStatus(
                    schedule.name,
                    schedule.target,
                    schedule.interval,
                    schedule.description(),
                    schedule.timezone,
                    schedule.enabled,
                    schedule.catchup,
                    schedule.variables,
                    upcoming.astimezone(schedule.tz).isoformat() if upcoming else None,
                    iso(upcoming) if upcoming else None,
                    _last(project, conn, "schedule_slots", schedule.name),
                )
            )
    return found


def trigger_statuses(project: Project) -> list[TriggerStatus]:
    """Every trigger with its last fired run."""
    with closing(connect(project.system_db)) as conn:
        return [
            TriggerStatus(
                t.name,
                t.kind,
                t.target,
                t.description(),
                t.enabled,
                _last(project, conn, "trigger_events", t.name),
            )
            for t in load_triggers(project)
        ]


def live_schedulers(project: Project, lease_seconds: float = 60.0) -> list[str]:
    """The schedulers running on this project's system database (heartbeat within the lease)."""
    with closing(connect(project.system_db)) as conn:
        return sorted(store.live_schedulers(conn, lease_seconds))


def _last(project: Project, conn: Any, table: str, name: str) -> LastRun | None:
    fired = store.history(conn, table, name, limit=1)
    if not fired:
        return None
    last = fired[0]
    status = last.status
    if last.run_id:
        with contextlib.suppress(EltError):  # the run has not recorded itself yet: the slot's status
            status = RunLog(project.system_db).get(last.run_id).status
    return LastRun(last.key, last.fired_at, last.run_id, status)
