"""Partitions loaded exactly once: the ledger `<schema>._elt_partitions` of target-postgres.

elt's partitioned syncs (docs/partitions.md) load one range of a stream per sync, and give the target
`partition: {id, stream, loaded_by}`. `PartitionLoad` then loads every batch of that stream inside ONE
transaction, which begins by inserting the partition's row in the ledger of the table's schema and
commits at the end of the input:

    _elt_partitions(table_name, partition_id, stream, rows, loaded_by, loaded_at)
    primary key (table_name, partition_id); loaded_by names the load, as elt gave it

- A partition already in the ledger is not loaded again: the insert finds its row, the transaction is
  rolled back, and the rest of the input is read and dropped (`skipped`).
- Two loads of the same partition at once cannot both commit: the second one's insert waits for the
  first transaction and then finds its row (or, if the first rolled back, goes on and loads).
- A load killed at any point (SIGKILL included) commits nothing, ledger row included: PostgreSQL rolls
  back the transaction of a connection that goes away, and the next load of the id loads it whole.

The table's DDL (create, add or widen columns, the upsert index) and the ledger's creation are committed
apart, before the partition's transaction and under an advisory lock: partitions loading in parallel
into a new table would otherwise each try to create it, and DDL inside the long transaction would lock
the table against the others until it commits. `loaded_partitions` is what elt reads of the ledger.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from targets.target_duckdb.errors import LoadError
from targets.target_postgres.batches import BatchSource
from targets.target_postgres.settings import OVERWRITE, LoaderSettings, normalize_config
from targets.target_postgres.types import stream_table_name
from targets.target_postgres.warehouse import (
    BatchResult,
    TableSpec,
    connect,
    ensure_schema,
    load_batch,
    prepare_table,
    quote,
)

LEDGER = "_elt_partitions"
# The pg_advisory_xact_lock key under which partition loads change tables: a number of elt's own.
_DDL_LOCK = 0x656C_745F_7061_7274  # "elt_part"


@dataclass(frozen=True)
class LedgerRow:
    """A partition the ledger holds: loaded, with how many rows, by which load and when."""

    partition_id: str
    rows: int
    loaded_by: str | None
    loaded_at: str


class PartitionLoad:
    """One partition (id `partition_id`) of `stream`, loaded in one transaction with its ledger row.
    `load` takes the stream's batches as they come; `finish` commits at the end of the input."""

    def __init__(self, partition_id: str, stream: str, loaded_by: str | None = None) -> None:
        self.partition_id = partition_id
        self.stream = stream
        self.loaded_by = loaded_by
        self.open = False  # the partition's transaction has begun
        self.skipped = False  # the ledger had the id: loaded before, not loaded again
        self.rows = 0
        self.table: TableSpec | None = None

    def load(
        self, connection: psycopg.Connection, table: TableSpec, sources: Iterable[BatchSource]
    ) -> BatchResult:
        """Load one batch of the partition's stream inside its transaction (as a savepoint of it)."""
        if self.skipped:
            return BatchResult()
        if not self.open:
            if table.load_method == OVERWRITE:
                raise LoadError(
                    f"stream '{table.stream}': a partition cannot be loaded with load_method overwrite "
                    "(each partition would empty the table)",
                    hint="load partitioned streams with load_method append-only or upsert",
                )
            pending = iter(sources)
            first = next(pending, None)
            if first is None:
                return BatchResult()
            self._begin(connection, table, first)
            if self.skipped:
                return BatchResult()
            sources = itertools.chain([first], pending)
        result = load_batch(connection, table, sources, truncate_first=False)
        self.rows += result.rows_in_batch
        return result

    def finish(self, connection: psycopg.Connection, settings: LoaderSettings) -> None:
        """Commit the partition: its rows and its ledger row. A partition without rows is recorded too."""
        if self.skipped:
            return
        try:
            if self.open:
                assert self.table is not None
                connection.execute(
                    f"UPDATE {_ledger(self.table.schema)} SET rows = %s, loaded_at = clock_timestamp() "
                    "WHERE table_name = %s AND partition_id = %s",
                    [self.rows, self.table.name, self.partition_id],
                )
                connection.execute("COMMIT")
                self.open = False
                return
            schema, table = table_of(settings, self.stream)
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
                _create_ledger(connection, schema)
            with connection.transaction():
                claimed = self._claim(connection, schema, table)
            self.skipped = not claimed
        except psycopg.Error as error:
            raise LoadError(
                f"stream '{self.stream}': committing partition {self.partition_id} failed: {error}; "
                "nothing of it was written"
            ) from error

    def _begin(self, connection: psycopg.Connection, table: TableSpec, first: BatchSource) -> None:
        """Shape the table and the ledger (committed apart), then open the partition's transaction with
        its ledger row; `skipped` if the ledger has it already."""
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", [_DDL_LOCK])
                prepare_table(connection, table, first.columns)
                _create_ledger(connection, table.schema)
            connection.execute("BEGIN")
            self.open, self.table = True, table
            claimed = self._claim(connection, table.schema, table.name)
        except psycopg.Error as error:
            raise LoadError(
                f"stream '{table.stream}': starting partition {self.partition_id} failed: {error}"
            ) from error
        if not claimed:
            connection.execute("ROLLBACK")
            self.open, self.skipped = False, True

    def _claim(self, connection: psycopg.Connection, schema: str, table: str) -> bool:
        """Insert the partition's ledger row; False if the ledger has it (waits for a load of it that
        has not committed yet)."""
        row = connection.execute(
            f"INSERT INTO {_ledger(schema)} (table_name, partition_id, stream, rows, loaded_by) "
            "VALUES (%s, %s, %s, 0, %s) ON CONFLICT DO NOTHING RETURNING 1",
            [table, self.partition_id, self.stream, self.loaded_by],
        ).fetchone()
        return row is not None


def loaded_partitions(config: Mapping[str, Any], stream: str, ids: Sequence[str]) -> dict[str, LedgerRow]:
    """Which of `ids` the ledger of `stream`'s table holds; `config` is the target's. elt asks before it
    loads a partition, and when it advances the stream's bookmark."""
    settings = LoaderSettings.from_config(normalize_config(config))
    schema, table = table_of(settings, stream)
    if not ids:
        return {}
    with connect(settings) as connection:
        (exists,) = connection.execute(
            "SELECT to_regclass(%s) IS NOT NULL", [_ledger(schema)]
        ).fetchone() or (False,)
        if not exists:
            return {}
        rows = connection.execute(
            f"SELECT partition_id, rows, loaded_by, loaded_at FROM {_ledger(schema)} "
            "WHERE table_name = %s AND partition_id = ANY(%s)",
            [table, list(ids)],
        ).fetchall()
    return {
        str(found): LedgerRow(str(found), int(count), by, loaded_at.isoformat())
        for found, count, by, loaded_at in rows
    }


def table_of(settings: LoaderSettings, stream: str) -> tuple[str, str]:
    """(schema, table) that `stream` loads into."""
    schema, name = settings.target_schema(stream)
    return schema, stream_table_name(name)


def _ledger(schema: str) -> str:
    return f"{quote(schema)}.{quote(LEDGER)}"


def _create_ledger(connection: psycopg.Connection, schema: str) -> None:
    ensure_schema(connection, schema)
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {_ledger(schema)} (table_name TEXT NOT NULL, "
        "partition_id TEXT NOT NULL, stream TEXT NOT NULL, rows BIGINT NOT NULL, loaded_by TEXT, "
        "loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (table_name, partition_id))"
    )
