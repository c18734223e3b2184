"""JSON Schema property -> DuckDB column type, and how column types widen as a schema evolves.

The table of types is the raw-table contract (docs/connectors.md): integer BIGINT, number DOUBLE,
string VARCHAR, string/date-time TIMESTAMPTZ, string/date DATE, string/time TIME, boolean BOOLEAN,
object/array JSON. A property with several types (`["integer", "string"]`, `anyOf`) gets the
narrowest type that holds all of them; a property with no type at all holds any JSON value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SIMPLE_TYPES = {
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "object": "JSON",
    "array": "JSON",
}

_STRING_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE", "time": "TIME"}

# Pairs whose wider type keeps every value of the narrower one; any other change of type falls back
# to VARCHAR, which can hold the text of any value.
_WIDENINGS = {
    frozenset({"BIGINT", "DOUBLE"}): "DOUBLE",
    frozenset({"DATE", "TIMESTAMPTZ"}): "TIMESTAMPTZ",
}

CONTRACT_TYPES = frozenset({"BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "JSON", "TIMESTAMPTZ", "DATE", "TIME"})

# DuckDB's spelling in information_schema -> the spelling used here.
_CATALOG_SPELLINGS = {"TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ", "TIME WITHOUT TIME ZONE": "TIME"}


def duckdb_type(property_schema: dict[str, Any]) -> str:
    """The DuckDB column type for one JSON Schema property (`{}` or no `type`: JSON)."""
    alternatives = property_schema.get("anyOf") or property_schema.get("oneOf")
    if alternatives:
        found = [duckdb_type(alt) for alt in alternatives if not _is_null_only(alt)]
        return _widest(found) if found else "VARCHAR"

    declared = property_schema.get("type")
    if declared is None:
        return "JSON"
    names = [declared] if isinstance(declared, str) else list(declared)
    found = [_single_type(name, property_schema) for name in names if name != "null"]
    return _widest(found) if found else "VARCHAR"


def widen(current: str, declared: str) -> str:
    """The column type that holds both what the column holds now and the newly declared type.

    A column of a type outside the contract (made by someone else, e.g. DECIMAL(12,2)) is kept as
    it is, and so is a column asked for with such a type (an exact type from a BATCH file): values
    are cast into it on insert.
    """
    if current == declared or current not in CONTRACT_TYPES or declared not in CONTRACT_TYPES:
        return current
    return _WIDENINGS.get(frozenset({current, declared}), "VARCHAR")


def catalog_type(data_type: str) -> str:
    """A type as information_schema spells it, in the spelling `duckdb_type` uses."""
    return _CATALOG_SPELLINGS.get(data_type.upper(), data_type.upper())


def _single_type(name: str, property_schema: dict[str, Any]) -> str:
    if name == "string":
        return _STRING_FORMATS.get(property_schema.get("format", ""), "VARCHAR")
    return _SIMPLE_TYPES.get(name, "VARCHAR")


def _widest(types: list[str]) -> str:
    result = types[0]
    for other in types[1:]:
        result = widen(result, other)
    return result


def _is_null_only(schema: dict[str, Any]) -> bool:
    declared = schema.get("type")
    return declared == "null" or declared == ["null"]


@dataclass(frozen=True)
class Column:
    """A stream property as a column: its name and the DuckDB type its JSON Schema declares."""

    name: str
    type: str


def columns_of(json_schema: dict[str, Any]) -> tuple[Column, ...]:
    """One column per property of a stream's JSON Schema, in the schema's order."""
    properties = json_schema.get("properties") or {}
    return tuple(Column(name, duckdb_type(prop or {})) for name, prop in properties.items())
