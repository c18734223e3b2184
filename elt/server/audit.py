"""The audit of `elt serve`: one row per call in the system database (table `api_audit`).

A row says who (token id and role), what (method and path, never the query string or the body), how it
ended (status) and how long it took. Nothing a caller sent is kept, so no secret reaches the audit.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from elt.systemdb import connect


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


def record_call(db_path: Path, entry: AuditEntry) -> None:
    """Append `entry` to the audit."""
    with closing(connect(db_path)) as conn:
        conn.execute(
            "INSERT INTO api_audit(at, token_id, role, method, path, status, remote, seconds) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (entry.at, entry.token_id, entry.role, entry.method, entry.path, entry.status, entry.remote,
             round(entry.seconds, 4)),
        )  # fmt: skip


def recent_calls(db_path: Path, limit: int = 100) -> list[AuditEntry]:
    """The latest calls, newest first."""
    with closing(connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT * FROM api_audit ORDER BY at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
    return [AuditEntry(**{key: row[key] for key in row.keys()}) for row in rows]  # noqa: SIM118
