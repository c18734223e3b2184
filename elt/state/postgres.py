"""State in a PostgreSQL database (`state_backend.uri: postgresql://user:pass@host:port/db`).

Records are rows of `elt_state` (completed and partial as jsonb); locks are rows of `elt_state_locks`,
both created if missing, in `state_backend.postgresql.schema` if set (else the connection's search_path,
which `?options=-csearch_path%3Dmy_schema` in the URI can set too).

A lock is taken by one `INSERT … ON CONFLICT DO UPDATE … WHERE heartbeat_at < clock_timestamp() - timeout`
in a transaction: the row lock PostgreSQL takes makes "no live lock, so take it" atomic. Heartbeats and
their ages use the server's clock, so clients on different machines need not agree on the time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from elt.errors import StateError
from elt.state.backend import LockHolder, StateBackend, StateRecord

STATE_TABLE = "elt_state"
LOCKS_TABLE = "elt_state_locks"

T = TypeVar("T")


class PostgresBackend(StateBackend):
    """The state tables in the database `conninfo` points at (one connection, opened on first use)."""

    def __init__(
        self,
        conninfo: str,
        *,
        label: str,
        schema: str | None = None,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.label = label
        self.schema = schema
        self.connect_args = dict(connect_args or {})
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        # The heartbeat thread and a sync's state writer share the connection, one statement at a time.
        self._mutex = threading.Lock()

    def _table(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema, name) if self.schema else sql.Identifier(name)

    def _open(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            conn = psycopg.connect(
                self.conninfo, autocommit=True, row_factory=dict_row, connect_timeout=10, **self.connect_args
            )
        except psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state backend {self.label}: {_first_line(exc)}"
            ) from None
        try:
            self._create_tables(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_tables(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        statements: list[sql.Composed] = []
        if self.schema:
            statements.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        statements += [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (state_id text PRIMARY KEY, completed jsonb, partial jsonb, "
                "updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(self._table(STATE_TABLE)),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (state_id text PRIMARY KEY, run_id text NOT NULL, "
                "pid integer NOT NULL, host text NOT NULL, since text NOT NULL, token text NOT NULL, "
                "heartbeat_at timestamptz NOT NULL)"
            ).format(self._table(LOCKS_TABLE)),
        ]
        for statement in statements:
            try:
                conn.execute(statement)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                pass  # another process created it at the same moment: IF NOT EXISTS is not atomic
            except psycopg.Error as exc:
                raise StateError(
                    f"cannot create the state tables in {self.label}: {_first_line(exc)}",
                    hint="the user needs CREATE on the database (schema) or the tables must exist",
                ) from None

    def _run(self, work: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """`work(connection)`, reconnecting once if the connection was lost (server restart, idle cut)."""
        with self._mutex:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = self._open()
                try:
                    return work(self._conn)
                except psycopg.OperationalError as exc:
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise StateError(f"state backend {self.label}: {_first_line(exc)}") from None
                except psycopg.Error as exc:
                    raise StateError(f"state backend {self.label}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def read(self, state_id: str) -> StateRecord | None:
        query = sql.SQL("SELECT * FROM {} WHERE state_id = %s").format(self._table(STATE_TABLE))
        row = self._run(lambda c: c.execute(query, (state_id,)).fetchone())
        return _record(row) if row else None

    def write(self, record: StateRecord) -> None:
        query = sql.SQL(
            "INSERT INTO {} (state_id, completed, partial, updated_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (state_id) DO UPDATE SET completed = EXCLUDED.completed, "
            "partial = EXCLUDED.partial, updated_at = EXCLUDED.updated_at"
        ).format(self._table(STATE_TABLE))
        params = (record.state_id, _jsonb(record.completed), _jsonb(record.partial),
                  datetime.fromisoformat(record.updated_at))  # fmt: skip
        self._run(lambda c: c.execute(query, params))

    def delete(self, state_id: str) -> bool:
        query = sql.SQL("DELETE FROM {} WHERE state_id = %s").format(self._table(STATE_TABLE))
        return self._run(lambda c: c.execute(query, (state_id,)).rowcount) > 0

    def records(self) -> list[StateRecord]:
        query = sql.SQL("SELECT * FROM {}").format(self._table(STATE_TABLE))
        return [_record(r) for r in self._run(lambda c: c.execute(query).fetchall())]

    def acquire_lock(self, holder: LockHolder, timeout: float) -> LockHolder | None:
        take = sql.SQL(
            "INSERT INTO {locks} AS l (state_id, run_id, pid, host, since, token, heartbeat_at) "
            "VALUES (%(state_id)s, %(run_id)s, %(pid)s, %(host)s, %(since)s, %(token)s, clock_timestamp()) "
            "ON CONFLICT (state_id) DO UPDATE SET run_id = EXCLUDED.run_id, pid = EXCLUDED.pid, "
            "host = EXCLUDED.host, since = EXCLUDED.since, token = EXCLUDED.token, "
            "heartbeat_at = EXCLUDED.heartbeat_at "
            "WHERE l.heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout)s) "
            "RETURNING token"
        ).format(locks=self._table(LOCKS_TABLE))
        current = sql.SQL(
            "SELECT *, extract(epoch FROM clock_timestamp() - heartbeat_at)::float AS age "
            "FROM {} WHERE state_id = %s"
        ).format(self._table(LOCKS_TABLE))

        def attempt(conn: psycopg.Connection[dict[str, Any]]) -> tuple[bool, dict[str, Any] | None]:
            with conn.transaction():
                taken = conn.execute(take, {**holder.to_json(), "timeout": timeout}).fetchone()
                if taken is not None:
                    return True, None
                return False, conn.execute(current, (holder.state_id,)).fetchone()

        for _ in range(100):
            acquired, row = self._run(attempt)
            if acquired:
                return None
            if row is not None:
                return _holder(row)
            # released between the two statements: try again
        return self.read_lock(holder.state_id)

    def refresh_lock(self, holder: LockHolder) -> bool:
        query = sql.SQL(
            "UPDATE {} SET heartbeat_at = clock_timestamp() WHERE state_id = %s AND token = %s"
        ).format(self._table(LOCKS_TABLE))
        return self._run(lambda c: c.execute(query, (holder.state_id, holder.token)).rowcount) > 0

    def release_lock(self, holder: LockHolder) -> None:
        query = sql.SQL("DELETE FROM {} WHERE state_id = %s AND token = %s").format(self._table(LOCKS_TABLE))
        self._run(lambda c: c.execute(query, (holder.state_id, holder.token)))

    def read_lock(self, state_id: str) -> LockHolder | None:
        query = sql.SQL(
            "SELECT *, extract(epoch FROM clock_timestamp() - heartbeat_at)::float AS age "
            "FROM {} WHERE state_id = %s"
        ).format(self._table(LOCKS_TABLE))
        row = self._run(lambda c: c.execute(query, (state_id,)).fetchone())
        return _holder(row) if row else None


def _holder(row: dict[str, Any]) -> LockHolder:
    return LockHolder(
        state_id=row["state_id"], run_id=row["run_id"], pid=row["pid"], host=row["host"],
        since=row["since"], token=row["token"], heartbeat_age=max(0.0, float(row["age"])),
    )  # fmt: skip


def _record(row: dict[str, Any]) -> StateRecord:
    updated: datetime = row["updated_at"]
    return StateRecord(
        state_id=row["state_id"],
        completed=row["completed"],
        partial=row["partial"],
        updated_at=updated.astimezone(UTC).isoformat(timespec="milliseconds"),
    )


def _jsonb(value: dict[str, Any] | None) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
