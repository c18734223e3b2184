"""The tables and views of a MySQL/MariaDB server, from `information_schema`, in four queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pymysql

from taps.tap_mysql.columns import Column

SYSTEM_DATABASES = ("information_schema", "performance_schema", "mysql", "sys")
# MariaDB's system-versioned tables are tables; sequences are not read.
TABLE_TYPES = {"BASE TABLE": False, "SYSTEM VERSIONED": False, "VIEW": True}


@dataclass(frozen=True)
class Table:
    """A table or view: its columns in order and its primary key."""

    database: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    is_view: bool = False
    row_count: int | None = None
    """The server's estimate (`information_schema.TABLES.TABLE_ROWS`)."""

    @property
    def stream_name(self) -> str:
        """`<database>-<table>`, as the Singer MySQL taps name their streams."""
        return f"{self.database}-{self.name}"


def discover_tables(connection: pymysql.Connection, databases: Sequence[str] = ()) -> list[Table]:
    """The tables and views of `databases` (every non-system database when empty), sorted by name."""
    if databases:
        where, params = f"TABLE_SCHEMA IN ({', '.join(['%s'] * len(databases))})", tuple(databases)
    else:
        where = f"TABLE_SCHEMA NOT IN ({', '.join(['%s'] * len(SYSTEM_DATABASES))})"
        params = SYSTEM_DATABASES
    tables = _rows(
        connection,
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, TABLE_ROWS FROM information_schema.TABLES "
        f"WHERE {where}",
        params,
    )
    columns: dict[tuple[str, str], list[Column]] = defaultdict(list)
    json_columns = _mariadb_json_columns(connection, where, params)
    for schema, table, name, data_type, column_type, precision, scale, length, nullable in _rows(
        connection,
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, "
        "NUMERIC_SCALE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE FROM information_schema.COLUMNS "
        f"WHERE {where} ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        params,
    ):
        is_json = (schema, table, name) in json_columns
        columns[(schema, table)].append(
            Column(
                name=name,
                data_type="json" if is_json else data_type.lower(),
                column_type="json" if is_json else column_type.lower(),
                nullable=nullable == "YES",
                precision=_int(precision),
                scale=_int(scale),
                max_length=_int(length),
            )
        )
    keys: dict[tuple[str, str], list[str]] = defaultdict(list)
    for schema, table, name in _rows(
        connection,
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
        f"WHERE CONSTRAINT_NAME = 'PRIMARY' AND {where} ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        params,
    ):
        keys[(schema, table)].append(name)
    found = [
        Table(
            database=schema,
            name=table,
            columns=tuple(columns[(schema, table)]),
            primary_key=tuple(keys[(schema, table)]),
            is_view=TABLE_TYPES[table_type],
            row_count=_int(rows),
        )
        for schema, table, table_type, rows in tables
        if table_type in TABLE_TYPES and columns[(schema, table)]
    ]
    return sorted(found, key=lambda t: (t.database, t.name))


def _mariadb_json_columns(
    connection: pymysql.Connection, where: str, params: Sequence[str]
) -> set[tuple[str, str, str]]:
    """MariaDB's JSON columns: longtext with a `json_valid(col)` check (MySQL reports `json` itself)."""
    if "mariadb" not in connection.get_server_info().lower():
        return set()
    found = set()
    for schema, table, name, clause in _rows(
        connection,
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
        f"FROM information_schema.CHECK_CONSTRAINTS WHERE LEVEL = 'Column' AND "
        f"{where.replace('TABLE_SCHEMA', 'CONSTRAINT_SCHEMA')}",
        params,
    ):
        if clause.replace(" ", "").lower() == f"json_valid(`{name.replace('`', '``')}`)".lower():
            found.add((schema, table, name))
    return found


def _rows(connection: pymysql.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, tuple(params))
        # MySQL 8 hands some information_schema columns over as bytes.
        return [tuple(_text(value) for value in row) for row in cursor.fetchall()]


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
