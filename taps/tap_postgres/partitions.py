"""One stream read in ranges of a column: what elt's partitioned syncs ask of tap-postgres.

elt splits a large stream into ranges of one column (docs/partitions.md). It plans them from
`column_bounds` (a library call: the column's kind and the smallest and largest value at or above a
lower bound, the stream's bookmark), and reads each range with a sync of its own whose tap config holds
`partition: {stream, column, lower, upper}`: the stream is then read `lower <= column < upper`, in no
particular order and with no bookmark of its own (`range_condition`), still through binary COPY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from elt.errors import EltError
from taps.tap_postgres.connection import connect
from taps.tap_postgres.discovery import Column, Table, discover
from taps.tap_postgres.pgtypes import Wire

# The column kinds a stream can be partitioned by, by how their values come over the wire.
KINDS = {
    Wire.INT16: "integer",
    Wire.INT32: "integer",
    Wire.INT64: "integer",
    Wire.DATE: "date",
    Wire.TIMESTAMP: "timestamp",
    Wire.TIMESTAMPTZ: "timestamptz",
}


@dataclass(frozen=True)
class ColumnBounds:
    """The range of a column's values among a stream's rows (None, None: no row)."""

    stream: str
    column: str
    kind: str  # integer | date | timestamp | timestamptz
    minimum: Any  # int, datetime.date or datetime.datetime (UTC-aware for timestamptz)
    maximum: Any


def column_bounds(
    config: Mapping[str, Any], stream: str, column: str, *, at_least: Any = None
) -> ColumnBounds:
    """The smallest and largest value of `column` among the rows of `stream` whose value is at or
    above `at_least` (all rows when None), as the tap would read them (`custom_where_clauses` apply)."""
    try:
        conn = connect(config)
    except psycopg.OperationalError as exc:
        raise EltError(f"tap-postgres: cannot connect to PostgreSQL: {str(exc).strip()}") from exc
    with conn:
        table = _table(conn, config, stream)
        found = partition_column(table, column)
        kind = KINDS[found.type.wire]
        name = sql.Identifier(column).as_string(conn)
        source = sql.Identifier(table.schema, table.name).as_string(conn)
        conditions = [f"({clause})" for clause in custom_where_clauses(config, stream)]
        params: list[Any] = []
        if at_least is not None:
            conditions.append(f"{name} >= CAST(%s AS {found.cast_type})")
            params.append(str(at_least))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        row = conn.execute(f"SELECT min({name}), max({name}) FROM {source}{where}", params).fetchone()
    minimum, maximum = row if row is not None else (None, None)
    return ColumnBounds(stream, column, kind, minimum, maximum)


def partition_column(table: Table, name: str) -> Column:
    """The column of `table` a stream is partitioned by; EltError if it has no such column or one of a
    type that cannot be cut into ranges."""
    column = table.column(name)
    if column is None:
        raise EltError(
            f"tap-postgres: stream '{table.stream_name}' has no column '{name}' to partition by",
            hint=f"columns: {', '.join(c.name for c in table.columns)}",
        )
    if column.type.wire not in KINDS:
        usable = [c.name for c in table.columns if c.type.wire in KINDS]
        raise EltError(
            f"tap-postgres: stream '{table.stream_name}': column '{name}' is {column.cast_type}; partitions "
            "are ranges of an integer, date or timestamp column",
            hint=f"columns that can be: {', '.join(usable) or 'none'}",
        )
    return column


def range_condition(conn: Any, column: Column, partition: Mapping[str, Any]) -> str:
    """The SQL condition `lower <= column < upper` of a partition, its bounds cast to the column's type."""
    name = sql.Identifier(column.name).as_string(conn)
    lower = sql.Literal(str(partition["lower"])).as_string(conn)
    upper = sql.Literal(str(partition["upper"])).as_string(conn)
    return f"{name} >= CAST({lower} AS {column.cast_type}) AND {name} < CAST({upper} AS {column.cast_type})"


def custom_where_clauses(config: Mapping[str, Any], stream: str) -> list[str]:
    """`stream_options.<stream>.custom_where_clauses`, without blank ones."""
    options = (config.get("stream_options") or {}).get(stream) or {}
    return [
        str(clause).strip() for clause in options.get("custom_where_clauses") or [] if str(clause).strip()
    ]


def _table(conn: psycopg.Connection[Any], config: Mapping[str, Any], stream: str) -> Table:
    schemas = config.get("filter_schemas") or None
    tables = discover(conn, schemas)
    for table in tables:
        if table.stream_name == stream:
            return table
    known = sorted(table.stream_name for table in tables)
    shown = ", ".join(known[:20]) + (", …" if len(known) > 20 else "")
    raise EltError(
        f"tap-postgres: no table or view of database '{conn.info.dbname}' is stream '{stream}'",
        hint=f"streams are named <schema>-<table>: {shown or 'none found'}",
    )
