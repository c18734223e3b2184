"""A batch of Singer records as a `pyarrow.Table` with an explicit Arrow schema.

Column `c<i>` holds property `i` of the stream, typed from its declared DuckDB type: numbers and
booleans as Arrow numbers and booleans; dates, times and timestamps as their ISO 8601 text, which
DuckDB casts in bulk when the batch is inserted; objects and arrays as JSON text. Three more columns
carry the record's position in the batch and the times `_elt_synced_at` is made of.

Nothing is guessed: a value that does not fit its column fails the whole batch with a `LoadError`
naming the stream, the column, the value and the expected type.

A batch is built from records (dicts, `build_batch`) or from the columns Arrow parsed out of the
stream's RECORD lines (`batch_of_lines`, with the reads `line_reads` asks for: Arrow's own types where
they are the batch's, Python values where a column needs this module's conversions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
from singer_sdk.singerlib.json import serialize_json

from elt.arrowbufs import from_numpy
from targets.record_lines import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    STRING,
    VALUE,
    FieldRead,
    ParsedLines,
    declared_type,
)
from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.types import Column

ROW = "_elt_row"
TIME_EXTRACTED = "_elt_time_extracted"
RECEIVED_AT = "_elt_received_at"

ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "TIMESTAMPTZ": pa.string(),
    "DATE": pa.string(),
    "TIME": pa.string(),
}

_EXPECTED = {
    "TIMESTAMPTZ": "TIMESTAMPTZ (ISO 8601 date-time text)",
    "DATE": "DATE (ISO 8601 date text)",
    "TIME": "TIME (ISO 8601 time text)",
    "JSON": "JSON (any JSON value)",
}
# The C encoder of the standard library, for values without Decimals (singer-sdk reads floats as
# Decimal, which only its slower simplejson-based `serialize_json` writes back digit for digit).
_PLAIN_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError)


def batch_column(index: int) -> str:
    """The name of property `index`'s column in a batch table."""
    return f"c{index}"


def build_batch(
    stream: str,
    columns: Sequence[Column],
    records: Sequence[dict[str, Any]],
    time_extracted: Sequence[str | None],
    received_at: Sequence[float],
) -> pa.Table:
    """The records as an Arrow table: one column per property, then row number and the two times.

    `time_extracted` is each record's Singer `time_extracted` (or None) and `received_at` the epoch
    second the target read it; both are parallel to `records`.
    """
    arrays = [
        _column_array(stream, column, [record.get(column.name) for record in records]) for column in columns
    ]
    arrays.append(pa.array(range(len(records)), pa.int64()))
    arrays.append(_column_array(stream, Column("time_extracted", "TIMESTAMPTZ"), time_extracted))
    arrays.append(pa.array(received_at, pa.float64()))
    return pa.Table.from_arrays(arrays, schema=batch_schema(columns))


def line_reads(columns: Sequence[Column], properties: dict[str, Any]) -> tuple[FieldRead, ...]:
    """How to read each column's property from RECORD lines (`properties`: the stream's JSON Schema's)."""
    return tuple(
        FieldRead(c.name, _LINE_READS.get((c.type, declared_type(properties.get(c.name) or {})), VALUE))
        for c in columns
    )


_LINE_READS: dict[tuple[str, str | None], str] = {
    ("BIGINT", "integer"): INTEGER,
    ("DOUBLE", "number"): NUMBER,
    ("BOOLEAN", "boolean"): BOOLEAN,
    ("VARCHAR", "string"): STRING,
    ("TIMESTAMPTZ", "string"): STRING,
    ("DATE", "string"): STRING,
    ("TIME", "string"): STRING,
}


def batch_of_lines(
    stream: str, columns: Sequence[Column], parsed: ParsedLines, received_at: np.ndarray
) -> pa.Table:
    """A batch like `build_batch`'s from the columns of parsed RECORD lines (read as `line_reads` says)."""
    arrays = [_line_array(stream, column, parsed.columns[column.name]) for column in columns]
    arrays.append(pa.chunked_array([from_numpy(np.arange(parsed.rows, dtype=np.int64))]))
    arrays.append(pa.chunked_array(parsed.time_extracted))
    arrays.append(pa.chunked_array([from_numpy(received_at.astype(np.float64))]))
    return pa.Table.from_arrays(arrays, schema=batch_schema(columns))


def _line_array(
    stream: str, column: Column, values: pa.Array | pa.ChunkedArray | list[Any]
) -> pa.ChunkedArray:
    if isinstance(values, list):
        return pa.chunked_array([_column_array(stream, column, values)])
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def batch_schema(columns: Sequence[Column]) -> pa.Schema:
    """The Arrow schema of a batch of a stream with these columns."""
    fields = [pa.field(batch_column(i), ARROW_TYPES[c.type]) for i, c in enumerate(columns)]
    fields.append(pa.field(ROW, pa.int64(), nullable=False))
    fields.append(pa.field(TIME_EXTRACTED, pa.string()))
    fields.append(pa.field(RECEIVED_AT, pa.float64()))
    return pa.schema(fields)


def json_text(value: Any) -> str:
    """A value as compact JSON text, numbers exactly as they were read."""
    try:
        return _PLAIN_JSON.encode(value)
    except (TypeError, ValueError):
        return serialize_json(value)


def expected_type(duckdb_type: str) -> str:
    """A column type as an error message names it."""
    return _EXPECTED.get(duckdb_type, duckdb_type)


def value_error(stream: str, column: str, value: object, expected: str, row: int | None) -> LoadError:
    """The error for a value that cannot be loaded into its column."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    where = f" (record {row + 1} of the batch)" if row is not None else ""
    return LoadError(
        f"stream '{stream}', column '{column}': cannot load {text} ({type(value).__name__}) "
        f"as {expected}{where}; nothing of this batch was written",
        hint=f"fix the value at the source, or give property '{column}' a type that holds it",
    )


def _column_array(stream: str, column: Column, values: list[Any] | Sequence[Any]) -> pa.Array:
    arrow_type = ARROW_TYPES[column.type]
    kinds = set(map(type, values))
    kinds.discard(type(None))
    values = _conform(stream, column, values, kinds)
    try:
        return pa.array(values, arrow_type)
    except _ARROW_ERRORS as error:
        raise _first_bad_value(stream, column, values, arrow_type) from error


def _conform(stream: str, column: Column, values: Sequence[Any], kinds: set[type]) -> Sequence[Any]:
    """Values turned into what Arrow takes for the column's type, where that loses nothing."""
    if column.type == "JSON":
        return [None if value is None else json_text(value) for value in values]
    if column.type == "VARCHAR" and kinds - {str}:
        # A property that may be several types (or widened to string) keeps each value's JSON text.
        return [value if value is None or type(value) is str else json_text(value) for value in values]
    if column.type in ("BIGINT", "DOUBLE") and bool in kinds:
        # Arrow would read True as 1; a boolean is not a number.
        row = next(i for i, value in enumerate(values) if type(value) is bool)
        raise value_error(stream, column.name, values[row], expected_type(column.type), row)
    if column.type == "DOUBLE" and Decimal in kinds:
        return [float(value) if type(value) is Decimal else value for value in values]
    if column.type == "BIGINT" and Decimal in kinds:
        # Arrow would truncate Decimal('1.5') to 1; only whole numbers are integers.
        for row, value in enumerate(values):
            if type(value) is Decimal and value != value.to_integral_value():
                raise value_error(stream, column.name, value, expected_type(column.type), row)
        return [int(value) if type(value) is Decimal else value for value in values]
    return values


def _first_bad_value(
    stream: str, column: Column, values: Sequence[Any], arrow_type: pa.DataType
) -> LoadError:
    for row, value in enumerate(values):
        try:
            pa.array([value], arrow_type)
        except _ARROW_ERRORS:
            return value_error(stream, column.name, value, expected_type(column.type), row)
    return LoadError(f"stream '{stream}', column '{column.name}': values do not fit {column.type}")
