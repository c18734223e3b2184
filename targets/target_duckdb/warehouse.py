"""The DuckDB side of target-duckdb: open the database, shape a stream's table, load one batch.

Every batch is one transaction: the table's DDL (create, add columns, widen types), the rows it
replaces (upsert, overwrite) and the INSERT that reads the batch's Arrow table. Either all of it is
committed or none of it is.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from targets.target_duckdb.batches import (
    RECEIVED_AT,
    ROW,
    TIME_EXTRACTED,
    batch_column,
    expected_type,
    value_error,
)
from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.settings import UPSERT, LoaderSettings
from targets.target_duckdb.types import Column, catalog_type, widen

LOADED_AT = "_elt_loaded_at"
SYNCED_AT = "_elt_synced_at"
_BATCH_VIEW = "_elt_batch"


@dataclass(frozen=True)
class TableSpec:
    """Where and how a stream is loaded."""

    stream: str
    schema: str
    name: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    load_method: str
    hard_delete: bool = False

    @property
    def qualified(self) -> str:
        """`"schema"."table"`, quoted for SQL."""
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def key(self) -> tuple[str, str]:
        """The table's identity (DuckDB names ignore case)."""
        return (self.schema.lower(), self.name.lower())


@dataclass(frozen=True)
class BatchResult:
    """What loading one batch did."""

    rows_in_batch: int
    rows_inserted: int
    duplicates_merged: int


DEFAULT_MEMORY_LIMIT = "256MB"  # the `settings: {memory_limit: …}` of the config overrides it


def open_database(settings: LoaderSettings) -> duckdb.DuckDBPyConnection:
    """The process's one connection to the warehouse file (closed at exit, releasing its lock)."""
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(settings.path))
    except duckdb.Error as error:
        raise LoadError(
            f"cannot open DuckDB file {settings.path}: {error}",
            hint="is another process (a dbt run, a DuckDB shell) holding it open?",
        ) from error
    atexit.register(con.close)
    # Date-times without an offset are read as UTC, whatever the machine's time zone.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB's default memory limit is 80% of the machine: a load would keep every block it wrote
    # cached, and the process grow with the table (10M rows: 792 MB, against 447 MB for 1M). A loader
    # streams batches; this bounds it (spilling to the temp directory if a batch's work needs more).
    con.execute(f"SET memory_limit = {literal(DEFAULT_MEMORY_LIMIT)}")
    for name, value in settings.duckdb_settings.items():
        con.execute(f"SET {name} = {literal(value)}")
    return con


def load_batch(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, batch: pa.Table, *, empty_table_first: bool
) -> BatchResult:
    """Load one batch in one transaction; on any failure nothing of it is written.

    `empty_table_first` deletes the table's rows in the same transaction (the first batch of an
    overwrite run). Upsert deletes the rows whose key is in the batch and inserts, for each key, the
    batch's last record.
    """
    con.register(_BATCH_VIEW, batch)
    try:
        con.begin()
        try:
            table_types = prepare_table(con, spec)
            if empty_table_first:
                _rows(con, f"DELETE FROM {spec.qualified}")
            duplicates = 0
            if spec.load_method == UPSERT:
                duplicates = _delete_batch_keys(con, spec, table_types, batch.num_rows)
            inserted = _insert(con, spec, table_types, duplicates > 0)
            con.commit()
        except duckdb.Error as error:
            _rollback(con)
            raise _explain(con, spec, _planned_types(con, spec), error) from error
        except BaseException:  # e.g. SystemExit from a signal: still nothing of the batch stays
            _rollback(con)
            raise
    finally:
        con.unregister(_BATCH_VIEW)
    return BatchResult(batch.num_rows, inserted, duplicates)


def load_file_batch(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, data: pa.Table, *, empty_table_first: bool
) -> BatchResult:
    """Load a columnar batch (a BATCH message's file) in one transaction, like `load_batch`.

    `spec`'s columns carry the file's exact types; the batch's columns are matched by name, a
    property missing from the file is NULL, and the file's order decides which row of a key wins.
    """
    present = set(data.column_names)
    arrays = [data.column(c.name) if c.name in present else pa.nulls(data.num_rows) for c in spec.columns]
    # the row numbers from a numpy buffer: pa.array() would import pandas, 0.2 s of a small sync
    rows = np.arange(data.num_rows, dtype=np.int64)
    arrays.append(pa.Array.from_buffers(pa.int64(), data.num_rows, [None, pa.py_buffer(rows)]))
    arrays.append(pa.nulls(data.num_rows, pa.string()))
    arrays.append(pa.nulls(data.num_rows, pa.float64()))
    names = [batch_column(i) for i in range(len(spec.columns))] + [ROW, TIME_EXTRACTED, RECEIVED_AT]
    return load_batch(
        con, spec, pa.Table.from_arrays(arrays, names=names), empty_table_first=empty_table_first
    )


def empty_table(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
    """Delete every row of the stream's table, if it exists (an overwrite run that sent no rows)."""
    if _existing_columns(con, spec):
        _rows(con, f"DELETE FROM {spec.qualified}")


def prepare_table(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> dict[str, str]:
    """Create the table, add new columns and widen changed ones; return each column's table type.

    Columns no longer in the stream's schema are kept (new rows leave them NULL).
    """
    existing = _existing_columns(con, spec)
    metadata = [Column(LOADED_AT, "TIMESTAMPTZ"), Column(SYNCED_AT, "TIMESTAMPTZ")]
    if not existing:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(spec.schema)}")
        definitions = ", ".join(f"{quote(c.name)} {c.type}" for c in (*spec.columns, *metadata))
        con.execute(f"CREATE TABLE {spec.qualified} ({definitions})")
        return {column.name: column.type for column in spec.columns}

    types: dict[str, str] = {}
    for column in (*spec.columns, *metadata):
        current = existing.get(column.name.lower())
        if current is None:
            con.execute(f"ALTER TABLE {spec.qualified} ADD COLUMN {quote(column.name)} {column.type}")
            types[column.name] = column.type
            continue
        wider = widen(current, column.type)
        if wider != current:
            con.execute(f"ALTER TABLE {spec.qualified} ALTER COLUMN {quote(column.name)} TYPE {wider}")
        types[column.name] = wider
    return types


def _planned_types(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> dict[str, str]:
    """Each column's type as `prepare_table` would make it (the table as it is, widened)."""
    existing = _existing_columns(con, spec)
    return {
        column.name: widen(existing.get(column.name.lower(), column.type), column.type)
        for column in spec.columns
    }


def quote(identifier: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: Any) -> str:
    """A DuckDB literal for a setting's value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    # A failed COMMIT has already ended the transaction; the error that matters is the first one.
    with contextlib.suppress(duckdb.TransactionException):
        con.rollback()


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    # Fetch to the end: DuckDB 2 refuses other work on a connection with an unfinished result.
    return con.execute(sql, params).fetchall()


def _existing_columns(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> dict[str, str]:
    rows = _rows(
        con,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?) "
        "AND table_catalog = current_database() ORDER BY ordinal_position",
        [spec.schema, spec.name],
    )
    return {name.lower(): catalog_type(data_type) for name, data_type in rows}


def _cast(spec: TableSpec, table_types: Mapping[str, str], index: int, alias: str = "b") -> str:
    column = spec.columns[index]
    return f"CAST({alias}.{batch_column(index)} AS {table_types[column.name]})"


def _key_indexes(spec: TableSpec) -> list[int]:
    names = [column.name for column in spec.columns]
    return [names.index(key) for key in spec.keys]


def _delete_batch_keys(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, table_types: Mapping[str, str], rows: int
) -> int:
    """Delete the table's rows whose key is in the batch; return how many batch rows repeat one."""
    keys = _key_indexes(spec)
    key_exprs = ", ".join(f"{_cast(spec, table_types, i)} AS k{n}" for n, i in enumerate(keys))
    match = " AND ".join(
        f"t.{quote(spec.columns[i].name)} IS NOT DISTINCT FROM k.k{n}" for n, i in enumerate(keys)
    )
    distinct_keys = f"(SELECT DISTINCT {key_exprs} FROM {_BATCH_VIEW} AS b)"
    _rows(con, f"DELETE FROM {spec.qualified} AS t USING {distinct_keys} AS k WHERE {match}")
    ((distinct,),) = _rows(con, f"SELECT count(*) FROM {distinct_keys}")
    return rows - int(distinct)


def _insert(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, table_types: Mapping[str, str], duplicates: bool
) -> int:
    """Insert the batch; with `duplicates` (an upsert batch that repeats a key), each key's last row.

    The window that picks last rows costs more than the insert itself (1M rows: 0.86 s against
    0.34 s, and 0.4 s more at the next checkpoint), so batches without repeated keys go without it.
    """
    targets = [quote(column.name) for column in spec.columns] + [quote(LOADED_AT), quote(SYNCED_AT)]
    values = [_cast(spec, table_types, i) for i in range(len(spec.columns))]
    values.append("current_timestamp")
    values.append(
        f"coalesce(CAST(b.{TIME_EXTRACTED} AS TIMESTAMPTZ), to_timestamp(b.{RECEIVED_AT}), current_timestamp)"
    )
    source = f"{_BATCH_VIEW} AS b"
    where = ""
    if spec.load_method == UPSERT:
        if duplicates:
            partition = ", ".join(batch_column(i) for i in _key_indexes(spec))
            source = (
                f"(SELECT * FROM {_BATCH_VIEW} QUALIFY row_number() OVER "
                f"(PARTITION BY {partition} ORDER BY {ROW} DESC) = 1) AS b"
            )
        deleted = _deleted_at_index(spec)
        if spec.hard_delete and deleted is not None:
            where = f" WHERE b.{batch_column(deleted)} IS NULL"
    ((inserted,),) = _rows(
        con,
        f"INSERT INTO {spec.qualified} ({', '.join(targets)}) "
        f"SELECT {', '.join(values)} FROM {source}{where}",
    )
    return int(inserted)


def _deleted_at_index(spec: TableSpec) -> int | None:
    for index, column in enumerate(spec.columns):
        if column.name == "_sdc_deleted_at":
            return index
    return None


def _explain(
    con: duckdb.DuckDBPyConnection,
    spec: TableSpec,
    table_types: Mapping[str, str],
    error: duckdb.Error,
) -> LoadError:
    """The batch's first value that does not cast to its column's type, else DuckDB's error."""
    checks = [
        (spec.columns[i].name, f"b.{batch_column(i)}", table_types[spec.columns[i].name])
        for i in range(len(spec.columns))
    ]
    checks.append(("time_extracted", f"b.{TIME_EXTRACTED}", "TIMESTAMPTZ"))
    for name, expr, duckdb_type in checks:
        try:
            bad = _rows(
                con,
                f"SELECT {expr}, b.{ROW} FROM {_BATCH_VIEW} AS b "
                f"WHERE {expr} IS NOT NULL AND TRY_CAST({expr} AS {duckdb_type}) IS NULL LIMIT 1",
            )
        except duckdb.Error:
            continue
        if bad:
            value, row = bad[0]
            return value_error(spec.stream, name, value, expected_type(duckdb_type), row)
    return LoadError(
        f"stream '{spec.stream}': loading a batch into {spec.schema}.{spec.name} failed: {error}; "
        "nothing of this batch was written"
    )
