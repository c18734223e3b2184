"""The audit of `elt serve`: one row per call in the system database (table `api_audit`).

A row says who (token id and role), what (method and path, never the query string or the body), how it
ended (status) and how long it took. Nothing a caller sent is kept, so no secret reaches the audit.
Rows are kept `serve.audit_days` (default 90); answered health probes are not audited at all.
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from elt.systemdb import Location, connect


@dataclass(frozen=True)
class AuditEntry:
    """One call to the API."""

    at: str
    token_id: str | None
    role: str | None
    method: str
    path: str
    status: int
    remote: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_KEEP_DAYS = 90
_PRUNE_EVERY_SECONDS = 3600.0
_pruned_at: dict[Location, float] = {}  # database → when its audit was last pruned (monotonic)


def record_call(db_path: Location, entry: AuditEntry, keep_days: float = DEFAULT_KEEP_DAYS) -> None:
    """Append `entry` to the audit; rows older than `keep_days` go, checked at most once an hour."""
    with closing(connect(db_path)) as conn:
        conn.execute(
            "INSERT INTO api_audit(at, token_id, role, method, path, status, remote, seconds) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (entry.at, entry.token_id, entry.role, entry.method, entry.path, entry.status, entry.remote,
             round(entry.seconds, 4)),
        )  # fmt: skip
        clock = time.monotonic()
        if clock - _pruned_at.get(db_path, -_PRUNE_EVERY_SECONDS) >= _PRUNE_EVERY_SECONDS:
            _pruned_at[db_path] = clock
            prune(conn, keep_days)


def prune(conn: Any, keep_days: float) -> int:
    """Delete the audit rows older than `keep_days`; how many went."""
    cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).isoformat(timespec="milliseconds")
    return int(conn.execute("DELETE FROM api_audit WHERE at < ?", (cutoff,)).rowcount)


def recent_calls(db_path: Location, limit: int = 100) -> list[AuditEntry]:
    """The latest calls, newest first."""
    with closing(connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT * FROM api_audit ORDER BY at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
    return [AuditEntry(**{key: row[key] for key in row.keys()}) for row in rows]  # noqa: SIM118
