"""State in the project's system database (`.elt/elt.db`): the default backend.

Records are rows of the `state` table. Locks are rows of `state_locks`, taken in a `BEGIN IMMEDIATE`
transaction (SQLite's write lock), so that checking for a live lock and taking it is one atomic step.
Heartbeats are seconds since the epoch on this machine's clock: the database file is local.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from elt.state.backend import LockHolder, StateBackend, StateRecord
from elt.systemdb import connect

LOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS state_locks (
    state_id  TEXT PRIMARY KEY,
    run_id    TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    host      TEXT NOT NULL,
    since     TEXT NOT NULL,
    token     TEXT NOT NULL,
    heartbeat REAL NOT NULL     -- time.time() of the last refresh
);
"""


class SystemDbBackend(StateBackend):
    """The `state` and `state_locks` tables of the SQLite system database at `db_path`."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.label = f"systemdb ({db_path})"

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.db_path)
        conn.executescript(LOCKS_SCHEMA)
        return conn

    def read(self, state_id: str) -> StateRecord | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM state WHERE state_id = ?", (state_id,)).fetchone()
        return _record(row) if row else None

    def write(self, record: StateRecord) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                "INSERT INTO state(state_id, completed, partial, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(state_id) DO UPDATE SET completed = excluded.completed, "
                "partial = excluded.partial, updated_at = excluded.updated_at",
                (record.state_id, _dumps(record.completed), _dumps(record.partial), record.updated_at),
            )

    def delete(self, state_id: str) -> bool:
        with closing(self._connect()) as conn:
            return conn.execute("DELETE FROM state WHERE state_id = ?", (state_id,)).rowcount > 0

    def records(self) -> list[StateRecord]:
        with closing(self._connect()) as conn:
            return [_record(r) for r in conn.execute("SELECT * FROM state").fetchall()]

    def acquire_lock(self, holder: LockHolder, timeout: float) -> LockHolder | None:
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT * FROM state_locks WHERE state_id = ?", (holder.state_id,)
                ).fetchone()
                clock = time.time()
                if row is not None and clock - row["heartbeat"] <= timeout:
                    conn.execute("COMMIT")
                    return _holder(row, clock)
                conn.execute(
                    "INSERT OR REPLACE INTO state_locks(state_id, run_id, pid, host, since, token, "
                    "heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        holder.state_id,
                        holder.run_id,
                        holder.pid,
                        holder.host,
                        holder.since,
                        holder.token,
                        clock,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return None

    def refresh_lock(self, holder: LockHolder) -> bool:
        with closing(self._connect()) as conn:
            cursor = conn.execute(
                "UPDATE state_locks SET heartbeat = ? WHERE state_id = ? AND token = ?",
                (time.time(), holder.state_id, holder.token),
            )
            return cursor.rowcount > 0

    def release_lock(self, holder: LockHolder) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                "DELETE FROM state_locks WHERE state_id = ? AND token = ?", (holder.state_id, holder.token)
            )

    def read_lock(self, state_id: str) -> LockHolder | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM state_locks WHERE state_id = ?", (state_id,)).fetchone()
        return _holder(row, time.time()) if row else None


def _holder(row: Any, clock: float) -> LockHolder:
    return LockHolder(
        state_id=row["state_id"], run_id=row["run_id"], pid=row["pid"], host=row["host"],
        since=row["since"], token=row["token"], heartbeat_age=max(0.0, clock - row["heartbeat"]),
    )  # fmt: skip


def _record(row: Any) -> StateRecord:
    return StateRecord(
        state_id=row["state_id"],
        completed=json.loads(row["completed"]) if row["completed"] else None,
        partial=json.loads(row["partial"]) if row["partial"] else None,
        updated_at=row["updated_at"],
    )


def _dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)
