"""The scheduler daemon (`elt scheduler`): fires the schedules' due slots and the triggers' events, each
as a run in a process of its own (elt/schedule/launch.py), and records what it fired in the system
database.

- **Due slots.** A schedule's slots are counted from the last one fired (any scheduler's), else from when
  a scheduler first saw the schedule, so a new schedule does not replay the past and a restart does not
  fire a slot again. `catchup: false` (the default) fires only the latest of the slots missed while no
  scheduler ran; `catchup: true` fires each of them, one after the other. `start_date` moves the start
  (with `catchup: true`, slots from it are run).
- **One run at a time.** A schedule (or trigger) whose run is still going fires nothing new; the slots
  that pass meanwhile count as missed.
- **Several schedulers** on one database share the work: a slot (or a file's version, or an upstream
  run) is claimed by an INSERT only one of them wins, and a run going on under a live scheduler (its
  heartbeat younger than the lease) keeps the others from starting the next.
- **Stopping.** SIGTERM or SIGINT: nothing new is fired; runs going on get `grace` seconds to end, then
  SIGINT (the run records its running steps as failed: "interrupted"), then SIGKILL. A second signal
  cuts the grace short.

Time comes from a `Clock`: the real one, or for tests a `FileClock` that reads the current instant from
a file (`elt scheduler --clock-file`, or `ELT_SCHEDULER_CLOCK_FILE`). Heartbeats, polls and the grace
period use real time whatever the clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import psycopg

from elt.errors import EltError
from elt.logs import Reporter
from elt.project import Project, load_project
from elt.runs import new_run_id, now
from elt.schedule import store
from elt.schedule.cron import next_slot, previous_slot, slots
from elt.schedule.launch import RunRequest, outcome, start_run
from elt.schedule.model import Schedule, Trigger, load_schedules, load_triggers
from elt.schedule.store import iso
from elt.schedule.watch import list_files
from elt.systemdb import connect

CLOCK_FILE_VARIABLE = "ELT_SCHEDULER_CLOCK_FILE"
_STEP = 0.1  # seconds between two looks at the stop flag while sleeping
_KILL_AFTER = 20.0  # seconds an interrupted run gets to record itself before SIGKILL
_MISSED_COUNTED = 1000  # missed slots are counted up to this many, for the log


class Clock(Protocol):
    """Where the scheduler reads the time of schedules from."""

    def now(self) -> datetime: ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class FileClock:
    """The instant written in a file (ISO 8601; UTC without an offset): time stands still until the
    file says otherwise. For tests and rehearsals of a schedule."""

    path: Path

    def now(self) -> datetime:
        text = self.path.read_text(encoding="utf-8").strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise EltError(
                f"{self.path}: expected an ISO 8601 time such as 2024-01-01T06:00:00Z, got '{text}'"
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def due_slot(
    schedule: Schedule, at: datetime, last_fired: datetime | None, first_seen: datetime
) -> tuple[datetime | None, int]:
    """The slot of `schedule` to fire at `at`, and how many earlier slots it stands for (missed slots
    that `catchup: false` does not run); (None, 0) when nothing is due."""
    if schedule.once:
        once_at = schedule.start_date or first_seen
        return (once_at, 0) if last_fired is None and once_at <= at else (None, 0)
    cron = schedule.cron
    if cron is None:
        return None, 0
    start = schedule.start_date - timedelta(microseconds=1) if schedule.start_date else None
    if last_fired is not None:
        since = last_fired
    elif start is not None and schedule.catchup:
        since = start
    else:
        since = max(first_seen, start) if start is not None else first_seen
    tz = schedule.tz
    if schedule.catchup:
        upcoming = next_slot(cron, tz, since)
        return (upcoming, 0) if upcoming is not None and upcoming <= at else (None, 0)
    latest = previous_slot(cron, tz, at)
    if latest is None or latest <= since:
        return None, 0
    return latest, len(slots(cron, tz, since, latest, limit=_MISSED_COUNTED)) - 1


@dataclass
class _Child:
    """A run this scheduler started and waits for."""

    proc: Any  # subprocess.Popen[bytes]
    run_id: str
    table: str  # schedule_slots | trigger_events
    name: str
    started: float


class Scheduler:
    """The loop of `elt scheduler`. `run()` until stopped (or one pass with `once`)."""

    def __init__(
        self,
        project: Project,
        reporter: Reporter,
        *,
        clock: Clock | None = None,
        poll: float = 1.0,
        grace: float = 60.0,
        once: bool = False,
    ) -> None:
        self.project = project
        self.reporter = reporter
        self.clock: Clock = clock or RealClock()
        self.poll = poll
        self.grace = grace
        self.once = once
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = max(30.0, 5 * poll)
        self.children: list[_Child] = []
        self.stopping = False
        self.hurry = False
        self.listings: dict[str, dict[str, str]] = {}  # trigger -> path -> fingerprint at its last poll
        self.polled: dict[str, float] = {}  # trigger -> when it was last polled (monotonic)
        self.schedules: list[Schedule] = load_schedules(project)
        self.triggers: list[Trigger] = load_triggers(project)
        self.loaded_mtime = _mtime(project.file)
        self.conn: Any = connect(project.system_db)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Fire what is due until SIGTERM/SIGINT (or once, waiting for the runs it started)."""
        previous = self._install_signals()
        store.register(self.conn, self.owner, os.getpid(), socket.gethostname())
        self._announce()
        try:
            while not self.stopping:
                self._guarded("scheduler", self.tick)
                if self.once:
                    break
                self._sleep(self.poll)
            self._wait_for_children()
        finally:
            store.unregister(self.conn, self.owner)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.reporter.event("scheduler_stopped", "scheduler stopped", owner=self.owner)
            self.conn.close()
        return 0

    def stop(self, *_: Any) -> None:
        """Stop firing and wind down (a second call cuts the grace period short)."""
        if self.stopping:
            self.hurry = True
        self.stopping = True

    def tick(self) -> None:
        """One pass: reload elt.yml if it changed, collect ended runs, fire what is due."""
        self._reload()
        self._reap()
        store.heartbeat(self.conn, self.owner)
        at = self.clock.now()
        for schedule in self.schedules:
            self._guarded(f"schedule '{schedule.name}'", self._check_schedule, schedule, at)
        for trigger in self.triggers:
            if trigger.enabled and trigger.kind == "file":
                self._guarded(f"trigger '{trigger.name}'", self._check_files, trigger)
            elif trigger.enabled and trigger.kind == "completion":
                self._guarded(f"trigger '{trigger.name}'", self._check_completion, trigger)

    def _guarded(self, what: str, check: Any, *args: Any) -> None:
        # One schedule's trouble (S3 unreachable, a database busy beyond its timeout) is reported and
        # tried again at the next pass; the others go on.
        try:
            check(*args)
        except (EltError, OSError, sqlite3.Error, psycopg.Error) as error:
            self.reporter.event("scheduler_error", f"✘ {what}: {error}", name=what, error=str(error))
            if isinstance(error, psycopg.OperationalError):  # a PostgreSQL system DB restarted: reconnect
                with contextlib.suppress(Exception):
                    self.conn.close()
                with contextlib.suppress(EltError):
                    self.conn = connect(self.project.system_db)

    # -- schedules -------------------------------------------------------------------------------

    def _check_schedule(self, schedule: Schedule, at: datetime) -> None:
        if not schedule.enabled or (schedule.cron is None and not schedule.once):
            return
        if self._busy("schedule_slots", schedule.name):
            return
        seen = datetime.fromisoformat(store.first_seen(self.conn, f"schedule:{schedule.name}", iso(at)))
        slot, missed = due_slot(schedule, at, store.last_slot(self.conn, schedule.name), seen)
        if slot is None:
            return
        run_id = new_run_id()
        if not store.claim_slot(self.conn, schedule.name, slot, self.owner, run_id):
            return  # another scheduler fired it
        local = slot.astimezone(schedule.tz).strftime("%Y-%m-%d %H:%M %Z")
        note = f", standing for {missed} missed slot(s) (catchup: false)" if missed else ""
        trigger = {"schedule": schedule.name, "slot": iso(slot)}
        self._start(
            "schedule_slots",
            schedule.name,
            RunRequest(schedule.blocks, schedule.variables, trigger, schedule.env, run_id),
            f"▶ schedule {schedule.name}: slot {local}{note} → run {run_id} of {schedule.target}",
            slot=iso(slot),
            missed=missed,
        )

    # -- triggers ----------------------------------------------------------------------------------

    def _check_files(self, trigger: Trigger) -> None:
        clock = time.monotonic()
        if clock - self.polled.get(trigger.name, float("-inf")) < trigger.poll:
            return
        self.polled[trigger.name] = clock
        assert trigger.path is not None
        files = list_files(self.project.root, trigger.path, trigger.s3)
        previous = self.listings.get(trigger.name, {})
        self.listings[trigger.name] = {f.path: f.fingerprint for f in files}
        # A local file may still be being written: it fires once it is unchanged between two polls
        # (or older than one). An S3 object appears whole.
        settled = [
            f
            for f in files
            if f.path.startswith("s3://") or previous.get(f.path) == f.fingerprint or f.age >= trigger.poll
        ]
        if not settled or self._busy("trigger_events", trigger.name):
            return
        events = {f"file:{f.path}#{f.fingerprint}": f.path for f in settled}
        fresh = [e for e in events if e not in store.events_fired(self.conn, trigger.name, events)]
        if not fresh:
            return
        run_id = new_run_id()
        won = [events[e] for e in fresh if store.claim_event(self.conn, trigger.name, e, self.owner, run_id)]
        if not won:
            return
        variables = {**trigger.variables, trigger.variable: won}
        shown = ", ".join(won[:3]) + (f" and {len(won) - 3} more" if len(won) > 3 else "")
        self._start(
            "trigger_events",
            trigger.name,
            RunRequest(
                trigger.blocks,
                variables,
                {"trigger": trigger.name, "kind": "file", "files": won},
                trigger.env,
                run_id,
            ),
            f"▶ trigger {trigger.name}: {shown} → run {run_id} of {trigger.target}",
            files=won,
        )

    def _check_completion(self, trigger: Trigger) -> None:
        assert trigger.after is not None
        since = store.first_seen(self.conn, f"trigger:{trigger.name}", now())
        upstream = store.unfired_successes(self.conn, trigger.name, trigger.after, since)
        if not upstream or self._busy("trigger_events", trigger.name):
            return
        run_id = new_run_id()
        won = [
            r for r in upstream if store.claim_event(self.conn, trigger.name, f"run:{r}", self.owner, run_id)
        ]
        if not won:
            return
        request = RunRequest(
            trigger.blocks,
            trigger.variables,
            {"trigger": trigger.name, "kind": "completion", "after": trigger.after, "after_runs": won},
            trigger.env,
            run_id,
        )
        self._start(
            "trigger_events",
            trigger.name,
            request,
            f"▶ trigger {trigger.name}: {trigger.after} succeeded (run {won[-1]}) → run {run_id} of "
            f"{trigger.target}",
            after_runs=won,
        )

    # -- runs ----------------------------------------------------------------------------------------

    def _start(self, table: str, name: str, request: RunRequest, message: str, **fields: Any) -> None:
        try:
            proc = start_run(self.project, request)
        except OSError as error:
            store.finish(self.conn, request.run_id, "failed")
            raise EltError(f"cannot start run {request.run_id}: {error}") from error
        self.children.append(_Child(proc, request.run_id, table, name, time.monotonic()))
        kind = "schedule" if table == "schedule_slots" else "trigger"
        self.reporter.event(
            f"{kind}_fired",
            message,
            name=name,
            run_id=request.run_id,
            target=" ".join(request.blocks),
            **fields,
        )

    def _reap(self) -> None:
        for child in list(self.children):
            code = child.proc.poll()
            if code is None:
                continue
            self.children.remove(child)
            status = outcome(code)
            store.finish(self.conn, child.run_id, status)
            icon = "✔" if status == "success" else "✘"
            seconds = time.monotonic() - child.started
            self.reporter.event(
                "run_ended",
                f"{icon} run {child.run_id} ({child.name}) {status} in {seconds:.1f}s",
                run_id=child.run_id,
                name=child.name,
                status=status,
                seconds=round(seconds, 3),
            )

    def _busy(self, table: str, name: str) -> bool:
        """Whether a run of this schedule or trigger is going on, here or under another live scheduler."""
        if any(c.table == table and c.name == name for c in self.children):
            return True
        owners = store.running_owners(self.conn, table, name) - {self.owner}
        return bool(owners and owners & store.live_schedulers(self.conn, self.lease))

    def _wait_for_children(self) -> None:
        """With `once`, wait for the runs started; when stopping, give them the grace period, then
        interrupt them, then kill what is left."""
        while self.children and self.once and not self.stopping:
            self._reap()
            self._sleep(_STEP)
        if not self.children:
            return
        names = ", ".join(c.run_id for c in self.children)
        self.reporter.event(
            "scheduler_stopping",
            f"stopping: waiting up to {self.grace:g}s for run(s) {names}",
            runs=[c.run_id for c in self.children],
            grace=self.grace,
        )
        deadline = time.monotonic() + self.grace
        beat = time.monotonic()
        while self.children and time.monotonic() < deadline and not self.hurry:
            self._reap()
            if time.monotonic() - beat > 5:
                store.heartbeat(self.conn, self.owner)
                beat = time.monotonic()
            time.sleep(_STEP)
        self._reap()
        for child in self.children:
            self.reporter.event(
                "run_interrupted", f"interrupting run {child.run_id} ({child.name})", run_id=child.run_id
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + _KILL_AFTER
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(_STEP)
        for child in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        self._reap()

    # -- housekeeping ----------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(_STEP, left))

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _reload(self) -> None:
        """Read elt.yml again when it changed; an invalid one is reported and the last good one kept."""
        mtime = _mtime(self.project.file)
        if mtime == self.loaded_mtime:
            return
        self.loaded_mtime = mtime
        try:
            project = load_project(self.project.root, self.project.environment)
            schedules, triggers = load_schedules(project), load_triggers(project)
        except EltError as error:
            self.reporter.event(
                "scheduler_error",
                f"✘ {self.project.file.name} changed but is invalid; "
                f"keeping the schedules read before:\n{error}",
                error=str(error),
            )
            return
        self.project, self.schedules, self.triggers = project, schedules, triggers
        self.reporter.event(
            "scheduler_reloaded",
            f"read {project.file.name} again: {len(schedules)} schedule(s), {len(triggers)} trigger(s)",
        )

    def _announce(self) -> None:
        at = self.clock.now()
        self.reporter.event(
            "scheduler_started",
            f"scheduler {self.owner} started: {len(self.schedules)} schedule(s), "
            f"{len(self.triggers)} trigger(s){' (one pass)' if self.once else ''}",
            owner=self.owner,
            schedules=len(self.schedules),
            triggers=len(self.triggers),
        )
        for schedule in self.schedules:
            upcoming = next_slot(schedule.cron, schedule.tz, at) if schedule.cron else None
            when = upcoming.astimezone(schedule.tz).strftime("%Y-%m-%d %H:%M %Z") if upcoming else "-"
            state = "" if schedule.enabled else " (disabled)"
            self.reporter.event(
                "schedule",
                f"  {schedule.name}: {schedule.description()}, next {when}{state}",
                name=schedule.name,
                next=iso(upcoming) if upcoming else None,
                enabled=schedule.enabled,
            )
        for trigger in self.triggers:
            state = "" if trigger.enabled else " (disabled)"
            self.reporter.event(
                "trigger",
                f"  {trigger.name}: {trigger.description()} → {trigger.target}{state}",
                name=trigger.name,
                kind=trigger.kind,
                enabled=trigger.enabled,
            )


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
