"""PostgreSQL column types: how each is read through COPY binary, and what it is in JSON Schema and Arrow.

One table (`_BASE_TYPES`) says it for the built-in base types; arrays, composites, enums, domains and
everything else follow from a few rules in `column_type`. A column is read with a SQL expression
(`read_sql`) whose binary wire format (`Wire`) `binary_copy` decodes; types without a decoder of their
own are cast to text by that expression.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

JSON_METADATA = {b"elt.json": b"1"}
"""Field metadata of Arrow string columns holding JSON text (json, jsonb, arrays, composites)."""


class Wire(enum.Enum):
    """How the values of a read expression arrive in COPY binary."""

    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOL = "bool"
    TEXT = "text"
    JSONB = "jsonb"  # a version byte, then the JSON text
    BYTES = "bytes"
    UUID = "uuid"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"


class JsonValue(enum.Enum):
    """How a value is written in a Singer RECORD."""

    INTEGER = "integer"
    FLOAT = "float"  # NaN and infinities become null: JSON has no such numbers
    NUMERIC = "numeric"  # PostgreSQL's exact decimal text, written as a JSON number
    BOOLEAN = "boolean"
    STRING = "string"
    JSON = "json"  # JSON text, written as it is
    TIMESTAMP = "timestamp"  # ISO 8601, microseconds, +00:00 (a timestamp without time zone is UTC)
    DATE = "date"
    TIME = "time"


@dataclass(frozen=True)
class ColumnType:
    """What a column of one PostgreSQL type is read and written as."""

    sql_datatype: str
    """The type as PostgreSQL spells it (`numeric(12,2)`, `timestamptz`, `integer[]`): `x-sql-datatype`."""
    json_schema: Mapping[str, Any]
    """Its JSON Schema, without `null`; `{}` (any JSON value) for json and jsonb."""
    arrow_type: pa.DataType
    wire: Wire
    json_value: JsonValue
    read_sql: str = "{column}"
    """The SQL expression that reads the column in BATCH mode, `{column}` being its quoted name."""
    json_read_sql: str | None = None
    """The expression in RECORD mode, when it differs (bytea is read as base64 text there)."""
    json_wire: Wire | None = None
    is_json_text: bool = False
    """Arrow string column holding JSON text: marked with `JSON_METADATA`."""
    replication_key: bool = False
    """Whether it orders well enough to be a replication key."""
    nan_is_null: bool = False
    """Numeric text whose NaN / Infinity become null (decimal128 and JSON hold neither)."""

    def read(self, column: str, *, records: bool) -> tuple[str, Wire]:
        """The read expression for a quoted column name and the wire format of its values."""
        if records and self.json_read_sql is not None:
            return self.json_read_sql.format(column=column), self.json_wire or self.wire
        return self.read_sql.format(column=column), self.wire

    def arrow_field(self, name: str, nullable: bool = True) -> pa.Field:
        """The column's field in a BATCH file."""
        metadata = JSON_METADATA if self.is_json_text else None
        return pa.field(name, self.arrow_type, nullable=nullable, metadata=metadata)

    def property_schema(self, nullable: bool) -> dict[str, Any]:
        """The column's JSON Schema property, with its PostgreSQL type as `x-sql-datatype`."""
        schema = dict(self.json_schema)
        if nullable and "type" in schema:
            kinds = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
            schema["type"] = [*kinds, "null"] if "null" not in kinds else kinds
        schema["x-sql-datatype"] = self.sql_datatype
        return schema


@dataclass(frozen=True)
class TypeOptions:
    """MeltanoLabs tap-postgres' switches that change discovered schemas."""

    dates_as_string: bool = False
    json_as_object: bool = False


DEFAULT_OPTIONS = TypeOptions()

_DATE_TIME = {"type": "string", "format": "date-time"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_STRING = {"type": "string"}


def _base(
    schema: Mapping[str, Any], arrow_type: pa.DataType, wire: Wire, value: JsonValue, **extra: Any
) -> ColumnType:
    return ColumnType("", schema, arrow_type, wire, value, **extra)


_DATE = {"type": "string", "format": "date"}
_TIME = {"type": "string", "format": "time"}
_UUID = {"type": "string", "format": "uuid"}
_BASE64 = {"type": "string", "contentEncoding": "base64"}
_KEY = {"replication_key": True}

# Base types with a decoder of their own, by pg_type.typname.
_BASE_TYPES: dict[str, ColumnType] = {
    "int2": _base(_INTEGER, pa.int16(), Wire.INT16, JsonValue.INTEGER, **_KEY),
    "int4": _base(_INTEGER, pa.int32(), Wire.INT32, JsonValue.INTEGER, **_KEY),
    "int8": _base(_INTEGER, pa.int64(), Wire.INT64, JsonValue.INTEGER, **_KEY),
    "oid": _base(_INTEGER, pa.int64(), Wire.INT64, JsonValue.INTEGER, read_sql="{column}::int8"),
    "float4": _base(_NUMBER, pa.float32(), Wire.FLOAT32, JsonValue.FLOAT),
    "float8": _base(_NUMBER, pa.float64(), Wire.FLOAT64, JsonValue.FLOAT),
    "bool": _base({"type": "boolean"}, pa.bool_(), Wire.BOOL, JsonValue.BOOLEAN),
    "text": _base(_STRING, pa.string(), Wire.TEXT, JsonValue.STRING),
    "varchar": _base(_STRING, pa.string(), Wire.TEXT, JsonValue.STRING),
    "bpchar": _base(_STRING, pa.string(), Wire.TEXT, JsonValue.STRING),
    "name": _base(_STRING, pa.string(), Wire.TEXT, JsonValue.STRING),
    "uuid": _base(_UUID, pa.string(), Wire.UUID, JsonValue.STRING),
    "json": _base({}, pa.string(), Wire.TEXT, JsonValue.JSON, is_json_text=True),
    "jsonb": _base({}, pa.string(), Wire.JSONB, JsonValue.JSON, is_json_text=True),
    # In RECORD mode bytea is base64 text; encode() breaks its lines at 76 characters.
    "bytea": _base(
        _BASE64,
        pa.binary(),
        Wire.BYTES,
        JsonValue.STRING,
        json_read_sql="translate(encode({column}, 'base64'), E'\\n', '')",
        json_wire=Wire.TEXT,
    ),
    "date": _base(_DATE, pa.date32(), Wire.DATE, JsonValue.DATE, **_KEY),
    "time": _base(_TIME, pa.time64("us"), Wire.TIME, JsonValue.TIME),
    # ISO 8601 durations (P1DT2H): the session's IntervalStyle is iso_8601.
    "interval": _base(
        {"type": "string", "format": "duration"},
        pa.string(),
        Wire.TEXT,
        JsonValue.STRING,
        read_sql="{column}::text",
    ),
    "timestamp": _base(_DATE_TIME, pa.timestamp("us"), Wire.TIMESTAMP, JsonValue.TIMESTAMP, **_KEY),
    "timestamptz": _base(
        _DATE_TIME, pa.timestamp("us", tz="UTC"), Wire.TIMESTAMPTZ, JsonValue.TIMESTAMP, **_KEY
    ),
}

_TIME_ZONE = re.compile(r"(timestamp|time)(\(\d+\))? (with|without) time zone")
_CHARACTER = re.compile(r"character( varying)?\b")


def sql_datatype(formatted: str) -> str:
    """format_type() text in PostgreSQL's short spelling: `timestamp(3) with time zone` -> timestamptz(3)."""
    if match := _TIME_ZONE.match(formatted):
        name = match[1] + ("tz" if match[3] == "with" else "")
        return name + (match[2] or "") + formatted[match.end() :]
    if match := _CHARACTER.match(formatted):
        return ("varchar" if match[1] else "char") + formatted[match.end() :]
    return formatted


def column_type(
    typname: str,
    typtype: str,
    formatted: str,
    typmod: int,
    *,
    element: str | None = None,
    element_typtype: str | None = None,
    options: TypeOptions = DEFAULT_OPTIONS,
) -> ColumnType:
    """The ColumnType of a column whose base type (domains resolved) is `typname`.

    `typtype` is pg_type.typtype (b base, c composite, e enum, r range, m multirange, p pseudo),
    `formatted` the type as format_type() spells it, `typmod` the column's type modifier; for arrays
    `element` is the element's typname.
    """
    spelled = sql_datatype(formatted)
    if element is not None:
        item = column_type(
            element, element_typtype or "b", formatted.removesuffix("[]"), typmod, options=options
        )
        items = item.property_schema(nullable=True)
        items.pop("x-sql-datatype", None)
        return ColumnType(
            spelled,
            {"type": "array", "items": items},
            pa.string(),
            Wire.TEXT,
            JsonValue.JSON,
            read_sql="array_to_json({column})::text",
            is_json_text=True,
        )
    if typname == "numeric":
        return _numeric(spelled, typmod)
    if typname in _BASE_TYPES:
        found = _BASE_TYPES[typname]
        schema = dict(found.json_schema)
        if typname in ("varchar", "bpchar") and typmod > 4:
            schema["maxLength"] = typmod - 4
        if options.dates_as_string and found.wire in (Wire.DATE, Wire.TIMESTAMP, Wire.TIMESTAMPTZ):
            schema = dict(_STRING)
        if options.json_as_object and found.json_value is JsonValue.JSON:
            schema = {"type": "object"}
        return replace(found, sql_datatype=spelled, json_schema=schema)
    if typtype == "c":
        return ColumnType(
            spelled,
            {"type": "object"},
            pa.string(),
            Wire.TEXT,
            JsonValue.JSON,
            read_sql="to_json({column})::text",
            is_json_text=True,
        )
    # Enums, ranges, network addresses, money, xml, timetz, extension types...: their text.
    return ColumnType(spelled, _STRING, pa.string(), Wire.TEXT, JsonValue.STRING, read_sql="{column}::text")


def _numeric(spelled: str, typmod: int) -> ColumnType:
    """numeric(p,s) is decimal128(p,s) in Arrow (decimal256 above 38 digits); numeric without a precision
    is float64, as no decimal type holds all its values (JSON keeps them digit for digit)."""
    text = "{column}::text"
    if typmod < 4:
        return ColumnType(
            spelled, _NUMBER, pa.float64(), Wire.TEXT, JsonValue.NUMERIC, read_sql=text, replication_key=True
        )
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # 11-bit signed since PostgreSQL 15
    arrow_type: pa.DataType
    if 0 <= scale <= precision <= 38:
        arrow_type = pa.decimal128(precision, scale)
    elif 0 <= scale <= precision <= 76:
        arrow_type = pa.decimal256(precision, scale)
    else:
        arrow_type = pa.float64()
    return ColumnType(
        spelled,
        _NUMBER,
        arrow_type,
        Wire.TEXT,
        JsonValue.NUMERIC,
        read_sql=text,
        replication_key=True,
        nan_is_null=pa.types.is_decimal(arrow_type),
    )
