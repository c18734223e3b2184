"""Columnar batches: Parquet files announced by Singer BATCH messages, loaded as they are.

The file's Arrow types are exact where JSON Schema is not (DECIMAL(p,s), integer widths, TIMESTAMPTZ),
so a table created from a batch gets them; a column that already exists keeps its type and the values
are cast into it. Strings whose field metadata says `elt.json` become JSON columns.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.types import Column

JSON_METADATA = b"elt.json"


def local_path(url: str) -> Path:
    """The file a `file://` manifest entry names (other storages are not read by this target)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("", "file"):
        raise LoadError(f"BATCH file {url!r}: only local files (file://) can be loaded")
    return Path(unquote(parsed.path))


def read_batch_file(stream: str, path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise LoadError(f"stream '{stream}': cannot read BATCH file {path}: {error}") from error


def exact_columns(columns: tuple[Column, ...], schema: pa.Schema) -> tuple[Column, ...]:
    """The stream's columns with the batch file's exact types where it has them."""
    exact = {field.name: duckdb_type_of(field) for field in schema}
    return tuple(Column(c.name, exact.get(c.name) or c.type) for c in columns)


def duckdb_type_of(field: pa.Field) -> str | None:
    """The DuckDB type for an Arrow field, None when the JSON Schema's type should stand."""
    kind = field.type
    if (field.metadata or {}).get(JSON_METADATA) and (
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        return "JSON"
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})" if kind.precision <= 38 else "VARCHAR"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.date32(): "DATE",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.binary(): "BLOB",
        pa.large_binary(): "BLOB",
    }
    if kind in simple:
        return simple[kind]
    if pa.types.is_time(kind):
        return "TIME"
    return None
