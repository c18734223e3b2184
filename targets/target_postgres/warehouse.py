"""The PostgreSQL side of target-postgres: connect, shape a stream's table, load one batch.

Every batch is one transaction: the table's DDL (create, add columns, widen types, the unique index
upsert needs), a TEMP staging table filled by one binary COPY per source (the records of a batch, or
each Parquet file of a BATCH message), and the statements that move the staged rows into the table:
INSERT (append-only, overwrite), INSERT ... ON CONFLICT DO UPDATE of each key's last row (upsert),
DELETE by key (hard deletes), TRUNCATE (the first batch of an overwrite run). Either all of it is
committed or none of it is. A value PostgreSQL refuses fails the batch with the stream, column, value
and record it is in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import errors as pg_errors

from targets.target_duckdb.batches import expected_type, value_error
from targets.target_duckdb.errors import LoadError
from targets.target_postgres.batches import RECEIVED_AT, ROW, TIME_EXTRACTED, BatchSource, staging_column
from targets.target_postgres.binary_copy import SIGNATURE, TRAILER, encode_rows
from targets.target_postgres.settings import UPSERT, LoaderSettings
from targets.target_postgres.types import Column, arrow_column_type, catalog_type, widen

LOADED_AT = "_elt_loaded_at"
SYNCED_AT = "_elt_synced_at"
DELETED_AT = "_sdc_deleted_at"
_COPY_CONTEXT = re.compile(r"line (\d+)(?:, column (\w+))?")
_METADATA = (Column(LOADED_AT, "TIMESTAMPTZ", LOADED_AT), Column(SYNCED_AT, "TIMESTAMPTZ", SYNCED_AT))


@dataclass(frozen=True)
class TableSpec:
    """Where and how a stream is loaded."""

    stream: str
    schema: str
    name: str
    keys: tuple[str, ...]  # the stream's key_properties
    load_method: str
    hard_delete: bool = False

    @property
    def qualified(self) -> str:
        """`"schema"."table"`, quoted for SQL."""
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def key(self) -> tuple[str, str]:
        """The table's identity."""
        return (self.schema, self.name)


@dataclass(frozen=True)
class BatchResult:
    """What loading one batch did."""

    rows_in_batch: int = 0
    rows_loaded: int = 0  # inserted, or (upsert) inserted or updated
    duplicates_merged: int = 0
    rows_deleted: int = 0

    def __add__(self, other: BatchResult) -> BatchResult:
        return BatchResult(
            self.rows_in_batch + other.rows_in_batch,
            self.rows_loaded + other.rows_loaded,
            self.duplicates_merged + other.duplicates_merged,
            self.rows_deleted + other.rows_deleted,
        )


def connect(settings: LoaderSettings) -> psycopg.Connection:
    """A connection for loading: autocommit (each batch opens its own transaction), UTC session.

    Date-times without an offset are read as UTC, whatever the server's time zone.
    """
    try:
        connection = psycopg.connect(settings.conninfo, autocommit=True)
    except psycopg.Error as error:
        raise LoadError(
            f"cannot connect to PostgreSQL: {error}",
            hint="check host, port, user, password and database (or sqlalchemy_url)",
        ) from error
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def load_batch(
    connection: psycopg.Connection, spec: TableSpec, sources: Iterable[BatchSource], *, truncate_first: bool
) -> BatchResult:
    """Load the sources of one batch in one transaction; on any failure nothing of it is written.

    `truncate_first` empties the table in the same transaction (the first batch of an overwrite run).
    Inside a transaction already open (a partition's, ledger.py) it is a savepoint of it.
    """
    total = BatchResult()
    try:
        with connection.transaction():
            for number, source in enumerate(sources):
                table = prepare_table(connection, spec, source.columns)
                if truncate_first and number == 0:
                    connection.execute(f"TRUNCATE {spec.qualified}")
                stage = f"pg_temp._elt_stage_{number}"
                rows = _stage(connection, spec, source, stage)
                total += _merge(connection, spec, source, stage, table, rows)
                # ON COMMIT DROP drops it too, but a partition's batches share one transaction
                # (ledger.py) and the next batch stages under the same name
                connection.execute(f"DROP TABLE {stage}")
    except LoadError:
        raise
    except psycopg.Error as error:
        raise _failure(spec, error) from error
    return total


def empty_table(connection: psycopg.Connection, spec: TableSpec) -> None:
    """Delete every row of the stream's table, if it exists (an overwrite run that sent no rows)."""
    try:
        with connection.transaction():
            if _existing_columns(connection, spec):
                connection.execute(f"TRUNCATE {spec.qualified}")
    except psycopg.Error as error:
        raise _failure(spec, error) from error


@dataclass(frozen=True)
class PreparedTable:
    """The stream's table, ready for a batch: each column's type, and whether it was just created."""

    types: dict[str, str]
    created: bool


def prepare_table(
    connection: psycopg.Connection, spec: TableSpec, columns: Sequence[Column]
) -> PreparedTable:
    """Create the table, add new columns and widen changed ones; return each column's table type.

    Columns no longer sent are kept (new rows leave them NULL). An upserted table gets a primary key
    on its key columns when it is created, and a unique index on them if it has none.
    """
    names = [column.name for column in columns]
    clashes = sorted({column.field for column in columns if names.count(column.name) > 1})
    if clashes:
        raise LoadError(
            f"stream '{spec.stream}': fields {clashes} have the same lower-cased column name",
            hint="rename them with a stream map",
        )
    keys = key_columns(spec, columns)
    existing = _existing_columns(connection, spec)
    if not existing:
        ensure_schema(connection, spec.schema)
        definitions = [f"{quote(column.name)} {column.type}" for column in (*columns, *_METADATA)]
        if spec.load_method == UPSERT and keys:
            definitions.append(f"PRIMARY KEY ({', '.join(map(quote, keys))})")
        connection.execute(f"CREATE TABLE {spec.qualified} ({', '.join(definitions)})")
        return PreparedTable({column.name: column.type for column in columns}, created=True)

    types: dict[str, str] = {}
    for column in (*columns, *_METADATA):
        current = existing.get(column.name)
        if current is None:
            connection.execute(f"ALTER TABLE {spec.qualified} ADD COLUMN {quote(column.name)} {column.type}")
            types[column.name] = column.type
            continue
        wider = widen(current, column.type)
        if wider != current:
            name = quote(column.name)
            connection.execute(
                f"ALTER TABLE {spec.qualified} ALTER COLUMN {name} TYPE {wider} USING {name}::{wider}"
            )
        types[column.name] = wider
    if spec.load_method == UPSERT and keys and not _has_unique_index(connection, spec, keys):
        try:
            with connection.transaction():
                connection.execute(f"CREATE UNIQUE INDEX ON {spec.qualified} ({', '.join(map(quote, keys))})")
        except pg_errors.UniqueViolation as error:
            raise LoadError(
                f"stream '{spec.stream}': table {spec.schema}.{spec.name} has rows with the same key "
                f"({', '.join(keys)}), so it cannot be upserted by it: {error.diag.message_detail}",
                hint="remove the duplicate rows, or load the stream with load_method: append-only",
            ) from error
    return PreparedTable(types, created=False)


def key_columns(spec: TableSpec, columns: Sequence[Column]) -> list[str]:
    """The column names of the stream's key_properties; LoadError if one is not a column."""
    by_field = {column.field: column.name for column in columns}
    missing = [key for key in spec.keys if key not in by_field]
    if missing:
        raise LoadError(f"stream '{spec.stream}': key_properties {missing} are not fields of its data")
    return [by_field[key] for key in spec.keys]


def quote(identifier: str) -> str:
    """A PostgreSQL identifier, quoted."""
    return '"' + identifier.replace('"', '""') + '"'


def ensure_schema(connection: psycopg.Connection, schema: str) -> None:
    """Create `schema` unless it exists."""
    # Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when it exists.
    if connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")


def _existing_columns(connection: psycopg.Connection, spec: TableSpec) -> dict[str, str]:
    rows = connection.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [spec.qualified],
    ).fetchall()
    return {name: catalog_type(formatted) for name, formatted in rows}


def _has_unique_index(connection: psycopg.Connection, spec: TableSpec, keys: Sequence[str]) -> bool:
    rows = connection.execute(
        "SELECT array(SELECT a.attname::text FROM unnest(i.indkey) AS k(n) "
        "JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.n) "
        "FROM pg_index AS i WHERE i.indrelid = to_regclass(%s) AND i.indisunique "
        "AND i.indpred IS NULL AND i.indexprs IS NULL",
        [spec.qualified],
    ).fetchall()
    return any(set(columns) == set(keys) for (columns,) in rows)


def _stage(connection: psycopg.Connection, spec: TableSpec, source: BatchSource, stage: str) -> int:
    """Create the TEMP staging table (dropped at commit) and COPY the source's batches into it."""
    names = [quote(field.name) for field in source.schema]
    definitions = [
        f"{name} {arrow_column_type(field)}" for name, field in zip(names, source.schema, strict=True)
    ]
    connection.execute(f"CREATE TEMP TABLE {stage} ({', '.join(definitions)}) ON COMMIT DROP")
    rows = 0
    try:
        with connection.cursor().copy(
            f"COPY {stage} ({', '.join(names)}) FROM STDIN (FORMAT binary)"
        ) as copy:
            copy.write(SIGNATURE)
            for batch in source.batches:
                rows += batch.num_rows
                copy.write(encode_rows(batch))
            copy.write(TRAILER)
    except psycopg.Error as error:
        raise _copy_failure(spec, source, error) from error
    return rows


def _merge(
    connection: psycopg.Connection,
    spec: TableSpec,
    source: BatchSource,
    stage: str,
    table: PreparedTable,
    rows: int,
) -> BatchResult:
    """Move the staged rows into the table as the load method says; explain a refused value."""
    plan = _MergePlan(spec, source, stage, table.types)
    try:
        # A savepoint: after a failure the staged rows are still there to explain it.
        with connection.transaction():
            return plan.run(connection, rows, created=table.created)
    except (pg_errors.DataError, pg_errors.IntegrityError) as error:
        raise _merge_failure(connection, plan, error) from error


class _MergePlan:
    """The SQL that moves one staging table's rows into the stream's table."""

    def __init__(self, spec: TableSpec, source: BatchSource, stage: str, table_types: dict[str, str]) -> None:
        self.spec = spec
        self.source = source
        self.stage = stage
        self.columns = source.columns
        staged = [arrow_column_type(field) for field in source.schema]
        self.casts = [
            _cast(f"s.{staging_column(i)}", staged[i], table_types[column.name])
            for i, column in enumerate(self.columns)
        ]
        self.table_types = [table_types[column.name] for column in self.columns]
        self.needs_cast = [staged[i] != self.table_types[i] for i in range(len(self.columns))]
        if source.synced_at is not None:
            self.synced = f"'{source.synced_at}'::timestamptz"
        else:
            self.synced = f"coalesce(s.{TIME_EXTRACTED}::timestamptz, to_timestamp(s.{RECEIVED_AT}))"
        names = [column.name for column in self.columns]
        self.keys = [names.index(name) for name in key_columns(spec, self.columns)]
        deleted = [i for i, column in enumerate(self.columns) if column.field == DELETED_AT]
        self.deleted = deleted[0] if deleted and self.keys and spec.hard_delete else None

    def run(self, connection: psycopg.Connection, rows: int, *, created: bool) -> BatchResult:
        """Move the rows; `created`: the table was created by this transaction, so it holds no rows
        and no one else sees it, and an upsert's rows (one per key) need no ON CONFLICT, which
        costs more than twice a plain INSERT.
        """
        if self.spec.load_method == UPSERT and self.keys:
            return self._upsert(connection, rows, created)
        return self._append(connection, rows)

    def _targets(self) -> str:
        return ", ".join(quote(name) for name in [*(c.name for c in self.columns), LOADED_AT, SYNCED_AT])

    def _upsert(self, connection: psycopg.Connection, rows: int, created: bool) -> BatchResult:
        keys = ", ".join(f"v{i}" for i in self.keys)
        staged = ", ".join(f"{cast} AS v{i}" for i, cast in enumerate(self.casts))
        # Each key's last row: DISTINCT ON the keys as the table types them, latest row first.
        last = (
            f"(SELECT DISTINCT ON ({keys}) {staged}, {self.synced} AS synced FROM {self.stage} AS s "
            f"ORDER BY {keys}, s.{ROW} DESC) AS d"
        )
        deleted_rows = 0
        where = ""
        if self.deleted is not None:
            if not created:
                match = " AND ".join(f"t.{quote(self.columns[i].name)} = d.v{i}" for i in self.keys)
                deleted_rows = _count(
                    connection,
                    f"DELETE FROM {self.spec.qualified} AS t USING {last} "
                    f"WHERE d.v{self.deleted} IS NOT NULL AND {match}",
                )
            where = f" WHERE d.v{self.deleted} IS NULL"
        on_conflict = ""
        if not created:
            key_names = ", ".join(quote(self.columns[i].name) for i in self.keys)
            updates = [quote(c.name) for i, c in enumerate(self.columns) if i not in self.keys]
            updates += [quote(LOADED_AT), quote(SYNCED_AT)]
            assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in updates)
            on_conflict = f" ON CONFLICT ({key_names}) DO UPDATE SET {assignments}"
        values = ", ".join(f"d.v{i}" for i in range(len(self.columns)))
        loaded = _count(
            connection,
            f"INSERT INTO {self.spec.qualified} ({self._targets()}) "
            f"SELECT {values}, now(), d.synced FROM {last}{where}{on_conflict}",
        )
        if self.deleted is None:
            distinct = loaded
        else:
            distinct_keys = ", ".join(self.casts[i] for i in self.keys)
            ((distinct,),) = connection.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT {distinct_keys} FROM {self.stage} AS s) AS k"
            ).fetchall()
        return BatchResult(rows, loaded, rows - int(distinct), deleted_rows)

    def _append(self, connection: psycopg.Connection, rows: int) -> BatchResult:
        deleted_rows = 0
        where = ""
        if self.deleted is not None:
            flag = staging_column(self.deleted)
            keys = ", ".join(f"{self.casts[i]} AS v{i}" for i in self.keys)
            match = " AND ".join(f"t.{quote(self.columns[i].name)} = d.v{i}" for i in self.keys)
            deleted_rows = _count(
                connection,
                f"DELETE FROM {self.spec.qualified} AS t USING "
                f"(SELECT DISTINCT {keys} FROM {self.stage} AS s WHERE s.{flag} IS NOT NULL) AS d "
                f"WHERE {match}",
            )
            # A deleted record is not loaded, nor are the rows of its key before it in the batch.
            same_key = " AND ".join(
                f"x.{staging_column(i)} IS NOT DISTINCT FROM s.{staging_column(i)}" for i in self.keys
            )
            where = (
                f" WHERE s.{flag} IS NULL AND NOT EXISTS (SELECT 1 FROM {self.stage} AS x "
                f"WHERE x.{flag} IS NOT NULL AND {same_key} AND x.{ROW} > s.{ROW})"
            )
        loaded = _count(
            connection,
            f"INSERT INTO {self.spec.qualified} ({self._targets()}) "
            f"SELECT {', '.join(self.casts)}, now(), {self.synced} FROM {self.stage} AS s{where}",
        )
        return BatchResult(rows, loaded, 0, deleted_rows)


def _cast(expression: str, staged: str, table_type: str) -> str:
    if staged == table_type:
        return expression
    if staged in ("REAL", "DOUBLE PRECISION") and table_type.startswith("NUMERIC"):
        # float -> numeric keeps 15 digits; a float's text is its shortest exact digits.
        return f"CAST(CAST({expression} AS TEXT) AS {table_type})"
    return f"CAST({expression} AS {table_type})"


def _count(connection: psycopg.Connection, sql: str) -> int:
    """Run a statement; the number of rows it inserted, updated or deleted."""
    return connection.execute(sql).rowcount


def _copy_failure(spec: TableSpec, source: BatchSource, error: psycopg.Error) -> LoadError:
    """A COPY error as the stream, column, value and record PostgreSQL refused."""
    reason = error.diag.message_primary or str(error)
    match = _COPY_CONTEXT.search(error.diag.context or "")
    column = match.group(2) if match else None
    if match and column and column.startswith("c") and column[1:].isdigit():
        index, row = int(column[1:]), int(match.group(1)) - 1
        field = source.columns[index]
        hint = None
        if "0x00" in reason or "\\u0000" in reason:
            hint = "set sanitize_null_text_characters: true to drop NUL characters, or remove them first"
        value = source.value_at(index, row)
        text = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        return LoadError(
            f"stream '{spec.stream}', column '{field.field}': cannot load {text} as {field.type}: {reason} "
            f"(record {row + 1} of the batch); nothing of this batch was written",
            hint=hint or f"fix the value at the source, or give field '{field.field}' a type that holds it",
        )
    return _failure(spec, error)


def _merge_failure(connection: psycopg.Connection, plan: _MergePlan, error: psycopg.Error) -> LoadError:
    """The first staged value that does not fit its column, else what PostgreSQL said."""
    spec = plan.spec
    if isinstance(error, pg_errors.NotNullViolation):
        names = [column.name for column in plan.columns]
        if error.diag.column_name in names:
            index = names.index(error.diag.column_name)
            ((row,),) = connection.execute(
                f"SELECT min({ROW}) FROM {plan.stage} WHERE {staging_column(index)} IS NULL"
            ).fetchall()
            where = f" (record {row + 1} of the batch)" if row is not None else ""
            return LoadError(
                f"stream '{spec.stream}', column '{plan.columns[index].field}': a record has no value"
                f"{where}, and the column of {spec.schema}.{spec.name} is NOT NULL (a key column is); "
                "nothing of this batch was written",
                hint="every record must have a value for each of the stream's key_properties",
            )
    if isinstance(error, pg_errors.UniqueViolation):
        return LoadError(
            f"stream '{spec.stream}': {error.diag.message_primary} in {spec.schema}.{spec.name} "
            f"({error.diag.message_detail}); nothing of this batch was written",
            hint="load the stream with load_method: upsert, or drop the table's unique index",
        )
    checks = [
        (plan.columns[i].field, plan.casts[i], plan.table_types[i], staging_column(i))
        for i in range(len(plan.columns))
        if plan.needs_cast[i]
    ]
    if plan.source.synced_at is None:
        checks.append(("time_extracted", f"s.{TIME_EXTRACTED}::timestamptz", "TIMESTAMPTZ", TIME_EXTRACTED))
    for field, expression, table_type, staged in checks:
        row = _first_refused_row(connection, plan.stage, expression)
        if row is not None:
            query = f"SELECT {staged} FROM {plan.stage} WHERE {ROW} = {row}"
            ((value,),) = connection.execute(query).fetchall()
            return value_error(spec.stream, field, value, expected_type(table_type), row)
    return _failure(spec, error)


def _first_refused_row(connection: psycopg.Connection, stage: str, expression: str) -> int | None:
    """The first staged row whose value `expression` cannot be computed for (a bisection by row)."""

    def computes(upto: int | None) -> bool:
        where = f" WHERE s.{ROW} <= {int(upto)}" if upto is not None else ""
        try:
            with connection.transaction():
                connection.execute(f"SELECT count({expression}) FROM {stage} AS s{where}")
        except pg_errors.DataError:
            return False
        return True

    if computes(None):
        return None
    ((low, high),) = connection.execute(f"SELECT min({ROW}), max({ROW}) FROM {stage}").fetchall()
    while low < high:
        middle = (low + high) // 2
        if computes(middle):
            low = middle + 1
        else:
            high = middle
    return int(low)


def _failure(spec: TableSpec, error: psycopg.Error) -> LoadError:
    hint = None
    if isinstance(error, pg_errors.FeatureNotSupported) and "view" in str(error):
        hint = "a view depends on the column: drop it (dbt creates it again) and run again"
    elif isinstance(error, psycopg.OperationalError):
        hint = "the connection to PostgreSQL was lost; run again (the state is at the last committed batch)"
    detail = str(error).strip()
    return LoadError(
        f"stream '{spec.stream}': loading a batch into {spec.schema}.{spec.name} failed: {detail}; "
        "nothing of this batch was written",
        hint=hint,
    )
