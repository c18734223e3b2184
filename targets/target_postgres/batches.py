"""Batches for the staging table: Singer records, or a Parquet file's record batches, as Arrow record
batches whose columns are `c0, c1, ...` (one per column of the stream) plus `_elt_row`.

From records, each column's values are sent the way its type is best read (`types.transport_kind`):
integers and booleans as Arrow numbers, checked here; JSON values as JSON text (jsonb); everything else
as text for PostgreSQL's own input functions (date-times, numerics, text). Two more columns carry the
record's `time_extracted` and when the target read it, of which `_elt_synced_at` is made.
From Parquet, the columns are the file's, with their exact types.
From the stream's RECORD lines (`lines_source`), the columns Arrow parsed are sent as they are when they
are what the records would give (`line_reads`: integers, booleans, strings, and numbers as the text the
tap wrote); the other columns' values are converted as records' are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from elt.arrowbufs import from_numpy
from targets.record_lines import (
    BOOLEAN,
    INTEGER,
    NUMBER_TEXT,
    STRING,
    VALUE,
    FieldRead,
    ParsedLines,
    declared_type,
)
from targets.target_duckdb.batches import json_text, value_error
from targets.target_duckdb.errors import LoadError
from targets.target_postgres.types import (
    JSON_FIELD_METADATA,
    Column,
    arrow_column_type,
    column_name,
    is_json_field,
    transport_kind,
)

ROW = "_elt_row"
TIME_EXTRACTED = "_elt_time_extracted"
RECEIVED_AT = "_elt_received_at"
PARQUET_BATCH_ROWS = 32_768  # rows read from a Parquet file at a time

_JSON = pa.field("json", pa.string(), metadata={JSON_FIELD_METADATA: b"1"})
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError)
_NUMBER_KINDS = {int, float, Decimal}
_NOT_SCALAR = ("TEXT", "JSONB", "JSON")
_NUMBER_TYPES = ("NUMERIC", "REAL", "DOUBLE")


def staging_column(index: int) -> str:
    """The name of column `index` of a batch (and of the staging table)."""
    return f"c{index}"


@dataclass(frozen=True)
class BatchSource:
    """The batches of one load: their columns, Arrow schema, and how to read them (once)."""

    columns: tuple[Column, ...]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    synced_at: str | None = None  # one time for every row, else each row's TIME_EXTRACTED/RECEIVED_AT
    path: Path | None = None  # the Parquet file read, for messages
    batch: pa.RecordBatch | None = None  # the one batch of records, for messages

    def value_at(self, index: int, row: int) -> Any:
        """The value of column `index` at `row` (for error messages; reads a Parquet file again)."""
        if self.batch is not None:
            return self.batch.column(index)[row].as_py()
        if self.path is None:
            return None
        offset = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            if row < offset + batch.num_rows:
                return batch.column(index)[row - offset].as_py()
            offset += batch.num_rows
        return None


def records_source(
    stream: str,
    columns: Sequence[Column],
    records: Sequence[dict[str, Any]],
    time_extracted: Sequence[str | None],
    received_at: Sequence[float],
    *,
    sanitize_nul: bool = False,
) -> BatchSource:
    """The records as one Arrow record batch: a column per stream column, then row number and times.

    `time_extracted` is each record's Singer `time_extracted` (or None) and `received_at` the epoch
    second the target read it; both are parallel to `records`.
    """
    arrays = [
        _record_array(
            stream, column, transport_kind(column.type), [record.get(column.field) for record in records]
        )
        for column in columns
    ]
    return _records_batch(columns, arrays, pa.array(time_extracted, pa.string()), received_at, sanitize_nul)


def line_reads(columns: Sequence[Column], properties: dict[str, Any]) -> tuple[FieldRead, ...]:
    """How to read each column's field from RECORD lines (`properties`: the stream's JSON Schema's)."""
    reads = []
    for column in columns:
        declared = declared_type(properties.get(column.field) or {})
        kind = transport_kind(column.type)
        read = VALUE
        if kind == "integer" and declared == "integer":
            read = INTEGER
        elif kind == "boolean" and declared == "boolean":
            read = BOOLEAN
        elif kind == "text" and declared == "string":
            read = STRING
        elif kind == "text" and declared in ("number", "integer") and column.type.startswith(_NUMBER_TYPES):
            read = NUMBER_TEXT
        reads.append(FieldRead(column.field, read))
    return tuple(reads)


def lines_source(
    stream: str,
    columns: Sequence[Column],
    parsed: ParsedLines,
    received_at: np.ndarray,
    *,
    sanitize_nul: bool = False,
) -> BatchSource:
    """A batch like `records_source`'s from the columns of parsed RECORD lines (read as `line_reads` says)."""
    arrays = []
    for column in columns:
        values = parsed.columns[column.field]
        if isinstance(values, list):
            arrays.append(_record_array(stream, column, transport_kind(column.type), values))
        else:
            arrays.append(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    time_extracted = parsed.time_extracted
    if isinstance(time_extracted, pa.ChunkedArray):
        time_extracted = time_extracted.combine_chunks()
    return _records_batch(columns, arrays, time_extracted, received_at, sanitize_nul)


def _records_batch(
    columns: Sequence[Column],
    arrays: list[pa.Array],
    time_extracted: pa.Array,
    received_at: Sequence[float] | np.ndarray,
    sanitize_nul: bool,
) -> BatchSource:
    fields = []
    for index, column in enumerate(columns):
        kind = transport_kind(column.type)
        if sanitize_nul and kind in ("text", "json"):
            arrays[index] = strip_nul(arrays[index], json_text_values=kind == "json")
        field = _JSON if kind == "json" else pa.field("value", arrays[index].type)
        fields.append(field.with_name(staging_column(index)))
    rows = len(time_extracted)
    arrays.append(from_numpy(np.arange(rows, dtype=np.int64)))
    fields.append(pa.field(ROW, pa.int64()))
    arrays.append(time_extracted)
    fields.append(pa.field(TIME_EXTRACTED, pa.string()))
    arrays.append(from_numpy(np.asarray(received_at, dtype=np.float64)))
    fields.append(pa.field(RECEIVED_AT, pa.float64()))
    batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return BatchSource(tuple(columns), batch.schema, iter([batch]), batch=batch)


def parquet_source(
    stream: str,
    path: Path | pa.Table,
    synced_at: str,
    declared: Sequence[Column] = (),
    *,
    sanitize_nul: bool = False,
) -> BatchSource:
    """A Parquet file of a BATCH message as batches of its own columns, read a bounded batch at a time.

    Columns get the file's exact types, except a plain string (or all-null) column whose property the
    stream's JSON Schema (`declared`) gives a more exact scalar type, e.g. a date-time: that type
    stands, and PostgreSQL reads the text into it.
    """
    declared_types = {column.field: column.type for column in declared}
    if isinstance(path, pa.Table):  # a batch handed over in-process (elt/handoff.py)
        table = path
        arrow_schema = table.schema
        read = table.to_batches(max_chunksize=PARQUET_BATCH_ROWS)
        path = Path("(in-process batch)")
    else:
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as error:
            raise LoadError(f"stream '{stream}': cannot read BATCH file {path}: {error}") from error
        arrow_schema = parquet.schema_arrow
        read = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    columns = []
    fields = []
    for index, field in enumerate(arrow_schema):
        try:
            column_type = arrow_column_type(field)
        except TypeError as error:
            raise LoadError(
                f"stream '{stream}', column '{field.name}': {error} (BATCH file {path})",
                hint="have the tap send it as JSON text (a string column with elt.json metadata)",
            ) from error
        stand_in = declared_types.get(field.name)
        if column_type == "TEXT" and not is_json_field(field) and stand_in and stand_in not in _NOT_SCALAR:
            column_type = stand_in
        columns.append(Column(column_name(field.name), column_type, field.name))
        fields.append(field.with_name(staging_column(index)))
    fields.append(pa.field(ROW, pa.int64()))
    schema = pa.schema(fields)

    def batches() -> Iterator[pa.RecordBatch]:
        offset = 0
        for batch in read:
            arrays = list(batch.columns)
            if sanitize_nul:
                arrays = [
                    strip_nul(array, json_text_values=column.type == "JSONB")
                    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
                    else array
                    for array, column in zip(arrays, columns, strict=True)
                ]
            rows = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
            offset += batch.num_rows
            yield pa.RecordBatch.from_arrays([*arrays, from_numpy(rows)], schema=schema)

    return BatchSource(tuple(columns), schema, batches(), synced_at=synced_at, path=path)


def strip_nul(array: pa.Array, *, json_text_values: bool) -> pa.Array:
    """Text with its NUL characters removed; in JSON text, the `\\u0000` escapes of them."""
    if not json_text_values:
        return pc.replace_substring(array, "\x00", "")
    hits = pc.match_substring(array, "\\u0000").fill_null(False)
    if not pc.any(hits).as_py():
        return array
    values = array.to_pylist()
    for row in np.flatnonzero(hits.to_numpy(zero_copy_only=False)):
        values[row] = json_text(_without_nul(json.loads(values[row], parse_float=Decimal)))
    return pa.array(values, array.type)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _record_array(stream: str, column: Column, kind: str, values: list[Any]) -> pa.Array:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kind == "integer":
        return _integers(stream, column, values, kinds)
    if kind == "boolean":
        if kinds - {bool}:
            _raise_first(stream, column, values, lambda value: type(value) is not bool)
        return pa.array(values, pa.bool_())
    if kind == "json":
        return pa.array([None if value is None else json_text(value) for value in values], pa.string())
    if kinds <= {str}:
        return pa.array(values, pa.string())
    if column.type.startswith(_NUMBER_TYPES):
        if kinds - _NUMBER_KINDS:
            _raise_first(stream, column, values, lambda value: type(value) not in _NUMBER_KINDS)
        return pa.array([None if value is None else str(value) for value in values], pa.string())
    # Text of another type: a property that may be several types keeps each value's JSON text.
    return pa.array(
        [value if value is None or type(value) is str else json_text(value) for value in values], pa.string()
    )


def _integers(stream: str, column: Column, values: list[Any], kinds: set[type]) -> pa.Array:
    if kinds - {int, Decimal}:
        # A bool is not an integer (Arrow would read True as 1), nor is text.
        _raise_first(stream, column, values, lambda value: type(value) not in (int, Decimal))
    if Decimal in kinds:
        # Only whole numbers are integers (Arrow would truncate 1.5 to 1).
        _raise_first(
            stream,
            column,
            values,
            lambda value: type(value) is Decimal and value != value.to_integral_value(),
        )
        values = [int(value) if type(value) is Decimal else value for value in values]
    try:
        return pa.array(values, pa.int64())
    except _ARROW_ERRORS:
        _raise_first(stream, column, values, _not_int64)
        raise


def _not_int64(value: Any) -> bool:
    return value is not None and not -(2**63) <= value < 2**63


def _raise_first(stream: str, column: Column, values: list[Any], is_bad: Any) -> None:
    for row, value in enumerate(values):
        if value is not None and is_bad(value):
            raise value_error(stream, column.field, value, column.type, row)
