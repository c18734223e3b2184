"""The `export` step: a table or dbt model of the environment's warehouse out to Parquet, CSV or PostgreSQL.

The source is read from the warehouse dbt builds into in the environment in force
(`warehouse.environment_warehouse`): the DuckDB file, or PostgreSQL. `spec` names the table:
`schema.table`, or a bare name looked up in the schema dbt builds into, then in `main` (DuckDB) or
`public` (PostgreSQL), then anywhere it is unique. Rows stream as Arrow batches into the destination
(from PostgreSQL through a server-side cursor, never all at once):

- `to: parquet|csv` with `path:` — a file, or a folder (ending in `/`) that gets `TABLE.parquet`; an
  `s3://bucket/key` path is written locally, then uploaded with boto3 (option `s3:` with
  `aws_access_key_id`, `aws_secret_access_key`, `endpoint_url`, `region`, else boto3's usual chain).
  A file appears only complete: it is written next to its place, then renamed.
- `to: postgres` with `target:` (a target-postgres loader) or `dsn:`, and `table:` (`schema.table`, schema
  `public` by default) — one transaction: the table is created with the exact column types if missing,
  emptied (full) or kept (incremental), and filled by binary COPY.

`mode: incremental` with `watermark: COLUMN` exports only the rows whose column is above the largest
value exported before to the same destination (kept in the system database, table
`export_watermarks`). Each incremental run to files writes one new file of its rows into the folder. The
watermark is saved after the data is written, so a crash between the two exports those rows again.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from elt import systemdb
from elt.errors import ProjectError, RunError
from elt.runs import now
from elt.steps import StepContext, StepOutput
from elt.steps.warehouse import (
    WarehouseReader,
    copy_batches,
    environment_warehouse,
    open_reader,
    postgres_conninfo,
    quote_identifier,
    resolve_table,
)

FORMATS = ("parquet", "csv", "postgres")
BATCH_ROWS = 100_000

WATERMARK_SCHEMA = """
CREATE TABLE IF NOT EXISTS export_watermarks (
    export_id  TEXT PRIMARY KEY,  -- ENVIRONMENT:SOURCE->DESTINATION
    watermark_column TEXT NOT NULL,  -- the column the value is of
    watermark  TEXT NOT NULL,     -- the largest value exported, as text DuckDB casts back
    run_id     TEXT,
    updated_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Written:
    """What a destination received."""

    rows: int
    bytes: int
    location: str | None  # the file or table written; None when nothing was


def run_export(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Export the warehouse table `spec` as `options` say; rows and bytes are what was written.

    Raises ProjectError for missing or contradictory options, RunError when the table is unknown or
    the destination cannot be written.
    """
    to = str(options.get("to") or "")
    if to not in FORMATS:
        raise ProjectError(
            f"export step '{ctx.step}': `to:` must be one of {', '.join(FORMATS)} (got {to or 'nothing'})"
        )
    mode = str(options.get("mode") or "full")
    column = options.get("watermark")
    if mode not in ("full", "incremental"):
        raise ProjectError(f"export step '{ctx.step}': `mode:` must be full or incremental (got {mode})")
    if mode == "incremental" and not column:
        raise ProjectError(
            f"export step '{ctx.step}': `mode: incremental` needs `watermark: COLUMN`",
            hint="name a column that grows with new rows, e.g. updated_at or an id",
        )
    warehouse = environment_warehouse(ctx.project)
    with open_reader(warehouse, ctx.log) as reader:
        try:
            schema, table = resolve_table(reader.tables(), spec, warehouse.schema, warehouse.default_schema)
        except RunError as error:
            raise RunError(f"export: {error.message}", hint=error.hint) from error
        destination = _destination(to, options, table, ctx)
        # Keyed by the destination as written in elt.yml, so a moved project keeps its watermarks.
        key = destination if to == "postgres" else str(options.get("path"))
        export_id = f"{ctx.project.environment or ''}:{schema}.{table}->{to}:{key}"
        since = _last_watermark(ctx, export_id, str(column)) if mode == "incremental" else None
        query, params = _select(reader, schema, table, str(column) if column else None, since)
        stream = reader.batches(query, params, BATCH_ROWS)
        tracker = _Watermark(str(column)) if column else None
        batches = tracker.follow(stream) if tracker else iter(stream)
        written = _write(to, destination, stream.schema, batches, options, table, mode, ctx)
    if tracker is not None and tracker.value is not None and mode == "incremental":
        _save_watermark(ctx, export_id, str(column), tracker.value)
    ctx.log(f"exported {written.rows} rows of {schema}.{table} to {written.location or destination}")
    summary: dict[str, Any] = {
        "source": f"{schema}.{table}",
        "to": to,
        "destination": written.location or destination,
        "mode": mode,
    }
    if mode == "incremental":
        summary.update(watermark_column=column, since=since, watermark=tracker.value if tracker else None)
    return StepOutput(rows=written.rows, bytes=written.bytes, summary=summary)


def _select(
    reader: WarehouseReader, schema: str, table: str, column: str | None, since: str | None
) -> tuple[str, list[Any]]:
    qualified = f"{quote_identifier(schema)}.{quote_identifier(table)}"
    if column is None:
        return f"SELECT * FROM {qualified}", []
    types = reader.column_types(schema, table)
    if column not in types:
        raise ProjectError(
            f"export: the watermark column '{column}' is not a column of {schema}.{table}",
            hint=f"its columns: {', '.join(types)}",
        )
    where = ""
    params: list[Any] = []
    if since is not None:
        where = f" WHERE {quote_identifier(column)} > CAST({reader.placeholder} AS {types[column]})"
        params = [since]
    return f"SELECT * FROM {qualified}{where} ORDER BY {quote_identifier(column)}", params


class _Watermark:
    """The largest value of a column over the batches that pass through."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.value: str | None = None
        self._largest: Any = None

    def follow(self, batches: Iterator[pa.RecordBatch] | pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            largest = pc.max(batch.column(self.column)).as_py()
            if largest is not None and (self._largest is None or largest > self._largest):
                self._largest = largest
                self.value = str(largest)
            yield batch


def _destination(to: str, options: dict[str, Any], table: str, ctx: StepContext) -> str:
    """Where the export goes, as text: a path, `s3://…`, or `postgres:SCHEMA.TABLE@TARGET`."""
    if to == "postgres":
        if not options.get("target") and not options.get("dsn"):
            raise ProjectError(f"export step '{ctx.step}': `to: postgres` needs `target:` or `dsn:`")
        where = options.get("target") or "dsn"
        return f"postgres:{_pg_table(options, table)}@{where}"
    path = options.get("path")
    if not path:
        raise ProjectError(f"export step '{ctx.step}': `to: {to}` needs `path:` (a file or a folder/)")
    text = str(path)
    if text.startswith("s3://"):
        return text
    local = Path(text) if Path(text).is_absolute() else ctx.project.root / text
    return str(local) + ("/" if text.endswith("/") or local.is_dir() else "")


def _pg_table(options: dict[str, Any], default: str) -> str:
    name = str(options.get("table") or default)
    return name if "." in name else f"{options.get('schema') or 'public'}.{name}"


def _write(
    to: str,
    destination: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    options: dict[str, Any],
    table: str,
    mode: str,
    ctx: StepContext,
) -> Written:
    if to == "postgres":
        if options.get("dsn"):
            conninfo = str(options["dsn"])
        else:
            conninfo = postgres_conninfo(ctx.project, str(options["target"]))
        return _copy_to_postgres(conninfo, _pg_table(options, table), schema, batches, mode)
    folder = destination.endswith("/")
    if mode == "incremental" and not folder:
        raise ProjectError(
            f"export step '{ctx.step}': an incremental export writes one file per run into a folder, "
            f"and `path: {options.get('path')}` names a file",
            hint=f"end the path with / (e.g. exports/{table}/)",
        )
    if folder:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{table}-{stamp}-{ctx.run_id[:8]}.{to}" if mode == "incremental" else f"{table}.{to}"
        destination += name
    with tempfile.TemporaryDirectory(prefix="elt-export-") as scratch:
        local = Path(scratch) / f"export.{to}" if destination.startswith("s3://") else Path(destination)
        rows, size = _write_file(to, local, schema, batches, skip_empty=mode == "incremental")
        if size and destination.startswith("s3://"):
            _upload(local, destination, options)
    return Written(rows=rows, bytes=size, location=destination if size else None)


def _write_file(
    to: str, path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *, skip_empty: bool
) -> tuple[int, int]:
    """(rows, bytes) written to `path` through a temporary file beside it; nothing when no rows and
    `skip_empty`."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    first = next(batches, None)
    if first is None and skip_empty:
        return 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    writer: Any = pq.ParquetWriter(partial, schema) if to == "parquet" else pacsv.CSVWriter(partial, schema)
    rows = 0
    try:
        with writer:
            for batch in _chain(first, batches):
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows, path.stat().st_size


def _chain(first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest


def _upload(local: Path, url: str, options: dict[str, Any]) -> None:
    """Upload the file to `s3://bucket/key`, with the `s3:` option's keys as `state_backend.s3`'s."""
    try:
        import boto3
    except ImportError as error:
        raise RunError("export to S3 needs boto3: pip install boto3") from error
    settings = dict(options.get("s3") or {})
    credentials = {k: settings[k] for k in ("aws_access_key_id", "aws_secret_access_key") if settings.get(k)}
    session = boto3.session.Session(**credentials)
    client = session.client(
        "s3", endpoint_url=settings.get("endpoint_url") or None, region_name=settings.get("region") or None
    )
    bucket, _, key = url[len("s3://") :].partition("/")
    try:
        client.upload_file(str(local), bucket, key)
    except Exception as error:  # boto3's errors share no base class worth naming
        raise RunError(f"export: cannot upload to {url}: {error}") from error


def _copy_to_postgres(
    conninfo: str, qualified: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], mode: str
) -> Written:
    """Create/empty the table and COPY the batches in, in one transaction."""
    from targets.target_postgres.types import arrow_column_type

    table_schema, _, table = qualified.partition(".")
    target = f"{quote_identifier(table_schema)}.{quote_identifier(table)}"
    columns = ", ".join(f"{quote_identifier(field.name)} {arrow_column_type(field)}" for field in schema)
    names = ", ".join(quote_identifier(field.name) for field in schema)
    try:
        with psycopg.connect(conninfo) as conn, conn.transaction():
            exists = conn.execute("SELECT to_regclass(%s)", [target]).fetchone()
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(table_schema)}")
            if exists is None or exists[0] is None:
                conn.execute(f"CREATE TABLE {target} ({columns})")
                copy_into = target
            else:
                if mode == "full":
                    conn.execute(f"TRUNCATE {target}")
                # The existing table may have other (compatible) types: COPY into exact types, then cast.
                conn.execute(f"CREATE TEMP TABLE _elt_export ({columns}) ON COMMIT DROP")
                copy_into = "_elt_export"
            rows, size = copy_batches(conn, copy_into, schema, batches)
            if copy_into != target:
                conn.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM _elt_export")
    except psycopg.Error as error:
        raise RunError(f"export to PostgreSQL table {qualified} failed: {str(error).strip()}") from error
    return Written(rows=rows, bytes=size, location=f"postgres:{qualified}")


def _watermarks(ctx: StepContext) -> sqlite3.Connection:
    conn = systemdb.connect(ctx.project.system_db)
    conn.executescript(WATERMARK_SCHEMA)
    return conn


def _last_watermark(ctx: StepContext, export_id: str, column: str) -> str | None:
    conn = _watermarks(ctx)
    try:
        row = conn.execute(
            "SELECT watermark_column, watermark FROM export_watermarks WHERE export_id = ?", [export_id]
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    if row["watermark_column"] != column:
        ctx.log(f"watermark column changed from {row['watermark_column']} to {column}: exporting every row")
        return None
    return str(row["watermark"])


def _save_watermark(ctx: StepContext, export_id: str, column: str, value: str) -> None:
    conn = _watermarks(ctx)
    try:
        conn.execute(
            "INSERT INTO export_watermarks (export_id, watermark_column, watermark, run_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (export_id) DO UPDATE SET "
            "watermark_column = excluded.watermark_column, watermark = excluded.watermark, "
            "run_id = excluded.run_id, updated_at = excluded.updated_at",
            [export_id, column, value, ctx.run_id, now()],
        )
    finally:
        conn.close()
