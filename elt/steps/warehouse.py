"""Where python, sql and export steps read and write: the project's warehouses, and values fit for JSON.

The warehouse of the environment in force (`environment_warehouse`) is where dbt builds: PostgreSQL when
the `dbt` utility's settings say `target: postgres` (its host/port/user/password/dbname and schema, the
values `elt.dbt.dbt_env` gives dbt), else the DuckDB file dbt reads (`elt.dbt.warehouse_path`: the dbt
config's `path`, else the DuckDB target's, else `.elt/warehouse.duckdb`). Another PostgreSQL database is
named by a loader of `elt.yml` whose built-in is target-postgres (its host/port/user/password/database or
sqlalchemy_url), or by a DSN.

`read_table` and `write_table` move Arrow tables in and out of that warehouse, whichever it is;
`open_reader` streams a query's rows as Arrow batches (from PostgreSQL through a server-side cursor).
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa

from elt.dbt import dbt_env, warehouse_path
from elt.errors import PluginError, RunError
from elt.plugins import find_plugin
from elt.project import Project

# DuckDB lets one process at a time open a file for writing; a step that finds the warehouse held by a
# parallel step (or a sync) waits for it this long before failing.
LOCK_WAIT_SECONDS = 120.0

VALUE_ROW_CAP = 1000  # rows of a result kept as a step's `value`


def dbt_schema(project: Project) -> str:
    """The schema dbt builds the project's models into, in the environment in force."""
    return dbt_env(project)["ELT_DBT_SCHEMA"]


def duckdb_file(project: Project, target: str | None = None) -> Path:
    """The DuckDB file of loader `target` (a target-duckdb), else the warehouse dbt reads."""
    if not target:
        return warehouse_path(project)
    plugin = find_plugin(project, target, "loaders")
    path = plugin.config.get("path") or plugin.config.get("filepath") or ".elt/warehouse.duckdb"
    resolved = Path(str(path))
    return resolved if resolved.is_absolute() else project.root / resolved


def postgres_conninfo(project: Project, target: str) -> str:
    """The libpq connection string of loader `target`, which must be a target-postgres."""
    from targets.target_postgres.settings import connection_string

    plugin = find_plugin(project, target, "loaders")
    if plugin.builtin != "target-postgres":
        raise PluginError(
            f"{project.where(plugin.path)}: loader '{target}' is not a target-postgres "
            f"(it is {plugin.builtin or 'not a built-in connector'})",
            hint="name a loader whose `name` or `inherit_from` is target-postgres, or give `dsn:`",
        )
    return connection_string(plugin.config)


def database_of(project: Project, options: dict[str, Any]) -> tuple[str, str]:
    """(`duckdb`, file) or (`postgres`, conninfo) for a step's `dsn:` / `target:` options; without
    either, the warehouse of the environment in force."""
    if options.get("dsn"):
        return "postgres", str(options["dsn"])
    target = options.get("target")
    if target:
        plugin = find_plugin(project, str(target), "loaders")
        if plugin.builtin == "target-postgres":
            return "postgres", postgres_conninfo(project, str(target))
        if plugin.builtin == "target-duckdb":
            return "duckdb", str(duckdb_file(project, str(target)))
        raise PluginError(
            f"{project.where(plugin.path)}: loader '{target}' is neither a target-duckdb nor a "
            "target-postgres, so a step cannot run SQL against it",
            hint="name a loader that inherits from target-duckdb or target-postgres, or give `dsn:`",
        )
    warehouse = environment_warehouse(project)
    return warehouse.kind, warehouse.address


@dataclass(frozen=True)
class Warehouse:
    """The database dbt builds into in the environment in force."""

    kind: str  # duckdb | postgres
    address: str  # the DuckDB file, or a libpq connection string
    schema: str  # the schema dbt builds models into

    @property
    def default_schema(self) -> str:
        """The schema a table outside dbt's lands in when none is named: `main`, or `public`."""
        return "public" if self.kind == "postgres" else "main"

    def describe(self) -> str:
        """Where it is, for logs and summaries (no password)."""
        if self.kind == "duckdb":
            return self.address
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(self.address)
        return f"postgres://{params.get('host', '')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def environment_warehouse(project: Project) -> Warehouse:
    """The warehouse of the environment in force: where dbt builds the project's models."""
    from psycopg.conninfo import make_conninfo

    env = dbt_env(project)
    if env["ELT_DBT_TARGET"] == "postgres":
        params = {
            "host": env["ELT_PG_HOST"],
            "port": env["ELT_PG_PORT"],
            "user": env["ELT_PG_USER"],
            "password": env["ELT_PG_PASSWORD"],
            "dbname": env["ELT_PG_DBNAME"],
            "application_name": "elt",
        }
        conninfo = make_conninfo(**{k: v for k, v in params.items() if v})
        return Warehouse("postgres", conninfo, env["ELT_DBT_SCHEMA"])
    return Warehouse("duckdb", str(warehouse_path(project)), env["ELT_DBT_SCHEMA"])


def open_duckdb(
    path: Path | str, log: Callable[[str], None] | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A connection to the DuckDB file, waiting while another process holds its lock.

    Read-only connections of several processes can share the file (two exports at once), not with a
    process that writes it.
    """
    path = Path(path)
    if read_only and not path.is_file():
        raise RunError(
            f"the DuckDB warehouse {path} does not exist yet",
            hint="run the sync or dbt step that builds it first (needs:)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.1
    told = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise RunError(
                    f"cannot open the DuckDB warehouse {path}: {error}",
                    hint="another process (a sync, dbt, a DuckDB shell) holds it; run the steps "
                    "one after the other (needs:) or close that process",
                ) from error
            if log is not None and not told:
                log(f"waiting for the DuckDB warehouse {path}: another process holds it")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        con.execute("SET TimeZone = 'UTC'")
        return con


def quote_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (the same rule in DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def json_safe(value: Any) -> Any:
    """`value` with dates, decimals, UUIDs, bytes and numpy scalars made JSON values; TypeError otherwise."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID | Path | dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    raise TypeError(f"a {type(value).__name__} is not a JSON value")


# Reading: a query's rows as Arrow batches, from either kind of warehouse.


class WarehouseReader:
    """An open read connection to a warehouse; `batches` streams a query's rows as Arrow batches."""

    placeholder = "?"

    def tables(self) -> list[tuple[str, str]]:
        """(schema, name) of every table and view."""
        raise NotImplementedError

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        """Each column of the table and its SQL type, as a cast to it is written."""
        raise NotImplementedError

    def batches(self, query: str, params: list[Any], batch_rows: int) -> pa.RecordBatchReader:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DuckDBReader(WarehouseReader):
    def __init__(self, path: Path | str, log: Callable[[str], None] | None) -> None:
        self.con = open_duckdb(path, log, read_only=True)

    def tables(self) -> list[tuple[str, str]]:
        rows = self.con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database()"
        ).fetchall()
        return [(str(s), str(t)) for s, t in rows]

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        return {str(name): str(kind) for name, kind in rows}

    def batches(self, query: str, params: list[Any], batch_rows: int) -> pa.RecordBatchReader:
        reader = self.con.sql(query, params=params).to_arrow_reader(batch_rows)
        if reader is None:
            raise RunError(f"DuckDB returned no result for `{query[:80]}`")
        return reader

    def close(self) -> None:
        self.con.close()


# PostgreSQL type OID -> Arrow type of its values (json, jsonb and uuid arrive as text).
_PG_ARROW_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),
    700: pa.float32(),
    701: pa.float64(),
    25: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
    19: pa.string(),
    2950: pa.string(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1186: pa.duration("us"),
    17: pa.binary(),
}
_PG_JSON_TYPES = (114, 3802)
_PG_NUMERIC = 1700
# NUMERIC without a declared precision has none to carry over; Arrow needs one.
UNCONSTRAINED_NUMERIC = pa.decimal128(38, 9)


class PostgresReader(WarehouseReader):
    """Reads through a server-side cursor: PostgreSQL sends `batch_rows` rows at a time."""

    placeholder = "%s"

    def __init__(self, conninfo: str) -> None:
        from psycopg.types.string import TextLoader

        try:
            self.conn = psycopg.connect(conninfo)
        except psycopg.Error as error:
            raise RunError(f"cannot connect to the PostgreSQL warehouse: {str(error).strip()}") from error
        for name in ("json", "jsonb", "uuid"):  # as their text, the value Arrow and COPY take
            self.conn.adapters.register_loader(name, TextLoader)
        self.conn.execute("SET TimeZone TO 'UTC'")

    def tables(self) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        return [(str(s), str(t)) for s, t in rows]

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [f"{quote_identifier(schema)}.{quote_identifier(table)}"],
        ).fetchall()
        return {str(name): str(kind) for name, kind in rows}

    def batches(self, query: str, params: list[Any], batch_rows: int) -> pa.RecordBatchReader:
        cursor = self.conn.cursor(name=f"elt_{uuid.uuid4().hex[:12]}")
        try:
            cursor.execute(query, params or None)
        except psycopg.Error as error:
            raise RunError(f"PostgreSQL refused `{query[:80]}`: {str(error).strip()}") from error
        schema = pa.schema([_pg_field(column) for column in cursor.description or []])

        def read() -> Iterator[pa.RecordBatch]:
            while rows := cursor.fetchmany(batch_rows):
                yield _pg_batch(rows, schema)
            cursor.close()

        return pa.RecordBatchReader.from_batches(schema, read())

    def close(self) -> None:
        self.conn.close()


def _pg_field(column: Any) -> pa.Field:
    oid = column.type_code
    if oid == _PG_NUMERIC:
        if column.precision is None:
            return pa.field(column.name, UNCONSTRAINED_NUMERIC)
        return pa.field(column.name, pa.decimal128(column.precision, column.scale or 0))
    if oid in _PG_JSON_TYPES:
        return pa.field(column.name, pa.string(), metadata={b"elt.json": b"1"})
    return pa.field(column.name, _PG_ARROW_TYPES.get(oid, pa.string()))


def _pg_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for index, field in enumerate(schema):
        values = [row[index] for row in rows]
        if pa.types.is_string(field.type):  # types without an Arrow twin (inet, arrays…) as their text
            values = [v if v is None or isinstance(v, str) else str(v) for v in values]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as error:
            raise RunError(
                f"column '{field.name}': a value does not fit {field.type}: {error}",
                hint="cast the column in the model to a type with a declared precision, e.g. numeric(18,4)",
            ) from error
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


@contextmanager
def open_reader(warehouse: Warehouse, log: Callable[[str], None] | None = None) -> Iterator[WarehouseReader]:
    """A reader of the warehouse, closed on leaving."""
    reader: WarehouseReader
    if warehouse.kind == "postgres":
        reader = PostgresReader(warehouse.address)
    else:
        reader = DuckDBReader(warehouse.address, log)
    try:
        yield reader
    finally:
        reader.close()


def resolve_table(
    tables: list[tuple[str, str]], spec: str, model_schema: str, default_schema: str = "main"
) -> tuple[str, str]:
    """(schema, table) of `spec` among `tables`: `schema.table`, or a bare name looked up in the schema
    dbt builds into, then `default_schema`, then wherever it is unique. RunError naming close matches
    when it is not there."""
    parts = [p.strip('"') for p in spec.strip().split(".")]
    if len(parts) >= 2:
        wanted = (parts[-2], parts[-1])
        if wanted in tables:
            return wanted
    else:
        found = [t for t in tables if t[1] == parts[0]]
        for preferred in (model_schema, default_schema):
            if (preferred, parts[0]) in found:
                return preferred, parts[0]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise RunError(
                f"table '{spec}' is in several schemas ({', '.join(s for s, _ in found)})",
                hint="write it as SCHEMA.TABLE",
            )
    names = [f"{s}.{t}" for s, t in tables]
    guess = difflib.get_close_matches(spec if "." in spec else f"{model_schema}.{spec}", names, n=3)
    raise RunError(
        f"no table or model '{spec}' in the warehouse",
        hint=f"did you mean {', '.join(guess)}?" if guess else "build it first (a dbt step in needs:)",
    )


_TABLE_NAME = re.compile(r'^\s*("[^"]+"|[\w$]+)(\s*\.\s*("[^"]+"|[\w$]+))?\s*$')


def read_table(project: Project, schema: str | None, name_or_sql: str, limit: int | None = None) -> pa.Table:
    """Rows of the environment's warehouse as an Arrow table: a table or model, or a query's result.

    `name_or_sql` is a table (`name`, or `schema.name`) or a SELECT. A bare name is looked up in `schema`
    when given, else as an export's source is (dbt's schema, then `main`/`public`, then wherever it is
    unique). `limit` keeps the first rows only. Column types are exact: PostgreSQL `numeric(p,s)` is
    decimal128(p,s), `timestamptz` a UTC timestamp, `bigint` int64. RunError for an unknown table.
    """
    warehouse = environment_warehouse(project)
    with open_reader(warehouse) as reader:
        if _TABLE_NAME.match(name_or_sql):
            spec = name_or_sql if "." in name_or_sql or not schema else f"{schema}.{name_or_sql}"
            found = resolve_table(reader.tables(), spec, warehouse.schema, warehouse.default_schema)
            query = f"SELECT * FROM {quote_identifier(found[0])}.{quote_identifier(found[1])}"
        else:
            query = name_or_sql.strip().rstrip(";")
        if limit is not None:
            query = f"SELECT * FROM ({query}) AS _elt_rows LIMIT {int(limit)}"
        stream = reader.batches(query, [], 100_000)
        return stream.read_all()


# Writing: an Arrow table replaces a warehouse table.


def write_table(project: Project, schema: str, name: str, table: Any) -> int:
    """Replace `schema.name` in the environment's warehouse with `table`, in one transaction; its rows.

    `table` is a pyarrow Table or RecordBatch, or a pandas DataFrame (its index is dropped). In DuckDB the
    table is created from the Arrow types; in PostgreSQL with the exact column types of target-postgres
    (decimal128(p,s) NUMERIC(p,s), int64 BIGINT, a timestamp with a zone TIMESTAMPTZ, string TEXT, …) and
    filled by binary COPY. An existing PostgreSQL table with the same columns and types is emptied and
    refilled, so views over it survive; otherwise it is dropped and created anew.
    """
    arrow = as_arrow_table(table)
    warehouse = environment_warehouse(project)
    if warehouse.kind == "postgres":
        return _write_postgres(warehouse.address, schema, name, arrow)
    return write_duckdb_table(warehouse.address, schema, name, arrow)


def write_duckdb_table(
    path: Path | str, schema: str, name: str, table: pa.Table, log: Callable[[str], None] | None = None
) -> int:
    """Replace `schema.name` in the DuckDB file with the Arrow table, in one transaction; its rows."""
    con = open_duckdb(path, log)
    try:
        qualified = f"{quote_identifier(schema)}.{quote_identifier(name)}"
        con.register("_elt_written", table)
        con.execute("BEGIN")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        con.execute(f"CREATE OR REPLACE TABLE {qualified} AS SELECT * FROM _elt_written")
        con.execute("COMMIT")
    finally:
        con.close()
    return int(table.num_rows)


def as_arrow_table(value: Any) -> pa.Table:
    """A pyarrow Table for a Table, RecordBatch or pandas DataFrame; TypeError for anything else."""
    if isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(f"expected a pyarrow Table or a pandas DataFrame, got {type(value).__name__}")


def _write_postgres(conninfo: str, schema: str, name: str, table: pa.Table) -> int:
    from targets.target_postgres.types import arrow_column_type, catalog_type

    table = postgres_ready(table)
    qualified = f"{quote_identifier(schema)}.{quote_identifier(name)}"
    wanted = [(field.name, arrow_column_type(field)) for field in table.schema]
    try:
        with psycopg.connect(conninfo) as conn, conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            existing = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                [qualified],
            ).fetchall()
            if [(n, catalog_type(t)) for n, t in existing] == wanted:
                conn.execute(f"TRUNCATE {qualified}")
            else:
                if existing:
                    conn.execute(f"DROP TABLE {qualified}")
                columns = ", ".join(f"{quote_identifier(n)} {t}" for n, t in wanted)
                conn.execute(f"CREATE TABLE {qualified} ({columns})")
            rows, _ = copy_batches(conn, qualified, table.schema, iter(table.to_batches()))
    except psycopg.errors.DependentObjectsStillExist as error:
        raise RunError(
            f"cannot replace {schema}.{name} in PostgreSQL: its columns changed and views depend on it",
            hint="drop the dependent views (dbt rebuilds them), or keep the table's columns",
        ) from error
    except psycopg.Error as error:
        raise RunError(f"writing {schema}.{name} to PostgreSQL failed: {str(error).strip()}") from error
    return rows


def postgres_ready(table: pa.Table) -> pa.Table:
    """The table with nanosecond times (pandas') cut to microseconds, PostgreSQL's precision."""
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.unit == "ns":
            field = field.with_type(pa.timestamp("us", tz=kind.tz))
        elif pa.types.is_time64(kind) and kind.unit == "ns":
            field = field.with_type(pa.time64("us"))
        fields.append(field)
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return table if schema.equals(table.schema) else table.cast(schema, safe=False)


def copy_batches(
    conn: psycopg.Connection[Any], qualified: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch]
) -> tuple[int, int]:
    """Binary COPY the batches into `qualified` (columns of exactly `arrow_column_type`'s types);
    (rows, bytes sent)."""
    from targets.target_postgres.binary_copy import SIGNATURE, TRAILER, encode_rows

    names = ", ".join(quote_identifier(field.name) for field in schema)
    rows = size = 0
    with conn.cursor().copy(f"COPY {qualified} ({names}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(SIGNATURE)
        for batch in batches:
            data = encode_rows(batch)
            copy.write(data)
            rows += batch.num_rows
            size += len(data)
        copy.write(TRAILER)
    return rows, size
