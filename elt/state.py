"""Per-stream bookmarks of syncs, kept in the system database.

Each state id (`<environment>:<tap>-to-<target>`) has a *completed* state (from the last successful run)
and a *partial* one (the latest state a target emitted, i.e. a durable point, in a run that has not
completed). What a run starts from is the completed state with the partial one merged on top.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elt.errors import StateError
from elt.project import deep_merge
from elt.systemdb import connect


@dataclass(frozen=True)
class StateRecord:
    """What is stored for one state id."""

    state_id: str
    completed: dict[str, Any] | None
    partial: dict[str, Any] | None
    updated_at: str

    @property
    def effective(self) -> dict[str, Any]:
        """The state a run resumes from."""
        return deep_merge(self.completed or {}, self.partial or {})


def state_id_for(environment: str | None, tap: str, target: str) -> str:
    return f"{environment or 'default'}:{tap}-to-{target}"


class StateStore:
    """Read and write state in the system database at `db_path`."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def list(self, pattern: str | None = None) -> list[StateRecord]:
        """All state records, optionally filtered by a glob on the state id."""
        with closing(connect(self.db_path)) as conn:
            rows = conn.execute("SELECT * FROM state ORDER BY state_id").fetchall()
        records = [_record(r) for r in rows]
        if pattern:
            from fnmatch import fnmatchcase

            records = [r for r in records if fnmatchcase(r.state_id, pattern)]
        return records

    def get(self, state_id: str) -> StateRecord | None:
        with closing(connect(self.db_path)) as conn:
            row = conn.execute("SELECT * FROM state WHERE state_id = ?", (state_id,)).fetchone()
        return _record(row) if row else None

    def require(self, state_id: str) -> StateRecord:
        record = self.get(state_id)
        if record is None:
            known = ", ".join(r.state_id for r in self.list()) or "none yet"
            raise StateError(f"no state for state id '{state_id}' (known: {known})")
        return record

    def save_partial(self, state_id: str, value: dict[str, Any]) -> None:
        """Record a durable point reached by a running sync."""
        self._upsert(state_id, partial=value)

    def complete(self, state_id: str, value: dict[str, Any], *, merge: bool = True) -> None:
        """Make `value` the completed state (merged into the previous one unless merge=False)."""
        previous = self.get(state_id)
        completed = deep_merge(previous.completed or {}, value) if (previous and merge) else value
        self._write(state_id, completed=completed, partial=None)

    def set(self, state_id: str, value: dict[str, Any]) -> None:
        """Replace the state of `state_id` by `value` (as completed; no partial)."""
        if not isinstance(value, dict):
            raise StateError(f"state for '{state_id}' must be a JSON object, got {type(value).__name__}")
        self._write(state_id, completed=value, partial=None)

    def clear(self, state_id: str, stream: str | None = None) -> bool:
        """Forget the state of `state_id`, or only the bookmark of one stream. False if none."""
        record = self.get(state_id)
        if record is None:
            return False
        if stream is None:
            with closing(connect(self.db_path)) as conn:
                conn.execute("DELETE FROM state WHERE state_id = ?", (state_id,))
            return True
        completed = _without_stream(record.completed, stream)
        partial = _without_stream(record.partial, stream)
        self._write(state_id, completed=completed, partial=partial)
        return True

    def _upsert(self, state_id: str, *, partial: dict[str, Any]) -> None:
        now = _now()
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO state(state_id, completed, partial, updated_at) VALUES (?, NULL, ?, ?) "
                "ON CONFLICT(state_id) DO UPDATE SET partial = excluded.partial, "
                "updated_at = excluded.updated_at",
                (state_id, json.dumps(partial), now),
            )

    def _write(
        self, state_id: str, *, completed: dict[str, Any] | None, partial: dict[str, Any] | None
    ) -> None:
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO state(state_id, completed, partial, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(state_id) DO UPDATE SET completed = excluded.completed, "
                "partial = excluded.partial, updated_at = excluded.updated_at",
                (
                    state_id,
                    None if completed is None else json.dumps(completed),
                    None if partial is None else json.dumps(partial),
                    _now(),
                ),
            )


def without_streams(state: dict[str, Any], streams: set[str]) -> dict[str, Any]:
    """`state` with the bookmarks of `streams` removed (for a full refresh of those streams)."""
    result = state
    for stream in streams:
        result = _without_stream(result, stream) or {}
    return result


def _without_stream(state: dict[str, Any] | None, stream: str) -> dict[str, Any] | None:
    if not state:
        return state
    result = dict(state)
    bookmarks = dict(result.get("bookmarks") or {})
    bookmarks.pop(stream, None)
    result["bookmarks"] = bookmarks
    if isinstance(result.get("currently_syncing"), str) and result["currently_syncing"] == stream:
        result["currently_syncing"] = None
    return result


def _record(row: Any) -> StateRecord:
    return StateRecord(
        state_id=row["state_id"],
        completed=json.loads(row["completed"]) if row["completed"] else None,
        partial=json.loads(row["partial"]) if row["partial"] else None,
        updated_at=row["updated_at"],
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
