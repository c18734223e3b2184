"""The project's system database (`.elt/elt.db`, SQLite): state, runs, their steps and attempts, cache.

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
    status      TEXT NOT NULL,  -- running | success | failed
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
]


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
