"""The project's system database (`.elt/elt.db`, SQLite): state, runs, their steps and attempts, cache,
the tokens and audit of `elt serve`.

SQLite in WAL mode lets a run write while `elt runs` / `elt state` read; every write is one short
transaction so concurrent processes wait (busy timeout) instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    state_id   TEXT PRIMARY KEY,
    completed  TEXT,            -- JSON of the last successful run's final state
    partial    TEXT,            -- JSON of the latest durable state of a run not (yet) complete
    updated_at TEXT NOT NULL
);
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


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the system database at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
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
