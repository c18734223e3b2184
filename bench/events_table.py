"""The benchmark's source data: `<schema>.events` in PostgreSQL, as the peers' BASELINE.md defines it.

`ensure_events` builds the table with N rows (or keeps it when it already has them); `touch_one_percent`
gives 1% of the rows a new `updated_at` for the incremental cases and `restore_updates` puts them back.
The schema (`elt_bench` by default) holds nothing else, so a tap filtered to it sees one stream.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg

DEFAULT_SCHEMA = "elt_bench"

# BASELINE.md's statements, schema-qualified; `{table}` and `{rows}` are filled in.
CREATE = (
    """CREATE TABLE {table}(id bigint primary key, user_id int, event_type text, amount numeric(12,2),
                     payload text, created_at timestamptz, updated_at timestamptz)""",
    """INSERT INTO {table}
SELECT g, (random()*100000)::int, (array['click','view','purchase','signup','logout'])[1 + (g % 5)],
       round((random()*10000)::numeric, 2), md5(g::text) || substr(md5((g*7)::text), 1, 28),
       timestamptz '2024-01-01' + (g || ' seconds')::interval,
       timestamptz '2024-01-01' + (g || ' seconds')::interval
FROM generate_series(1, {rows}) g""",
    "CREATE INDEX ON {table}(updated_at)",
)


@dataclass(frozen=True)
class Postgres:
    """The source: PG* environment variables, else the local test server; and the bench's schema there."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = "test"
    schema: str = DEFAULT_SCHEMA

    @classmethod
    def from_env(cls, schema: str = DEFAULT_SCHEMA) -> Postgres:
        return cls(
            host=os.environ.get("PGHOST", cls.host),
            port=int(os.environ.get("PGPORT", cls.port)),
            user=os.environ.get("PGUSER", cls.user),
            password=os.environ.get("PGPASSWORD", cls.password),
            database=os.environ.get("PGDATABASE", cls.database),
            schema=schema,
        )

    @property
    def table(self) -> str:
        return f"{self.schema}.events"

    @property
    def stream(self) -> str:
        """The Singer stream id taps give the table."""
        return f"{self.schema}-events"

    @property
    def dsn(self) -> str:
        """libpq key=value form (psql, DuckDB's scanner)."""
        parts = f"host={self.host} port={self.port} user={self.user} dbname={self.database}"
        return parts + (f" password={self.password}" if self.password else "")

    @property
    def url(self) -> str:
        """URL form (SQLAlchemy, connectorx)."""
        auth = quote(self.user, safe="") + (f":{quote(self.password, safe='')}" if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.database}"

    def tap_config(self) -> dict[str, Any]:
        """Config of a Singer tap-postgres (MeltanoLabs' keys, which elt's built-in takes too)."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "filter_schemas": [self.schema],
        }

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)


@dataclass(frozen=True)
class EventsTable:
    rows: int
    created: bool  # False when an existing table with these rows was kept
    seconds: float
    oid: int  # changes whenever the table is built anew: what files made from it are keyed by


def ensure_events(pg: Postgres, rows: int) -> EventsTable:
    """`<schema>.events` with ids 1..rows and no pending update, built anew unless it already is that."""
    started = time.perf_counter()
    with pg.connect() as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {pg.schema}")
        if _has_rows(con, pg.table, rows):
            if _updated_rows(con, pg.table):  # an interrupted incremental case left its update behind
                _restore(con, pg.table)
            return EventsTable(rows, False, time.perf_counter() - started, _oid(con, pg.table))
        con.execute(f"DROP TABLE IF EXISTS {pg.table}")
        with con.transaction():
            for statement in CREATE:
                con.execute(statement.format(table=pg.table, rows=int(rows)).encode())
        con.execute(f"VACUUM ANALYZE {pg.table}")
        oid = _oid(con, pg.table)
    return EventsTable(rows, True, time.perf_counter() - started, oid)


def touch_one_percent(pg: Postgres) -> int:
    """Give every 100th row (1%) a new `updated_at`, as an application would; returns how many."""
    with pg.connect() as con:
        cur = con.execute(f"UPDATE {pg.table} SET updated_at = now() WHERE id % 100 = 0")
        return cur.rowcount


def restore_updates(pg: Postgres) -> None:
    """Undo `touch_one_percent`: in this data `updated_at` equals `created_at`."""
    with pg.connect() as con:
        _restore(con, pg.table)


def server_version(pg: Postgres) -> str:
    with pg.connect() as con:
        row = con.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def _has_rows(con: psycopg.Connection[Any], table: str, rows: int) -> bool:
    exists = con.execute("SELECT to_regclass(%s)", [table]).fetchone()
    if not exists or exists[0] is None:
        return False
    found = con.execute(f"SELECT count(*), min(id), max(id) FROM {table}").fetchone()
    return found == (rows, 1, rows)


def _oid(con: psycopg.Connection[Any], table: str) -> int:
    row = con.execute("SELECT %s::regclass::oid", [table]).fetchone()
    return int(row[0]) if row else 0


def _updated_rows(con: psycopg.Connection[Any], table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table} WHERE updated_at <> created_at").fetchone()
    return int(row[0]) if row else 0


def _restore(con: psycopg.Connection[Any], table: str) -> None:
    con.execute(f"UPDATE {table} SET updated_at = created_at WHERE updated_at <> created_at")
    con.execute(f"VACUUM ANALYZE {table}")
