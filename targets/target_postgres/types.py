"""Column types of target-postgres: from a stream's JSON Schema, from a Parquet (Arrow) field, and how
a column's type widens as the stream's schema evolves.

JSON Schema, the raw-table contract (docs/connectors.md): integer BIGINT, number NUMERIC, string TEXT,
string/date-time TIMESTAMPTZ, string/date DATE, string/time TIME, boolean BOOLEAN, object/array JSONB.
A number is NUMERIC rather than DOUBLE PRECISION because singer-sdk reads JSON numbers as Decimal: the
digits the tap wrote are the digits stored. Two hints make a type more exact: singer-sdk's
`x-sql-datatype` names it outright (`"x-sql-datatype": "smallint"`), and a number with
`multipleOf: 0.01` and `maximum: 1000000` (as database taps write numeric(8,2)) is NUMERIC(8,2).

Arrow, the fast path: the Parquet types are exact, so a column made from them is too (decimal128(p,s)
NUMERIC(p,s), int32 INTEGER, timestamp with a time zone TIMESTAMPTZ, a string with `elt.json` field
metadata JSONB, binary BYTEA, ...); `arrow_column_type` is also the type each value is sent as in a
binary COPY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from targets.target_duckdb.settings import table_name

# PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63
JSON_FIELD_METADATA = b"elt.json"

_SIMPLE_TYPES = {
    "integer": "BIGINT",
    "number": "NUMERIC",
    "boolean": "BOOLEAN",
    "object": "JSONB",
    "array": "JSONB",
}
_STRING_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE", "time": "TIME"}
_MAX_NUMERIC_PRECISION = 1000

# Spellings of `format_type()` (and of `x-sql-datatype` hints) -> the spelling used here.
_SPELLINGS = {
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIME WITHOUT TIME ZONE": "TIME",
    "TIME WITH TIME ZONE": "TIMETZ",
    "CHARACTER VARYING": "VARCHAR",
    "DOUBLE": "DOUBLE PRECISION",
    "FLOAT8": "DOUBLE PRECISION",
    "FLOAT": "DOUBLE PRECISION",
    "FLOAT4": "REAL",
    "INT": "INTEGER",
    "INT4": "INTEGER",
    "INT8": "BIGINT",
    "INT2": "SMALLINT",
    "DECIMAL": "NUMERIC",
    "BOOL": "BOOLEAN",
}
# An `x-sql-datatype` hint goes into DDL as written, so only a plain type name is taken: one word
# (or a known multi-word name), an optional (precision[, scale]) and an optional [].
_MULTI_WORD = "|".join(sorted((name.lower() for name in _SPELLINGS if " " in name), key=len, reverse=True))
_SQL_TYPE = re.compile(
    rf"(?:{_MULTI_WORD}|double precision|[a-z_][a-z0-9_]*)(?:\(\s*\d+\s*(?:,\s*-?\d+\s*)?\))?(?:\[\])?",
    re.IGNORECASE,
)
_NUMERIC_TYPMOD = re.compile(r"NUMERIC\((\d+),\s*(-?\d+)\)")

_INTEGER_RANKS = {"SMALLINT": 0, "INTEGER": 1, "BIGINT": 2}
_INTEGER_DIGITS = {"SMALLINT": 5, "INTEGER": 10, "BIGINT": 19}
_DATETIME_RANKS = {"DATE": 0, "TIMESTAMP": 1, "TIMESTAMPTZ": 2}


@dataclass(frozen=True)
class Column:
    """A column of a stream's table: its name in PostgreSQL, its type, and the field it holds."""

    name: str
    type: str
    field: str  # the record property (or Parquet column) the values come from


def column_name(name: str) -> str:
    """A property name as a column name: lower-cased (so SQL need not quote it), at most 63 bytes."""
    return truncate_identifier(name.lower())


def stream_table_name(stream_name: str) -> str:
    """A stream name as a table name: lower-cased, non `[a-z0-9_]` characters as `_`, at most 63 bytes."""
    return truncate_identifier(table_name(stream_name))


def truncate_identifier(name: str) -> str:
    """`name` cut to the 63 bytes PostgreSQL keeps (never inside a character)."""
    encoded = name.encode("utf-8")
    if len(encoded) <= MAX_IDENTIFIER_BYTES:
        return name
    return encoded[:MAX_IDENTIFIER_BYTES].decode("utf-8", errors="ignore")


def columns_of(json_schema: dict[str, Any]) -> tuple[Column, ...]:
    """One column per property of a stream's JSON Schema, in the schema's order."""
    properties = json_schema.get("properties") or {}
    return tuple(
        Column(column_name(name), json_schema_type(prop or {}), name) for name, prop in properties.items()
    )


def json_schema_type(property_schema: dict[str, Any]) -> str:
    """The column type for one JSON Schema property (`{}` or no `type`: JSONB, any JSON value)."""
    hint = property_schema.get("x-sql-datatype")
    if isinstance(hint, str) and _SQL_TYPE.fullmatch(hint.strip()):
        return normalize_type(hint)
    alternatives = property_schema.get("anyOf") or property_schema.get("oneOf")
    if alternatives:
        found = [json_schema_type(alt) for alt in alternatives if not _is_null_only(alt)]
        return _widest(found) if found else "TEXT"
    declared = property_schema.get("type")
    if declared is None:
        return "JSONB"
    names = [declared] if isinstance(declared, str) else list(declared)
    found = [_single_type(name, property_schema) for name in names if name != "null"]
    return _widest(found) if found else "TEXT"


def is_json_field(field: pa.Field) -> bool:
    """Whether an Arrow string field carries JSON text (`{"elt.json": "1"}` field metadata)."""
    return bool(field.metadata) and field.metadata.get(JSON_FIELD_METADATA) == b"1"


def arrow_column_type(field: pa.Field) -> str:
    """The exact column type for a Parquet (Arrow) field; TypeError for a type with no column type."""
    arrow_type = field.type
    if pa.types.is_dictionary(arrow_type):
        return arrow_column_type(field.with_type(arrow_type.value_type))
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_int8(arrow_type) or pa.types.is_int16(arrow_type) or pa.types.is_uint8(arrow_type):
        return "SMALLINT"
    if pa.types.is_int32(arrow_type) or pa.types.is_uint16(arrow_type):
        return "INTEGER"
    if pa.types.is_int64(arrow_type) or pa.types.is_uint32(arrow_type):
        return "BIGINT"
    if pa.types.is_uint64(arrow_type):
        return "NUMERIC(20,0)"
    if pa.types.is_float16(arrow_type) or pa.types.is_float32(arrow_type):
        return "REAL"
    if pa.types.is_float64(arrow_type):
        return "DOUBLE PRECISION"
    if pa.types.is_decimal(arrow_type):
        precision, scale = arrow_type.precision, arrow_type.scale
        if scale < 0:
            precision, scale = precision - scale, 0
        precision = max(precision, scale)
        return f"NUMERIC({precision},{scale})" if precision <= _MAX_NUMERIC_PRECISION else "NUMERIC"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    ):
        return "JSONB" if is_json_field(field) else "TEXT"
    if (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
    ):
        return "BYTEA"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_time(arrow_type):
        return "TIME"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_null(arrow_type):
        return "TEXT"
    if pa.types.is_nested(arrow_type):
        return "JSONB"
    raise TypeError(f"Arrow type {arrow_type} has no PostgreSQL column type here")


def widen(current: str, declared: str) -> str:
    """The column type that holds both what the column holds now and the newly declared type.

    integer < number < text: SMALLINT < INTEGER < BIGINT < NUMERIC(p,s) < NUMERIC; DATE < TIMESTAMP <
    TIMESTAMPTZ; any other change of type falls back to TEXT, which holds the text of any value. A
    float column and a NUMERIC one keep their type when the other is declared (values are cast): the
    record path says NUMERIC where the fast path's Parquet may say DOUBLE PRECISION, and switching
    paths should not rewrite a table. A column of a type elt never makes (UUID, an enum, ...) is kept
    as it is: values are cast into it.
    """
    if current == declared:
        return current
    family, other = _family(current), _family(declared)
    if family is None or family == "text":
        return current
    if family == other:
        if family == "integer":
            return max(current, declared, key=_INTEGER_RANKS.__getitem__)
        if family == "numeric":
            return _wider_numeric(current, declared)
        if family == "datetime":
            return max(current, declared, key=_DATETIME_RANKS.__getitem__)
        if family == "float":
            return "DOUBLE PRECISION"
        return current  # JSON and JSONB
    numbers = {"integer", "numeric", "float"}
    if family in numbers and other in numbers:
        if family == "float" or (family == "numeric" and other == "float"):
            return current
        if other == "float":
            return "NUMERIC"
        as_numeric = [
            f"NUMERIC({_INTEGER_DIGITS[t]},0)" if t in _INTEGER_DIGITS else t for t in (current, declared)
        ]
        return _wider_numeric(*as_numeric)
    return "TEXT"


def normalize_type(name: str) -> str:
    """A type name as this module spells it: upper case, one space between words, aliases resolved."""
    spelled = re.sub(r"\s+", " ", name.strip().upper())
    spelled = re.sub(r"\s*\(\s*", "(", spelled)
    spelled = re.sub(r"\s*,\s*", ",", spelled)
    spelled = re.sub(r"\s*\)", ")", spelled)
    base, paren, rest = spelled.partition("(")
    return _SPELLINGS.get(base, base) + paren + rest


def catalog_type(formatted: str) -> str:
    """A column type as `format_type()` spells it, in the spelling `json_schema_type` uses."""
    return normalize_type(formatted)


def transport_kind(column_type: str) -> str:
    """How a record value of a column of this type is sent: `integer`, `boolean`, `json` or `text`.

    Integers and booleans go as binary numbers; everything else as text that PostgreSQL's own input
    function reads (date-times, numerics), which is exactly what it would accept from any client.
    """
    family = _family(column_type)
    if family == "integer":
        return "integer"
    if column_type == "BOOLEAN":
        return "boolean"
    if family == "json":
        return "json"
    return "text"


def _family(column_type: str) -> str | None:
    if column_type in _INTEGER_RANKS:
        return "integer"
    if column_type == "NUMERIC" or _NUMERIC_TYPMOD.fullmatch(column_type):
        return "numeric"
    if column_type in ("REAL", "DOUBLE PRECISION"):
        return "float"
    if column_type == "TEXT" or column_type.startswith("VARCHAR"):
        return "text"
    if column_type in _DATETIME_RANKS:
        return "datetime"
    if column_type in ("JSON", "JSONB"):
        return "json"
    if column_type in ("BOOLEAN", "TIME", "BYTEA"):
        return column_type.lower()
    return None


def _wider_numeric(first: str, second: str) -> str:
    """The NUMERIC that holds both: as many integer digits and as many decimals as the wider of each."""
    a, b = _NUMERIC_TYPMOD.fullmatch(first), _NUMERIC_TYPMOD.fullmatch(second)
    if a is None or b is None:
        return "NUMERIC"
    (p1, s1), (p2, s2) = ((int(m.group(1)), int(m.group(2))) for m in (a, b))
    scale = max(s1, s2, 0)
    precision = max(p1 - s1, p2 - s2) + scale
    return f"NUMERIC({precision},{scale})" if precision <= _MAX_NUMERIC_PRECISION else "NUMERIC"


def _single_type(name: str, property_schema: dict[str, Any]) -> str:
    if name == "string":
        return _STRING_FORMATS.get(property_schema.get("format", ""), "TEXT")
    if name == "number":
        return _numeric_from_hints(property_schema)
    return _SIMPLE_TYPES.get(name, "TEXT")


def _numeric_from_hints(property_schema: dict[str, Any]) -> str:
    """NUMERIC(p,s) for `multipleOf: 10^-s` with `maximum` (or `exclusiveMaximum`) 10^(p-s), else NUMERIC."""
    scale = _power_of_ten(property_schema.get("multipleOf"))
    bound = property_schema.get("maximum")
    if bound is None or isinstance(bound, bool):
        bound = property_schema.get("exclusiveMaximum")
    digits = _power_of_ten(bound)
    if scale is None or digits is None or scale > 0 or digits < 0:
        return "NUMERIC"
    precision = digits - scale
    if not 0 < precision <= _MAX_NUMERIC_PRECISION:
        return "NUMERIC"
    return f"NUMERIC({precision},{-scale})"


def _power_of_ten(value: Any) -> int | None:
    """k when `value` is exactly 10^k, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)).normalize()
    except InvalidOperation:
        return None
    sign, digits, exponent = number.as_tuple()
    if sign or digits != (1,) or not isinstance(exponent, int):
        return None
    return exponent


def _widest(types: list[str]) -> str:
    result = types[0]
    for other in types[1:]:
        result = widen(result, other)
    return result


def _is_null_only(schema: dict[str, Any]) -> bool:
    declared = schema.get("type")
    return declared == "null" or declared == ["null"]
