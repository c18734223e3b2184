"""What schedulers share through the system database: fired slots and trigger events, first sightings,
and the heartbeats of running schedulers.

A slot or an event is claimed by an INSERT that only one writer can win (its primary key), so two
schedulers on one database never fire the same slot or the same file twice. Every function takes an
open connection (`elt.systemdb.connect`) and writes in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elt.runs import now


@dataclass(frozen=True)
class Fired:
    """One fired slot or trigger event, as stored."""

    name: str  # the schedule or trigger
    key: str  # the slot (ISO UTC) or the event
    owner: str
    fired_at: str
    run_id: str | None
    status: str


def iso(instant: datetime) -> str:
    """How slots are stored: ISO 8601 in UTC, to the second (sorts as time does)."""
    return instant.astimezone(UTC).replace(microsecond=0).isoformat()


def claim_slot(conn: Any, schedule: str, slot: datetime, owner: str, run_id: str) -> bool:
    """Take `slot` of `schedule` for a run; False when another scheduler has it already."""
    cursor = conn.execute(
        "INSERT INTO schedule_slots(schedule, slot, owner, fired_at, run_id, status) "
        "VALUES (?, ?, ?, ?, ?, 'running') ON CONFLICT DO NOTHING",
        (schedule, iso(slot), owner, now(), run_id),
    )
    return cursor.rowcount == 1


def last_slot(conn: Any, schedule: str) -> datetime | None:
    """The latest slot of `schedule` fired so far."""
    row = conn.execute("SELECT MAX(slot) FROM schedule_slots WHERE schedule = ?", (schedule,)).fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def claim_event(
    conn: Any, trigger: str, event: str, owner: str, run_id: str, status: str = "running"
) -> bool:
    """Take one event of `trigger` (a file's version, an upstream run) for a run; False when taken."""
    cursor = conn.execute(
        "INSERT INTO trigger_events(trigger, event, owner, fired_at, run_id, status) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (trigger, event, owner, now(), run_id, status),
    )
    return cursor.rowcount == 1


def finish(conn: Any, run_id: str, status: str) -> None:
    """Record how the run started for a slot or an event ended."""
    conn.execute("UPDATE schedule_slots SET status = ? WHERE run_id = ?", (status, run_id))
    conn.execute("UPDATE trigger_events SET status = ? WHERE run_id = ?", (status, run_id))


def first_seen(conn: Any, name: str, at: str) -> str:
    """When a scheduler first saw `name` (`schedule:X`, `trigger:Y`): `at`, if this is the first time."""
    conn.execute(
        "INSERT INTO schedule_baselines(name, since) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, at)
    )
    row = conn.execute("SELECT since FROM schedule_baselines WHERE name = ?", (name,)).fetchone()
    return str(row[0])


def running_owners(conn: Any, table: str, name: str) -> set[str]:
    """Owners of the runs of a schedule (`schedule_slots`) or trigger (`trigger_events`) still going."""
    column = "schedule" if table == "schedule_slots" else "trigger"
    rows = conn.execute(
        f"SELECT DISTINCT owner FROM {table} WHERE {column} = ? AND status = 'running'", (name,)
    )
    return {r[0] for r in rows}


def history(conn: Any, table: str, name: str, limit: int = 1) -> list[Fired]:
    """The latest fired slots (or events) of a schedule (or trigger), newest first."""
    column, key = ("schedule", "slot") if table == "schedule_slots" else ("trigger", "event")
    rows = conn.execute(
        f"SELECT {column}, {key}, owner, fired_at, run_id, status FROM {table} WHERE {column} = ? "
        "ORDER BY fired_at DESC, rowid DESC LIMIT ?",
        (name, limit),
    ).fetchall()
    return [Fired(*tuple(r)) for r in rows]


# -- schedulers ----------------------------------------------------------------------------------------


def register(conn: Any, owner: str, pid: int, host: str) -> None:
    stamp = now()
    conn.execute(
        "INSERT INTO schedulers(owner, pid, host, started_at, heartbeat_at) VALUES (?,?,?,?,?) "
        "ON CONFLICT (owner) DO UPDATE SET pid=excluded.pid, host=excluded.host, "
        "started_at=excluded.started_at, heartbeat_at=excluded.heartbeat_at, stopped_at=NULL",
        (owner, pid, host, stamp, stamp),
    )


def heartbeat(conn: Any, owner: str) -> None:
    conn.execute("UPDATE schedulers SET heartbeat_at = ? WHERE owner = ?", (now(), owner))


def unregister(conn: Any, owner: str) -> None:
    conn.execute("UPDATE schedulers SET stopped_at = ? WHERE owner = ?", (now(), owner))


def live_schedulers(conn: Any, lease_seconds: float) -> set[str]:
    """Schedulers not stopped whose heartbeat is younger than `lease_seconds`."""
    cutoff = (datetime.now(UTC) - timedelta(seconds=lease_seconds)).isoformat(timespec="milliseconds")
    rows = conn.execute(
        "SELECT owner FROM schedulers WHERE stopped_at IS NULL AND heartbeat_at >= ?", (cutoff,)
    )
    return {r[0] for r in rows}


def unfired_successes(conn: Any, trigger: str, pipeline: str, since: str) -> list[str]:
    """Ids of the runs of `pipeline` that succeeded after `since` and have not fired `trigger` yet,
    oldest first."""
    rows = conn.execute(
        "SELECT run_id FROM runs WHERE kind = 'run' AND name = ? AND status = 'success' AND ended_at > ? "
        "AND 'run:' || run_id NOT IN (SELECT event FROM trigger_events WHERE trigger = ?) ORDER BY ended_at",
        (pipeline, since, trigger),
    )
    return [r[0] for r in rows]


def events_fired(conn: Any, trigger: str, events: Iterable[str]) -> set[str]:
    """Which of `events` of `trigger` were fired already."""
    wanted = list(events)
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            f"SELECT event FROM trigger_events WHERE trigger = ? AND event IN ({','.join('?' * len(chunk))})",
            (trigger, *chunk),
        )
        found.update(r[0] for r in rows)
    return found
