"""The tables and views of a database, with their columns' types and primary keys, from pg_catalog."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from taps.tap_postgres.pgtypes import DEFAULT_OPTIONS, ColumnType, TypeOptions, column_type

# Ordinary and partitioned tables, views, materialized views, foreign tables.
RELATION_KINDS = ("r", "p", "v", "m", "f")
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")

_COLUMNS = """
SELECT n.nspname, c.relname, c.relkind, a.attname, a.attnotnull,
       base.typname, base.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       format_type(base.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END),
       element.typname, element.typtype
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type element ON element.oid = base.typelem AND base.typcategory = 'A'
WHERE c.relkind = ANY(%(kinds)s)
  AND n.nspname <> ALL(%(system)s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
ORDER BY n.nspname, c.relname, a.attnum
"""

_PRIMARY_KEYS = """
SELECT n.nspname, c.relname, array_agg(a.attname ORDER BY k.position)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND (%(schemas)s::text[] IS NULL OR n.nspname = ANY(%(schemas)s))
GROUP BY n.nspname, c.relname
"""


@dataclass(frozen=True)
class Column:
    """A column of a table or view, and what it is read as."""

    name: str
    type: ColumnType
    nullable: bool
    cast_type: str
    """Its type (a domain's base type) as format_type() spells it: what a bookmark is cast to."""


@dataclass(frozen=True)
class Table:
    """A table or view: a stream named `<schema>-<table>`, as MeltanoLabs tap-postgres names them."""

    schema: str
    name: str
    is_view: bool
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def stream_name(self) -> str:
        return f"{self.schema}-{self.name}"

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)

    def json_schema(self) -> dict[str, Any]:
        """The stream's JSON Schema: one property per column, typed exactly, with `x-sql-datatype`."""
        properties = {
            column.name: column.type.property_schema(column.nullable and column.name not in self.primary_key)
            for column in self.columns
        }
        return {"type": "object", "properties": properties}

    @property
    def replication_key_candidates(self) -> list[str]:
        """Columns that order rows well enough to sync by: integers, numerics, dates and timestamps."""
        return [column.name for column in self.columns if column.type.replication_key]


def discover(
    conn: psycopg.Connection[Any],
    schemas: Sequence[str] | None = None,
    options: TypeOptions = DEFAULT_OPTIONS,
    kinds: Collection[str] = RELATION_KINDS,
) -> list[Table]:
    """Every table and view of the connection's database (in `schemas`, if given) that has columns."""
    params = {
        "kinds": list(kinds),
        "system": list(SYSTEM_SCHEMAS),
        "schemas": list(schemas) if schemas else None,
    }
    with conn.cursor() as cursor:
        keys = {
            (schema, name): tuple(columns) for schema, name, columns in cursor.execute(_PRIMARY_KEYS, params)
        }
        found: dict[tuple[str, str], tuple[bool, list[Column]]] = {}
        for row in cursor.execute(_COLUMNS, params):
            (
                schema,
                name,
                kind,
                column,
                not_null,
                typname,
                typtype,
                typmod,
                formatted,
                element,
                element_typtype,
            ) = row
            kind_type = column_type(
                typname,
                typtype,
                formatted,
                typmod,
                element=element,
                element_typtype=element_typtype,
                options=options,
            )
            entry = found.setdefault((schema, name), (kind in ("v", "m"), []))
            entry[1].append(Column(column, kind_type, nullable=not not_null, cast_type=formatted))
    return [
        Table(schema, name, is_view, tuple(columns), keys.get((schema, name), ()))
        for (schema, name), (is_view, columns) in found.items()
    ]
