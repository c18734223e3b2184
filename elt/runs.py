"""Run history: every `elt sync`, `elt build` and `elt run` is recorded in the system database."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elt.logs import mask, mask_json
from elt.systemdb import Location, connect


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
    rows: int | None = None
    bytes: int | None = None
    attempts: int | None = None
    output: dict[str, Any] | None = None  # the StepOutput of a successful step, as JSON
    log_file: str | None = None
    attempt_records: list[AttemptRecord] = field(default_factory=list)


@dataclass
class AttemptRecord:
    """One try of a step (a step with retries has several), as stored."""

    step: str
    attempt: int
    status: str
    started_at: str
    ended_at: str | None = None
    seconds: float | None = None
    error: str | None = None
    log_file: str | None = None
    worker: str | None = None  # the celery worker that ran it (None: the orchestrator's machine)


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
    request: dict[str, Any] | None = None  # what `elt run` was asked, for --resume

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# A running run's process writes a heartbeat this often; a run whose last one is older than STALE_SECONDS
# is taken as dead (its process, pod or machine is gone), wherever it ran.
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 120.0
_beating: dict[str, threading.Event] = {}  # run id → set to stop its heartbeat


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


class RunLog:
    """Writes run and step records as they progress."""

    def __init__(self, db_path: Location) -> None:
        self.db_path = db_path

    def start(
        self,
        kind: str,
        name: str,
        environment: str | None,
        request: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """Record a run as started, under `run_id` when its starter chose one (the scheduler, the API)."""
        record = RunRecord(run_id or new_run_id(), kind, name, environment, "running", now(), request=request)
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO runs(run_id, kind, name, environment, status, started_at, pid, host, request, "
                "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    kind,
                    name,
                    environment,
                    record.status,
                    record.started_at,
                    os.getpid(),
                    socket.gethostname(),
                    json.dumps(mask_json(request)) if request is not None else None,
                    record.started_at,
                ),
            )
        stop = _beating[record.run_id] = threading.Event()
        threading.Thread(
            target=self._beat, args=(record.run_id, stop), name=f"heartbeat-{record.run_id}", daemon=True
        ).start()
        return record

    def _beat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with closing(connect(self.db_path)) as conn:
                    conn.execute(
                        "UPDATE runs SET heartbeat_at = ? WHERE run_id = ? AND status = 'running'",
                        (now(), run_id),
                    )
            except Exception:  # a busy or vanished database: the next beat tries again
                continue

    def request_cancel(self, run_id: str, by: str) -> RunRecord:
        """Ask the process running `run_id` (a unique prefix will do) to stop it; it does within a second.
        An error if the run is not running."""
        from elt.errors import EltError

        record = self.get(run_id)
        if record.status != "running":
            raise EltError(f"run {record.run_id} is not running (its status: {record.status})")
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "UPDATE runs SET cancel_requested = COALESCE(cancel_requested, ?) WHERE run_id = ?",
                (json.dumps({"by": mask(by), "at": now()}), record.run_id),
            )
        return record

    def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        """{by, at} once someone asked to cancel the run, else None."""
        with closing(connect(self.db_path)) as conn:
            row = conn.execute("SELECT cancel_requested FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

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
        beating = _beating.pop(record.run_id, None)
        if beating is not None:
            beating.set()
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "UPDATE runs SET status=?, ended_at=?, seconds=?, summary=?, error=? WHERE run_id=?",
                (status, record.ended_at, seconds, _json_text(summary), _masked(error), record.run_id),
            )

    def step(self, record: RunRecord, step: StepRecord) -> None:
        """Insert or update `step` of `record`."""
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO steps(run_id, position, name, kind, status, started_at, ended_at, "
                "seconds, summary, error, rows, bytes, attempts, output, log_file) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(run_id, position) DO UPDATE SET status=excluded.status, "
                "started_at=COALESCE(excluded.started_at, steps.started_at), "
                "ended_at=excluded.ended_at, seconds=excluded.seconds, summary=excluded.summary, "
                "error=excluded.error, rows=excluded.rows, bytes=excluded.bytes, "
                "attempts=excluded.attempts, output=excluded.output, log_file=excluded.log_file",
                (
                    record.run_id,
                    step.position,
                    step.name,
                    step.kind,
                    step.status,
                    step.started_at,
                    step.ended_at,
                    step.seconds,
                    _json_text(step.summary),
                    _masked(step.error),
                    step.rows,
                    step.bytes,
                    step.attempts,
                    _json_text(step.output) if step.output is not None else None,
                    step.log_file,
                ),
            )

    def attempt(self, run_id: str, attempt: AttemptRecord) -> None:
        """Insert or update one attempt of a step."""
        with closing(connect(self.db_path)) as conn:
            conn.execute(
                "INSERT INTO attempts(run_id, step, attempt, status, started_at, ended_at, seconds, error, "
                "log_file, worker) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (run_id, step, attempt) DO UPDATE SET status=excluded.status, "
                "started_at=excluded.started_at, ended_at=excluded.ended_at, seconds=excluded.seconds, "
                "error=excluded.error, log_file=excluded.log_file, "
                "worker=excluded.worker",
                (run_id, attempt.step, attempt.attempt, attempt.status, attempt.started_at,
                 attempt.ended_at, attempt.seconds, _masked(attempt.error), attempt.log_file, attempt.worker),
            )  # fmt: skip

    def get(self, run_id: str) -> RunRecord:
        """One run with its steps and their attempts; a unique prefix of the run id will do."""
        with closing(connect(self.db_path)) as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ? ORDER BY started_at DESC", (run_id + "%",)
            ).fetchall()
        if len(rows) != 1:
            from elt.errors import EltError

            found = "no run" if not rows else f"{len(rows)} runs"
            raise EltError(f"{found} with id '{run_id}'", hint="`elt runs list` shows the run ids")
        record = self._load(rows[0]["run_id"])
        with closing(connect(self.db_path)) as conn:
            attempts = conn.execute(
                "SELECT * FROM attempts WHERE run_id = ? ORDER BY step, attempt", (record.run_id,)
            ).fetchall()
        by_step: dict[str, list[AttemptRecord]] = {}
        for a in attempts:
            by_step.setdefault(a["step"], []).append(AttemptRecord(**_fields(a, exclude={"run_id"})))
        for step in record.steps:
            step.attempt_records = by_step.get(step.name, [])
        return record

    def _load(self, run_id: str) -> RunRecord:
        with closing(connect(self.db_path)) as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            row = _mark_if_died(conn, row)
            return _run_record(conn, row)

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first, with their steps."""
        with closing(connect(self.db_path)) as conn:
            rows = conn.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
            return [_run_record(conn, _mark_if_died(conn, row)) for row in rows]


def _mark_if_died(conn: Any, row: Any) -> Any:
    """The row of a run, marked `died` (with its running steps) if its elt process is gone."""
    why = _died(row)
    if why is None:
        return row
    conn.execute(
        "UPDATE runs SET status = 'died', error = ?, ended_at = COALESCE(ended_at, ?) WHERE run_id = ?",
        (why, now(), row["run_id"]),
    )
    conn.execute("UPDATE steps SET status = 'died' WHERE run_id = ? AND status = 'running'", (row["run_id"],))
    conn.execute(
        "UPDATE attempts SET status = 'died' WHERE run_id = ? AND status = 'running'", (row["run_id"],)
    )
    return conn.execute("SELECT * FROM runs WHERE run_id = ?", (row["run_id"],)).fetchone()


def _run_record(conn: Any, row: Any) -> RunRecord:
    steps = conn.execute(
        "SELECT * FROM steps WHERE run_id = ? ORDER BY position", (row["run_id"],)
    ).fetchall()
    run = RunRecord(
        **_fields(row, exclude={"summary", "pid", "host", "request", "heartbeat_at", "cancel_requested"}),
        summary=_json(row["summary"]),
        request=json.loads(row["request"]) if row["request"] else None,
    )
    run.steps = [
        StepRecord(
            **_fields(s, exclude={"summary", "run_id", "output"}),
            summary=_json(s["summary"]),
            output=json.loads(s["output"]) if s["output"] else None,
        )
        for s in steps
    ]
    return run


def store_cache(
    db_path: Location, pipeline: str, step: str, fingerprint: str, output: dict[str, Any]
) -> None:
    """Remember the output of a successful cacheable step and the fingerprint of its inputs."""
    with closing(connect(db_path)) as conn:
        conn.execute(
            "INSERT INTO step_cache(pipeline, step, fingerprint, output, created_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (pipeline, step) DO UPDATE SET fingerprint=excluded.fingerprint, "
            "output=excluded.output, created_at=excluded.created_at",
            (pipeline, step, fingerprint, _json_text(output), now()),
        )


def cached_output(
    db_path: Location, pipeline: str, step: str, fingerprint: str, expire_seconds: float
) -> dict[str, Any] | None:
    """The stored output of the step if its fingerprint is `fingerprint` and it is younger than expiry."""
    with closing(connect(db_path)) as conn:
        row = conn.execute(
            "SELECT fingerprint, output, created_at FROM step_cache WHERE pipeline = ? AND step = ?",
            (pipeline, step),
        ).fetchone()
    if row is None or row["fingerprint"] != fingerprint:
        return None
    age = (datetime.now(UTC) - datetime.fromisoformat(row["created_at"])).total_seconds()
    if age > expire_seconds:
        return None
    output: dict[str, Any] = json.loads(row["output"])
    return output


def last_outputs(db_path: Location, pipeline: str, steps: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The output of the latest successful run of each of `steps` of `pipeline` (steps never run are
    left out): what `elt run P --only STEP` gives STEP of the steps it does not run."""
    wanted = list(steps)
    found: dict[str, dict[str, Any]] = {}
    if not wanted:
        return found
    with closing(connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT s.name, s.output FROM steps s JOIN runs r ON r.run_id = s.run_id "
            f"WHERE r.name = ? AND s.name IN ({','.join('?' * len(wanted))}) "
            "AND s.status IN ('success', 'cached', 'reused') AND s.output IS NOT NULL "
            "ORDER BY r.started_at DESC",
            (pipeline, *wanted),
        ).fetchall()
    for row in rows:
        found.setdefault(row["name"], _json(row["output"]))
    return found


def _died(row: Any) -> str | None:
    """Why a run still marked running is dead: its elt process on this host is gone, or (on any host)
    it has sent no heartbeat for STALE_SECONDS. None while it lives."""
    if row["status"] != "running":
        return None
    beat = row["heartbeat_at"]
    if beat and (datetime.now(UTC) - datetime.fromisoformat(beat)).total_seconds() > STALE_SECONDS:
        return (
            f"no heartbeat from the elt process (pid {row['pid']} on {row['host']}) since {beat}: "
            "it, or its machine, is gone"
        )
    if row["pid"] is None or row["host"] != socket.gethostname():
        return None
    try:
        os.kill(row["pid"], 0)
    except ProcessLookupError:
        return f"the elt process (pid {row['pid']}) ended without finishing the run"
    except PermissionError:
        return None
    return None


def _fields(row: Any, exclude: set[str]) -> dict[str, Any]:
    # sqlite3.Row iterates over values; its keys come from keys().
    return {key: row[key] for key in row.keys() if key not in exclude}  # noqa: SIM118


def _masked(text: str | None) -> str | None:
    """What the run history stores of a message: secrets this process resolved never reach the disk."""
    return None if text is None else mask(text)


def _json_text(value: Any) -> str:
    return json.dumps(mask_json(value), default=lambda item: mask(str(item)))


def _json(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def iter_logs(db_path: Location, run_id: str, step: str | None = None, follow: bool = False) -> Iterator[str]:
    """The lines of each attempt's log of a run (of one step and its `for_each` instances, if given),
    attempt after attempt; with `follow`, new lines as they come until the run ends."""
    log = RunLog(db_path)
    record = log.get(run_id)
    offsets: dict[str, int] = {}
    while True:
        record = log.get(record.run_id)
        for s in record.steps:
            if step is not None and s.name != step and not s.name.startswith(f"{step}["):
                continue
            for attempt in sorted(s.attempt_records, key=lambda a: a.started_at):
                if not attempt.log_file:
                    continue
                path = Path(attempt.log_file)
                if attempt.log_file not in offsets:
                    offsets[attempt.log_file] = 0
                    yield f"── {attempt.step} · attempt {attempt.attempt} · {attempt.status} · {path}"
                if not path.is_file():
                    continue
                with path.open(encoding="utf-8", errors="replace") as handle:
                    handle.seek(offsets[attempt.log_file])
                    text = handle.read()
                    # Keep a partial last line for the next turn.
                    complete = (
                        text
                        if text.endswith("\n") or record.status != "running"
                        else text[: text.rfind("\n") + 1]
                    )
                    offsets[attempt.log_file] += len(complete.encode("utf-8"))
                yield from complete.splitlines()
        if not follow or record.status != "running":
            return
        time.sleep(0.2)
