"""Singer RECORD lines for a batch of rows, built by vectorized code instead of per-record Python.

Each column becomes the JSON text of its values (escaped and quoted strings, numbers as PostgreSQL
or Arrow print them, `null`), then the columns are joined with the fixed text between them, so that
a batch's lines come out as one buffer, written to stdout at once. Dates and times are printed with
numpy (Arrow's strftime costs more than everything else together).

Values are those a singer-sdk tap writes: timestamps in ISO 8601 with microseconds and `+00:00` (a
timestamp without time zone is taken to be UTC), times with microseconds only when there are some,
numeric digit for digit, json and jsonb as JSON, bytea in base64, NaN and infinite numbers as null
(JSON has none).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elt.arrowbufs import numbers, string_scalar, valid_rows
from taps.tap_postgres.binary_copy import NOT_NUMBERS, slices
from taps.tap_postgres.pgtypes import JsonValue

_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_CONTROL_ESCAPES = {code: _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(1, 0x20)}
_DAY_US = 86_400_000_000


_QUOTE, _NOTHING, _NULL, _UTC_END = map(string_scalar, ('"', "", "null", '+00:00"'))


class RecordLines:
    """Writes the rows of one stream's batches as Singer RECORD messages."""

    def __init__(self, stream: str, columns: Sequence[tuple[str, JsonValue]], version: int | None = None):
        self.names = [_json(name) for name, _ in columns]
        self.kinds = [kind for _, kind in columns]
        self._head = f'{{"type":"RECORD","stream":{_json(stream)},"record":{{'
        self._tail = "}" + (f',"version":{version}' if version is not None else "")

    def render(self, arrays: Sequence[pa.Array], time_extracted: str) -> memoryview:
        """The RECORD lines of the rows (one array per column), each ending with a newline."""
        ending = f'{self._tail},"time_extracted":"{time_extracted}"}}\n'
        lines = self._join(arrays, self._head, ending)
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        return memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[len(lines)])]

    def records(self, arrays: Sequence[pa.Array]) -> Iterator[dict[str, Any]]:
        """The rows as JSON-ready dicts (numbers with a fraction as Decimal), for singer-sdk's own path."""
        for text in self._join(arrays, "{", "}").to_pylist():
            yield json.loads(text, parse_float=Decimal)

    def _join(self, arrays: Sequence[pa.Array], head: str, ending: str) -> pa.Array:
        pieces: list[Any] = []
        for index, (name, kind, array) in enumerate(zip(self.names, self.kinds, arrays, strict=True)):
            pieces.extend((string_scalar(f"{head if index == 0 else ','}{name}:"), json_texts(array, kind)))
        pieces.append(string_scalar(ending))
        return pc.binary_join_element_wise(*pieces, _NOTHING)


def json_texts(array: pa.Array, kind: JsonValue) -> pa.Array:
    """The JSON text of each value of a column, `null` for nulls."""
    if kind is JsonValue.INTEGER or kind is JsonValue.BOOLEAN:
        text = pc.cast(array, pa.string())
    elif kind is JsonValue.FLOAT:
        text = pc.if_else(pc.is_finite(array), pc.cast(array, pa.string()), pa.nulls(len(array), pa.string()))
    elif kind is JsonValue.NUMERIC:
        text = pc.if_else(pc.is_in(array, value_set=NOT_NUMBERS), pa.nulls(len(array), pa.string()), array)
    elif kind is JsonValue.JSON:
        # json keeps the text it was given, line breaks included; outside strings they are spaces.
        text = _replace(array, {0x0A: " ", 0x0D: " "})
    elif kind is JsonValue.TIMESTAMP:
        text = _timestamps(array)
    elif kind is JsonValue.DATE:
        text = _dates(array)
    elif kind is JsonValue.TIME:
        text = _times(array)
    else:
        text = pc.binary_join_element_wise(_QUOTE, _escaped(array), _QUOTE, _NOTHING)
    return pc.fill_null(text, _NULL)


def json_value(array: pa.Array, kind: JsonValue, index: int) -> Any:
    """One value of a column as singer-sdk would hold it in a record (a bookmark, for instance)."""
    return json.loads(json_texts(array.slice(index, 1), kind)[0].as_py(), parse_float=Decimal)


# -- strings --------------------------------------------------------------------------------------


def _escaped(array: pa.Array) -> pa.Array:
    """Strings with `"`, `\\` and control characters escaped as JSON wants them."""
    data = _data(array)
    if data is None:
        return array
    # The backslash first: the other escapes bring backslashes of their own.
    if (data == 0x5C).any():
        array = pc.replace_substring(array, "\\", "\\\\")
    if (data == 0x22).any():
        array = pc.replace_substring(array, '"', '\\"')
    controls = data[data < 0x20]
    if len(controls):
        array = _replace(array, {int(code): _CONTROL_ESCAPES[int(code)] for code in np.unique(controls)})
    return array


def _replace(array: pa.Array, replacements: dict[int, str]) -> pa.Array:
    """`array` with each of the given ASCII bytes replaced, when it has any."""
    data = _data(array)
    for code, replacement in replacements.items():
        if data is not None and (data == code).any():
            array = pc.replace_substring(array, chr(code), replacement)
    return array


def _data(array: pa.Array) -> np.ndarray | None:
    """The bytes of a string array's values, or None when it has none."""
    if len(array) == 0 or array.null_count == len(array):
        return None
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    first, last = int(offsets[array.offset]), int(offsets[array.offset + len(array)])
    return np.frombuffer(array.buffers()[2], dtype=np.uint8)[first:last]


# -- dates and times ------------------------------------------------------------------------------


def _timestamps(array: pa.Array) -> pa.Array:
    """`"2024-01-31T12:00:00.000000+00:00"`: always with microseconds, as singer-sdk writes them."""
    micros = _integers(array)
    days, rest = np.divmod(micros, _DAY_US)
    year, month, day = _civil(days)
    if ((year < 0) | (year > 9999)).any():
        stamp = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(_QUOTE, stamp, _UTC_END, _NOTHING)
    text = _columns(len(micros), b'"0000-00-00T00:00:00.000000+00:00"')
    _put_date(text, 1, year, month, day)
    seconds, fraction = np.divmod(rest, 1_000_000)
    _put_time(text, 12, seconds, fraction)
    return _rows(text, np.full(len(micros), 34), array)


def _dates(array: pa.Array) -> pa.Array:
    """`"2024-01-31"`."""
    days = _integers(array)
    year, month, day = _civil(days)
    if ((year < 0) | (year > 9999)).any():
        return pc.binary_join_element_wise(_QUOTE, pc.cast(array, pa.string()), _QUOTE, _NOTHING)
    text = _columns(len(days), b'"0000-00-00"')
    _put_date(text, 1, year, month, day)
    return _rows(text, np.full(len(days), 12), array)


def _times(array: pa.Array) -> pa.Array:
    """`"12:00:00"`, with `.ffffff` when there are microseconds."""
    seconds, fraction = np.divmod(_integers(array), 1_000_000)
    text = _columns(len(seconds), b'"00:00:00.000000"')
    _put_time(text, 1, seconds, fraction)
    whole = fraction == 0
    text[9, whole] = ord('"')
    return _rows(text, np.where(whole, 10, 17), array)


def _integers(array: pa.Array) -> np.ndarray:
    """The days or microseconds of a date, time or timestamp array (0 for nulls)."""
    return numbers(array.cast(pa.int32() if pa.types.is_date32(array.type) else pa.int64()), np.int64)


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant)."""
    shifted = days + 719_468
    era = np.floor_divide(shifted, 146_097)
    day_of_era = shifted - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = np.where(month_index < 10, month_index + 3, month_index - 9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


def _columns(count: int, template: bytes) -> np.ndarray:
    """The text of `count` values, one row per character (writing a character of all is contiguous)."""
    text = np.empty((len(template), count), dtype=np.uint8)
    text[:] = np.frombuffer(template, dtype=np.uint8)[:, None]
    return text


def _put_pair(text: np.ndarray, row: int, values: np.ndarray) -> None:
    """Write values below 100 as two digits each."""
    small = values.astype(np.uint8)
    tens = small // 10
    text[row] = tens + 48
    text[row + 1] = small - tens * 10 + 48


def _put_date(text: np.ndarray, row: int, year: np.ndarray, month: np.ndarray, day: np.ndarray) -> None:
    century = year // 100
    _put_pair(text, row, century)
    _put_pair(text, row + 2, year - century * 100)
    _put_pair(text, row + 5, month)
    _put_pair(text, row + 8, day)


def _put_time(text: np.ndarray, row: int, seconds: np.ndarray, fraction: np.ndarray) -> None:
    seconds = seconds.astype(np.int32)
    fraction = fraction.astype(np.int32)
    _put_pair(text, row, seconds // 3600)
    _put_pair(text, row + 3, seconds // 60 % 60)
    _put_pair(text, row + 6, seconds % 60)
    _put_pair(text, row + 9, fraction // 10_000)
    _put_pair(text, row + 11, fraction // 100 % 100)
    _put_pair(text, row + 13, fraction % 100)


def _rows(text: np.ndarray, lengths: np.ndarray, like: pa.Array) -> pa.Array:
    """A string array of the first `lengths[i]` characters of each value of `text` (one row per
    character), null where `like` is null."""
    width, count = text.shape
    valid = None if like.null_count == 0 else valid_rows(like)
    shortest, longest = int(lengths.min()), int(lengths.max())
    if shortest == longest:
        values = np.ascontiguousarray(text[:shortest].T)
        offsets = np.arange(0, shortest * (count + 1), shortest, dtype=np.int32)
        validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.Array.from_buffers(
            pa.string(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(values)]
        )
    begin = np.arange(0, width * count, width, dtype=np.int64)
    return slices(pa.py_buffer(np.ascontiguousarray(text.T)), begin, begin + lengths, valid, pa.string())


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
