"""Starting a schedule's or a trigger's pipeline now, outside the scheduler's loop.

- `run_schedule`: `elt schedule run NAME`, in this process, as `elt run` would; with `if_due` only when a
  slot of the schedule fell within that many seconds and nobody fired it yet (it claims the slot, so
  cron, CI and a running `elt scheduler` never run it twice).
- `fire_trigger`: what `elt trigger fire` and the API's webhook endpoint call; starts the run in a
  process of its own and answers its id at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from elt.errors import EltError
from elt.runs import RunLog, RunRecord, new_run_id
from elt.schedule import store
from elt.schedule.cron import previous_slot
from elt.schedule.launch import RunRequest, outcome, start_run
from elt.schedule.model import find_schedule, find_trigger
from elt.schedule.store import iso
from elt.systemdb import connect

if TYPE_CHECKING:
    from elt.logs import Reporter
    from elt.orchestrator.executor import RunResult, StepResult
    from elt.project import Project


@dataclass(frozen=True)
class ScheduleRun:
    """What `run_schedule` did: the run, or why there was none (`skipped`)."""

    result: RunResult | None
    slot: datetime | None = None
    skipped: str | None = None


def run_schedule(
    project: Project,
    name: str,
    *,
    reporter: Reporter,
    if_due: float | None = None,
    at: datetime | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> ScheduleRun:
    """Run schedule `name`'s pipeline now, with its variables, recorded as a run; with `if_due`
    (seconds) only if one of its slots fell within that long before `at` (default: now) and no one
    fired that slot yet."""
    from elt.orchestrator.executor import run_request

    schedule = find_schedule(project, name)
    trigger: dict[str, Any] = {
        "schedule": name,
        "by": "hand" if if_due is None else "elt schedule run --if-due",
    }
    run_id = new_run_id()
    slot = None
    if if_due is not None:
        at = at or datetime.now(UTC)
        if not schedule.enabled:
            return ScheduleRun(None, None, f"schedule '{name}' is disabled (enabled: false)")
        if schedule.once:
            slot = schedule.start_date  # without one, only `elt scheduler` knows when it first saw it
        elif schedule.cron is not None:
            slot = previous_slot(schedule.cron, schedule.tz, at)
        if slot is None or at - slot > timedelta(seconds=if_due):
            latest = f"; its latest was {iso(slot)}" if slot else ""
            return ScheduleRun(None, slot, f"no slot of '{name}' in the last {_span(if_due)}{latest}")
        owner = f"{socket.gethostname()}:{os.getpid()}:elt schedule run"
        with closing(connect(project.system_db)) as conn:
            if not store.claim_slot(conn, name, slot, owner, run_id):
                taken = store.history(conn, "schedule_slots", name, limit=1)
                by = f" by {taken[0].owner} (run {taken[0].run_id})" if taken else ""
                return ScheduleRun(None, slot, f"slot {iso(slot)} of '{name}' was fired already{by}")
        trigger["slot"] = iso(slot)
    os.environ.update(schedule.env)
    status = "failed"
    try:
        result = run_request(
            project,
            list(schedule.blocks),
            variables=schedule.variables,
            run_id=run_id,
            trigger=trigger,
            reporter=reporter,
            on_step=on_step,
        )
        status = result.status
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if slot is not None:
            with closing(connect(project.system_db)) as conn:
                store.finish(conn, run_id, status)
    return ScheduleRun(result, slot)


def fire_trigger(project: Project, name: str, variables: dict[str, Any] | None = None) -> str:
    """Start trigger `name`'s pipeline now, in a process of its own, with the trigger's variables and
    `variables` over them; returns the run's id (the run is in `elt runs` as soon as it starts)."""
    trigger = find_trigger(project, name)
    if not trigger.enabled:
        raise EltError(f"trigger '{name}' is disabled", hint="set `enabled: true` on it in elt.yml")
    request = RunRequest(
        trigger.blocks,
        {**trigger.variables, **(variables or {})},
        {"trigger": name, "kind": trigger.kind, "by": "fire"},
        trigger.env,
    )
    proc = start_run(project, request)
    with closing(connect(project.system_db)) as conn:
        owner = f"{socket.gethostname()}:{os.getpid()}:fire"
        store.claim_event(conn, name, f"fire:{request.run_id}", owner, request.run_id)

    def reap() -> None:  # a long-lived caller (the API server) leaves no zombie and records the end
        code = proc.wait()
        with closing(connect(project.system_db)) as conn:
            store.finish(conn, request.run_id, outcome(code))

    threading.Thread(target=reap, name=f"reap-{request.run_id}", daemon=True).start()
    return request.run_id


def wait_for_run(project: Project, run_id: str, timeout: float | None = None) -> RunRecord:
    """The run once it has ended (it may not be recorded yet when this is called)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    log = RunLog(project.system_db)
    while True:
        try:
            record = log.get(run_id)
            if record.status != "running":
                return record
        except EltError:
            pass  # not recorded yet
        if deadline is not None and time.monotonic() > deadline:
            raise EltError(f"run {run_id} did not end within {timeout:g}s")
        time.sleep(0.2)


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
