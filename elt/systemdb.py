"""The project's system database: state, runs, their steps and attempts, cache, schedule slots, the
tokens and audit of `elt serve`.

By default it is SQLite in `.elt/elt.db`: WAL mode lets a run write while `elt runs` / `elt state` read,
and every write is one short transaction so concurrent processes wait (busy timeout) instead of failing.
With `system_db: postgresql://…` in elt.yml (or ELT_SYSTEM_DB), it is the schema `elt_system` of that
PostgreSQL database instead, so that the orchestrator, the scheduler, the API and workers on several
machines share one history. The SQL of its users is written once, in the dialect both understand
(`?` placeholders, `INSERT … ON CONFLICT`); `connect` adapts it to PostgreSQL.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

# Where the system database is: a file (SQLite) or a PostgreSQL URL.
Location = Path | str
PG_SCHEMA = "elt_system"

# The default state backend's table (elt/state/systemdb.py), in SQLite only: with a PostgreSQL system
# database the state goes to the PostgreSQL state backend's tables, in the same schema.
STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    state_id   TEXT PRIMARY KEY,
    completed  TEXT,            -- JSON of the last successful run's final state
    partial    TEXT,            -- JSON of the latest durable state of a run not (yet) complete
    updated_at TEXT NOT NULL
);
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,  -- sync | build | dbt | run
    name        TEXT NOT NULL,
    environment TEXT,
    status      TEXT NOT NULL,  -- running | success | failed | cancelled | died
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    seconds     REAL,
    summary     TEXT,           -- JSON
    error       TEXT,
    pid         INTEGER,        -- of the elt process running it, to tell a run that died
    host        TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id     TEXT NOT NULL,
    position   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,   -- running | success | failed | skipped
    started_at TEXT,
    ended_at   TEXT,
    seconds    REAL,
    summary    TEXT,
    error      TEXT,
    PRIMARY KEY (run_id, position)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id     TEXT NOT NULL,
    step       TEXT NOT NULL,
    attempt    INTEGER NOT NULL, -- 1 for the first try
    status     TEXT NOT NULL,    -- running | success | failed | cached
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    seconds    REAL,
    error      TEXT,
    log_file   TEXT,
    PRIMARY KEY (run_id, step, attempt)
);
CREATE TABLE IF NOT EXISTS step_cache (
    pipeline    TEXT NOT NULL,
    step        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    output      TEXT NOT NULL,  -- JSON of the StepOutput
    created_at  TEXT NOT NULL,
    PRIMARY KEY (pipeline, step)
);
-- Schedules and triggers (elt/schedule/): a row is claimed by one INSERT, so that two schedulers on
-- one database never fire the same slot or the same file twice.
CREATE TABLE IF NOT EXISTS schedule_slots (
    schedule   TEXT NOT NULL,
    slot       TEXT NOT NULL,   -- ISO time (UTC) of the slot
    owner      TEXT NOT NULL,   -- the scheduler (or `elt schedule run`) that fired it
    fired_at   TEXT NOT NULL,
    run_id     TEXT,
    status     TEXT NOT NULL,   -- running | success | failed | interrupted | missed
    PRIMARY KEY (schedule, slot)
);
CREATE TABLE IF NOT EXISTS trigger_events (
    trigger    TEXT NOT NULL,
    event      TEXT NOT NULL,   -- file:PATH#FINGERPRINT | run:RUN_ID (completion) | fire:RUN_ID (API)
    owner      TEXT NOT NULL,
    fired_at   TEXT NOT NULL,
    run_id     TEXT,
    status     TEXT NOT NULL,
    PRIMARY KEY (trigger, event)
);
CREATE TABLE IF NOT EXISTS schedulers (
    owner        TEXT PRIMARY KEY,  -- host:pid:random
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,     -- a scheduler whose heartbeat is older than its lease is gone
    stopped_at   TEXT
);
CREATE TABLE IF NOT EXISTS schedule_baselines (
    name       TEXT PRIMARY KEY,  -- schedule:NAME | trigger:NAME
    since      TEXT NOT NULL      -- when a scheduler first saw it: nothing before is due
);
CREATE TABLE IF NOT EXISTS api_tokens (   -- tokens of `elt serve` (elt/server/auth.py)
    id           TEXT PRIMARY KEY,       -- public: the token reads elt_<id>_<secret>
    name         TEXT,
    role         TEXT NOT NULL,          -- viewer | operator | admin
    hash         TEXT NOT NULL,          -- sha256$<salt>$<digest> of the secret; never the token itself
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT,
    last_used_at TEXT
);
CREATE TABLE IF NOT EXISTS api_audit (    -- one row per call to `elt serve`; never bodies or secrets
    at       TEXT NOT NULL,
    token_id TEXT,
    role     TEXT,
    method   TEXT NOT NULL,
    path     TEXT NOT NULL,
    status   INTEGER NOT NULL,
    remote   TEXT,
    seconds  REAL
);
CREATE INDEX IF NOT EXISTS api_audit_at ON api_audit(at);
"""


def is_postgres(location: Location) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0].lower() in ("postgresql", "postgres")


def describe(location: Location, root: Path | None = None) -> str:
    """For messages: the file relative to `root`, or the URL without its password."""
    if is_postgres(location):
        from elt.state.backend import mask_uri

        return f"{mask_uri(str(location))} (schema {PG_SCHEMA})"
    path = Path(location)
    return str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else str(path)


def exists(location: Location) -> bool:
    """Whether the database may hold anything yet (a PostgreSQL one always may)."""
    return is_postgres(location) or Path(location).is_file()


def connect(location: Location) -> Any:
    """Open (creating its tables if needed) the system database at `location`: a `sqlite3.Connection`,
    or for PostgreSQL a connection with the same `execute` / `executescript` / `close`, whose rows read
    by name and by position alike."""
    if is_postgres(location):
        return _PgConnection(str(location))
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(STATE_SCHEMA + SCHEMA)
    _migrate(conn)
    return conn


# Columns added after a table was first created: (table, column, type).
_ADDED_COLUMNS = [
    ("runs", "pid", "INTEGER"),
    ("runs", "host", "TEXT"),
    ("runs", "request", "TEXT"),  # JSON: what `elt run` was asked (pipeline/blocks, variables), to resume
    ("steps", "rows", "INTEGER"),
    ("steps", "bytes", "INTEGER"),
    ("steps", "attempts", "INTEGER"),
    ("steps", "output", "TEXT"),  # JSON of the StepOutput of a successful step
    ("steps", "log_file", "TEXT"),
    ("attempts", "worker", "TEXT"),  # the celery worker of the attempt
    ("runs", "heartbeat_at", "TEXT"),  # refreshed while the run's elt process lives, wherever it runs
    ("runs", "cancel_requested", "TEXT"),  # JSON {by, at}: `elt runs cancel` or the API asked it to stop
]


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


# -- PostgreSQL ---------------------------------------------------------------------------------------------

_pg_ready: set[str] = set()  # URLs whose schema this process has created or checked
_pg_lock = threading.Lock()
_PLACEHOLDER = re.compile(r"\?")
_ROWID = re.compile(r"\browid\b")


def _pg_sql(statement: str) -> str:
    """A statement of the shared dialect as psycopg takes it: `%s` placeholders; `rowid` (only ever a
    tie-breaker of ORDER BY) as `ctid`."""
    return _ROWID.sub("ctid", _PLACEHOLDER.sub("%s", statement.replace("%", "%%")))


def _pg_ddl(script: str) -> str:
    """SQLite's column types as PostgreSQL's: 64-bit integers, double-precision reals."""
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", re.sub(r"\bINTEGER\b", "BIGINT", script))


class _Row(tuple[Any, ...]):
    """A row read by position or by column name, as sqlite3.Row."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _rows(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Any) -> _Row:
        row = _Row(values)
        row._names = names
        return row

    return make


class _PgConnection:
    """A connection to the schema `elt_system` of a PostgreSQL database, in autocommit: each statement
    is its own transaction, as the SQLite connections are used."""

    def __init__(self, url: str) -> None:
        import psycopg

        from elt.errors import EltError
        from elt.logs import mask
        from elt.state.backend import mask_uri

        try:
            self.conn = psycopg.connect(url, autocommit=True, row_factory=_rows, connect_timeout=10)
        except psycopg.Error as error:
            reason = mask(str(error).strip().replace(url, mask_uri(url)))
            raise EltError(f"the system database {mask_uri(url)} could not be opened: {reason}") from None
        try:
            with _pg_lock:
                if url not in _pg_ready:
                    self._create_tables()
                    _pg_ready.add(url)
            self.conn.execute(f"SET search_path TO {PG_SCHEMA}")
        except psycopg.Error as error:
            self.conn.close()
            raise EltError(
                f"the system database {mask_uri(url)}: the schema {PG_SCHEMA} could not be made ready: "
                f"{mask(str(error).strip())}",
                hint=f"the user needs CREATE on the database, or the schema {PG_SCHEMA} made for it",
            ) from None

    def _create_tables(self) -> None:
        with self.conn.transaction():
            # one process at a time creates the tables (PostgreSQL's IF NOT EXISTS is not atomic)
            self.conn.execute("SELECT pg_advisory_xact_lock(74110001)")
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
            self.conn.execute(f"SET LOCAL search_path TO {PG_SCHEMA}")
            self.conn.execute(_pg_ddl(SCHEMA))
            for table, column, kind in _ADDED_COLUMNS:
                self.conn.execute(_pg_ddl(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"))

    def execute(self, statement: str, params: Any = ()) -> Any:
        if not params:  # psycopg reads no placeholders (nor `%`) in a statement without parameters
            return self.conn.execute(_ROWID.sub("ctid", statement))
        return self.conn.execute(_pg_sql(statement), tuple(params))

    def executescript(self, script: str) -> None:
        self.conn.execute(_pg_ddl(script))

    def close(self) -> None:
        self.conn.close()
