"""MySQL/MariaDB column types: their JSON Schema, their Arrow type and how values are converted.

A `Column` is what `information_schema.COLUMNS` says about one column. Its `Kind` (looked up in
`_KINDS` by the column's data type) holds everything that differs between types: the JSON Schema
property, the exact Arrow type of the fast path, the conversion of a driver value into a JSON-ready
one (record path), the parsing of the server's text values into an Arrow array (fast path: Arrow
parses in C++ what PyMySQL would parse in Python), and how a bookmark from the state is turned back
into a value to compare the column with.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import pyarrow as pa
from pymysql.converters import convert_date, convert_datetime, convert_timedelta

JSON_FIELD_METADATA = {b"elt.json": b"1"}  # a string column holding JSON text (docs/connectors.md)

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Column:
    """One column as `information_schema.COLUMNS` describes it."""

    name: str
    data_type: str
    """DATA_TYPE in lower case: `int`, `decimal`, `varchar`, `json`, …"""
    column_type: str
    """COLUMN_TYPE in lower case: `int(10) unsigned`, `decimal(12,2)`, `tinyint(1)`, …"""
    nullable: bool = True
    precision: int | None = None
    scale: int | None = None
    max_length: int | None = None

    @property
    def kind(self) -> Kind:
        """What the column's type is to the tap (see `_KINDS`)."""
        if self.column_type.startswith("tinyint(1)") or (self.data_type == "bit" and self.precision == 1):
            return _BOOLEAN
        return _KINDS.get(self.data_type, _STRING)

    @property
    def may_be_null(self) -> bool:
        """Nullable columns, and dates of any kind: zero dates ('0000-00-00') are read as NULL."""
        return self.nullable or isinstance(self.kind, _Date)

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type

    def json_schema(self) -> dict[str, Any]:
        """The column's JSON Schema property (nullable when the column may be NULL)."""
        schema = self.kind.json_schema(self)
        if self.may_be_null:
            declared = schema.get("type")
            if isinstance(declared, str):
                schema["type"] = [declared, "null"]
            elif isinstance(declared, list) and "null" not in declared:
                schema["type"] = [*declared, "null"]
        return schema

    def arrow_field(self) -> pa.Field:
        """The column's field in the fast path's Parquet files."""
        metadata = JSON_FIELD_METADATA if self.kind is _JSON else None
        return pa.field(self.name, self.kind.arrow_type(self), nullable=self.may_be_null, metadata=metadata)

    def json_converter(self) -> Convert | None:
        """A function from a non-null driver value to a JSON-ready one; None when it is one already."""
        return self.kind.json_converter(self)

    def json_value(self, value: Any) -> Any:
        """A value of `arrow_array` (as Python) in the form the record path writes it, for bookmarks."""
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=None)  # in UTC, zone-aware or not
        elif isinstance(value, dt.time):
            value = dt.timedelta(
                hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
            )
        convert = self.json_converter()
        return value if value is None or convert is None else convert(value)

    def arrow_array(self, values: Sequence[Any]) -> pa.Array:
        """The server's values of the column, undecoded (text as str, binary columns as bytes, None for
        NULL), as an array of `arrow_field().type`."""
        return self.kind.arrow_array(self, values)

    @property
    def sortable(self) -> bool:
        """Whether the column can be a replication key: MySQL orders it the way it compares it."""
        return self.kind.sortable

    def bookmark_value(self, value: Any) -> Any:
        """A bookmark from the state as a value to compare the column with; ValueError if it is not one."""
        return self.kind.bookmark_value(self, value)


class Kind:
    """How one family of MySQL types is read; subclasses override what differs."""

    json_type: ClassVar[str] = "string"
    sortable: ClassVar[bool] = False

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": self.json_type}

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.string()

    def json_converter(self, column: Column) -> Convert | None:
        return None

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        return pa.array(values, pa.string()).cast(self.arrow_type(column))

    def bookmark_value(self, column: Column, value: Any) -> Any:
        return str(value)


class _String(Kind):
    """char, varchar, text, enum, set and types MariaDB sends as text (uuid, inet6, …)."""

    def json_schema(self, column: Column) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if column.data_type in ("char", "varchar") and column.max_length:
            schema["maxLength"] = column.max_length
        return schema

    def json_converter(self, column: Column) -> Convert | None:
        # Types the driver does not know (MariaDB's newer ones) may arrive as bytes.
        return None if column.data_type in _TEXT_TYPES else _text

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        try:
            return pa.array(values, pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return pa.array([_text(v) for v in values], pa.string())


class _SortedString(_String):
    """char and varchar: replication keys compared and ordered by the column's collation."""

    sortable = True


class _Integer(Kind):
    json_type = "integer"
    sortable = True
    _BITS: ClassVar[dict[str, int]] = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}

    def json_schema(self, column: Column) -> dict[str, Any]:
        bits = self._BITS.get(column.data_type, 64)
        if column.unsigned:
            low, high = 0, 2**bits - 1
        else:
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return {"type": "integer", "minimum": low, "maximum": high}

    def arrow_type(self, column: Column) -> pa.DataType:
        bits = self._BITS.get(column.data_type, 64)
        return _INTEGER_TYPES[(column.unsigned, 32 if bits == 24 else bits)]

    def bookmark_value(self, column: Column, value: Any) -> Any:
        return int(value)


class _Year(_Integer):
    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "integer"}

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.int16()


class _Bit(Kind):
    """bit(n), n > 1: an unsigned integer (bit(1) is a boolean)."""

    json_type = "integer"

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": 2 ** (column.precision or 64) - 1}

    def arrow_type(self, column: Column) -> pa.DataType:
        bits = column.precision or 64
        return _INTEGER_TYPES[(True, next(size for size in (8, 16, 32, 64) if bits <= size))]

    def json_converter(self, column: Column) -> Convert | None:
        return _bits_to_int

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        return pa.array([None if v is None else _bits_to_int(v) for v in values], self.arrow_type(column))


class _Boolean(Kind):
    """tinyint(1) and bit(1)."""

    json_type = "boolean"

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.bool_()

    def json_converter(self, column: Column) -> Convert | None:
        return _bits_to_bool if column.data_type == "bit" else bool

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        if column.data_type == "bit":
            return pa.array([None if v is None else _bits_to_bool(v) for v in values], pa.bool_())
        return pa.array(values, pa.string()).cast(pa.int16()).cast(pa.bool_())


class _Decimal(Kind):
    """decimal(p,s): exact in both paths (a JSON number written digit for digit; decimal128)."""

    json_type = "number"
    sortable = True

    def json_schema(self, column: Column) -> dict[str, Any]:
        precision, scale = column.precision or 10, column.scale or 0
        return {
            "type": "number",
            "multipleOf": 1 if scale == 0 else float(Decimal(1).scaleb(-scale)),
            "x-sql-datatype": f"decimal({precision},{scale})",
        }

    def arrow_type(self, column: Column) -> pa.DataType:
        precision, scale = column.precision or 10, column.scale or 0
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)

    def bookmark_value(self, column: Column, value: Any) -> Any:
        try:
            return Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {value!r}") from exc


class _Float(Kind):
    json_type = "number"
    sortable = True

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.float32() if column.data_type == "float" else pa.float64()

    def bookmark_value(self, column: Column, value: Any) -> Any:
        return float(value)


class _Date(Kind):
    sortable = True

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "string", "format": "date"}

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.date32()

    def json_converter(self, column: Column) -> Convert | None:
        return _iso_date

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        kind = self.arrow_type(column)
        try:
            # Naive text is UTC, the session's time zone: parsed as such, then marked as UTC.
            return pa.array(values, pa.string()).cast(pa.timestamp("us") if kind == _UTC else kind).cast(kind)
        except pa.ArrowInvalid:
            # Zero dates ('0000-00-00', '2024-00-00') do not parse; they are NULL, as on the record path.
            parse = convert_date if kind == pa.date32() else convert_datetime
            parsed = (None if v is None else parse(v) for v in values)
            return pa.array([None if isinstance(v, str) else v for v in parsed], kind)

    def bookmark_value(self, column: Column, value: Any) -> Any:
        return dt.date.fromisoformat(str(value)[:10])


class _DateTime(_Date):
    """datetime (wall-clock, no zone) and timestamp (an instant, read in UTC).

    The session's time zone is UTC (see `connection.connect`), so both arrive as naive datetimes in
    UTC; JSON gets `+00:00`, Arrow a timestamp without zone for datetime and in UTC for timestamp.
    """

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}

    def arrow_type(self, column: Column) -> pa.DataType:
        return _UTC if column.data_type == "timestamp" else pa.timestamp("us")

    def json_converter(self, column: Column) -> Convert | None:
        return _iso_datetime

    def bookmark_value(self, column: Column, value: Any) -> Any:
        text = str(value).replace("Z", "+00:00")
        moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        return moment


class TimeOutOfRange(ValueError):
    """A TIME value outside 00:00:00–23:59:59.999999 (MySQL allows ±838 hours)."""


class _Time(Kind):
    """time: a time of day. MySQL also allows durations up to ±838:59:59, which do not fit."""

    sortable = True

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "string", "format": "time"}

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.time64("us")

    def json_converter(self, column: Column) -> Convert | None:
        return _iso_time

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        micros = [None if v is None else _time_micros(_timedelta(v)) for v in values]
        return pa.array(micros, pa.int64()).cast(pa.time64("us"))


class _Json(Kind):
    """json (MySQL's type; MariaDB's longtext with a json_valid check): any JSON value."""

    def json_schema(self, column: Column) -> dict[str, Any]:
        # No type: a JSON column holds scalars ("x", 1, true) and null as well as objects and arrays.
        return {}

    def json_converter(self, column: Column) -> Convert | None:
        return _json_value

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        return _STRING.arrow_array(column, values)


class _Binary(Kind):
    """binary, varbinary, blobs and spatial types (their internal WKB): base64 in JSON."""

    def json_schema(self, column: Column) -> dict[str, Any]:
        return {"type": "string", "contentEncoding": "base64"}

    def arrow_type(self, column: Column) -> pa.DataType:
        return pa.binary()

    def arrow_array(self, column: Column, values: Sequence[Any]) -> pa.Array:
        return pa.array(values, pa.binary())

    def json_converter(self, column: Column) -> Convert | None:
        return _base64


_TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"})
_UTC = pa.timestamp("us", tz="UTC")
_INTEGER_TYPES = {
    (False, 8): pa.int8(),
    (False, 16): pa.int16(),
    (False, 32): pa.int32(),
    (False, 64): pa.int64(),
    (True, 8): pa.uint8(),
    (True, 16): pa.uint16(),
    (True, 32): pa.uint32(),
    (True, 64): pa.uint64(),
}

_STRING, _BOOLEAN, _JSON = _String(), _Boolean(), _Json()
_INTEGER, _DATE, _DATETIME, _BINARY = _Integer(), _Date(), _DateTime(), _Binary()
_KINDS: dict[str, Kind] = {
    "tinyint": _INTEGER,
    "smallint": _INTEGER,
    "mediumint": _INTEGER,
    "int": _INTEGER,
    "bigint": _INTEGER,
    "year": _Year(),
    "bit": _Bit(),
    "decimal": _Decimal(),
    "float": _Float(),
    "double": _Float(),
    "date": _DATE,
    "datetime": _DATETIME,
    "timestamp": _DATETIME,
    "time": _Time(),
    "json": _JSON,
    "char": _SortedString(),
    "varchar": _SortedString(),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), _BINARY),
    **dict.fromkeys(
        (
            "geometry",
            "point",
            "linestring",
            "polygon",
            "multipoint",
            "multilinestring",
            "multipolygon",
            "geometrycollection",
        ),
        _BINARY,
    ),
}


# -- value conversions --------------------------------------------------------------------------


def _bits_to_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _bits_to_bool(value: bytes) -> bool:
    return any(value)


def _iso_date(value: dt.date | str) -> str | None:
    return None if isinstance(value, str) else value.isoformat()  # a zero date is NULL


def _iso_datetime(value: dt.datetime | str) -> str | None:
    # One format for every value (always microseconds, always the offset) so that strings sort as
    # the instants do, as singer-sdk's bookmarks expect.
    if isinstance(value, str):
        return None  # a zero date
    return f"{value.isoformat(timespec='microseconds')}+00:00"


def _time_micros(value: dt.timedelta) -> int:
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if not 0 <= micros < 86_400_000_000:
        raise TimeOutOfRange(f"{_duration_text(value)} is not a time of day")
    return micros


def _iso_time(value: dt.timedelta) -> str:
    micros = _time_micros(value)
    seconds, fraction = divmod(micros, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{fraction:06d}"


def _duration_text(value: dt.timedelta) -> str:
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign, micros = ("-" if micros < 0 else ""), abs(micros)
    seconds = micros // 1_000_000
    return f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _timedelta(text: str) -> dt.timedelta:
    value = convert_timedelta(text)
    if not isinstance(value, dt.timedelta):
        raise TimeOutOfRange(f"{text!r} is not a time")
    return value


def _json_value(text: str) -> Any:
    # Decimal keeps every digit of a JSON number (singer-sdk writes Decimals as they are).
    return json.loads(text, parse_float=Decimal)


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if value is None else str(value)
