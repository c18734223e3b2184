"""Run history: every `elt sync`, `elt build` and `elt run` is recorded in the system database."""

from __future__ import annotations

import json
import os
import socket
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elt.systemdb import connect


@dataclass
class StepRecord:
    """One step of a run, as stored."""

    position: int
    name: str
    kind: str
    status: str = "running"
    started_at: str | None = None
    ended_at: str | None = None
    seconds: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunRecord:
    """One run, as stored."""

    run_id: str
    kind: str
    name: str
    environment: str | None
    status: str
    started_at: str
    ended_at: str | None = None
    seconds: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    steps: list[StepRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


class RunLog:
    """Writes run and step records as they progress."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def start(self, kind: str, name: str, environment: str | None) -> RunRecord:
        record = RunRecord(new_run_id(), kind, name, environment, "running", now())
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO runs(run_id, kind, name, environment, status, started_at, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    kind,
                    name,
                    environment,
                    record.status,
                    record.started_at,
                    os.getpid(),
                    socket.gethostname(),
                ),
            )
        return record

    def finish(
        self,
        record: RunRecord,
        status: str,
        seconds: float,
        summary: dict[str, Any],
        error: str | None,
    ) -> None:
        record.status, record.seconds, record.summary, record.error = (
            status,
            seconds,
            summary,
            error,
        )
        record.ended_at = now()
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "UPDATE runs SET status=?, ended_at=?, seconds=?, summary=?, error=? WHERE run_id=?",
                (status, record.ended_at, seconds, json.dumps(summary), error, record.run_id),
            )

    def step(self, record: RunRecord, step: StepRecord) -> None:
        """Insert or update `step` of `record`."""
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO steps(run_id, position, name, kind, status, started_at, ended_at, "
                "seconds, summary, error) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(run_id, position) DO UPDATE SET status=excluded.status, "
                "ended_at=excluded.ended_at, seconds=excluded.seconds, summary=excluded.summary, "
                "error=excluded.error",
                (
                    record.run_id,
                    step.position,
                    step.name,
                    step.kind,
                    step.status,
                    step.started_at,
                    step.ended_at,
                    step.seconds,
                    json.dumps(step.summary),
                    step.error,
                ),
            )

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first, with their steps."""
        with closing(connect(self.db_path)) as conn:
            rows = conn.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
            records = []
            for row in rows:
                if _died(row):
                    conn.execute(
                        "UPDATE runs SET status = 'died', error = ? WHERE run_id = ?",
                        (
                            f"the elt process (pid {row['pid']}) ended without finishing the run",
                            row["run_id"],
                        ),
                    )
                    conn.execute(
                        "UPDATE steps SET status = 'died' WHERE run_id = ? AND status = 'running'",
                        (row["run_id"],),
                    )
                    row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (row["run_id"],)).fetchone()
                steps = conn.execute(
                    "SELECT * FROM steps WHERE run_id = ? ORDER BY position", (row["run_id"],)
                ).fetchall()
                run = RunRecord(
                    **_fields(row, exclude={"summary", "pid", "host"}), summary=_json(row["summary"])
                )
                run.steps = [
                    StepRecord(**_fields(s, exclude={"summary", "run_id"}), summary=_json(s["summary"]))
                    for s in steps
                ]
                records.append(run)
        return records


def _died(row: Any) -> bool:
    """A run still marked running whose elt process on this host is gone."""
    if row["status"] != "running" or row["pid"] is None or row["host"] != socket.gethostname():
        return False
    try:
        os.kill(row["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fields(row: Any, exclude: set[str]) -> dict[str, Any]:
    # sqlite3.Row iterates over values; its keys come from keys().
    return {key: row[key] for key in row.keys() if key not in exclude}  # noqa: SIM118


def _json(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}
