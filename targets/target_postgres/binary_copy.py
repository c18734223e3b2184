"""Arrow record batches as PostgreSQL binary COPY data, built column by column without Python rows.

`encode_rows(batch)` returns the tuples of a batch in the `COPY ... FROM STDIN (FORMAT binary)` wire
format (the signature and trailer, `SIGNATURE` and `TRAILER`, are written once per COPY). Each column
is encoded as a whole with numpy and Arrow compute: fixed-width values (integers, floats, booleans,
dates, times, timestamps, numerics) as one big-endian structured array, variable-width values (text,
jsonb, bytea) as a length prefix joined to the value; `binary_join_element_wise` then lays the fields
of each row side by side. The PostgreSQL type each Arrow type is sent as is `types.arrow_column_type`;
the staging table's columns must have exactly those types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from elt.arrowbufs import binary_scalar, numbers, valid_rows
from targets.target_postgres.types import arrow_column_type

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # + flags, extension
TRAILER = b"\xff\xff"

_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days since 1970-01-01
_PG_EPOCH_MICROS = _PG_EPOCH_DAYS * 86_400_000_000
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_NULL_FIELD = binary_scalar(b"\xff\xff\xff\xff")  # length -1
_NO_SEPARATOR = binary_scalar(b"")
_NUMERIC_NEGATIVE = 0x4000
_JSONB_VERSION = b"\x01"


def encode_rows(batch: pa.RecordBatch) -> memoryview:
    """The batch's rows as binary COPY tuples (without the signature and trailer)."""
    if batch.num_rows == 0:
        return memoryview(b"")
    fields = [
        _encode_column(column, field) for column, field in zip(batch.columns, batch.schema, strict=True)
    ]
    count = binary_scalar(len(fields).to_bytes(2, "big"))
    rows = pc.binary_join_element_wise(count, *fields, _NO_SEPARATOR)
    offsets = np.frombuffer(rows.buffers()[1], dtype="<i8")
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + len(rows)])
    return memoryview(rows.buffers()[2])[start:end]


def _encode_column(column: pa.Array, field: pa.Field) -> pa.Array:
    """Each value of the column as one binary COPY field: a 4-byte length, then the value."""
    column_type = column.type
    if pa.types.is_dictionary(column_type):
        return _encode_column(column.dictionary_decode(), field.with_type(column_type.value_type))
    if pa.types.is_string_view(column_type) or pa.types.is_binary_view(column_type):
        plain = pa.large_string() if pa.types.is_string_view(column_type) else pa.large_binary()
        return _encode_column(column.cast(plain), field.with_type(plain))
    encoder = _encoder_for(column_type, field)
    return encoder(column)


def _encoder_for(arrow_type: pa.DataType, field: pa.Field) -> Callable[[pa.Array], pa.Array]:
    pg_type = arrow_column_type(field.with_type(arrow_type))
    if pa.types.is_boolean(arrow_type):
        return lambda column: _fixed(_numbers(column, np.bool_), "?", column)
    if pg_type == "SMALLINT":
        return lambda column: _fixed(_numbers(column, np.int16), ">i2", column)
    if pg_type == "INTEGER":
        return lambda column: _fixed(_numbers(column, np.int32), ">i4", column)
    if pg_type == "BIGINT":
        return lambda column: _fixed(_numbers(column, np.int64), ">i8", column)
    if pg_type == "REAL":
        return lambda column: _fixed(_numbers(column.cast(pa.float32()), np.float32), ">f4", column)
    if pg_type == "DOUBLE PRECISION":
        return lambda column: _fixed(_numbers(column, np.float64), ">f8", column)
    if pa.types.is_decimal(arrow_type) or pa.types.is_uint64(arrow_type):
        return _numeric
    if pa.types.is_date(arrow_type):
        return _date
    if pa.types.is_time(arrow_type):
        return _time
    if pa.types.is_timestamp(arrow_type):
        return _timestamp
    if pa.types.is_null(arrow_type):
        return lambda column: pa.repeat(_NULL_FIELD, len(column))
    if pg_type == "JSONB" and (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
        return lambda column: _prefixed(column, _JSONB_VERSION)
    if pg_type == "JSONB":
        return _nested_as_jsonb
    if pg_type in ("TEXT", "BYTEA"):
        return _prefixed
    raise TypeError(f"Arrow type {arrow_type} has no binary COPY encoding")


def _numbers(column: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    """The column's values as a numpy array (nulls as zeros; `_fixed` marks them null again)."""
    return numbers(column, dtype)


def _fixed(values: np.ndarray, big_endian: str, column: pa.Array) -> pa.Array:
    """Fixed-width fields: the length (the value's width), then the value in network byte order."""
    width = np.dtype(big_endian).itemsize
    fields = np.empty(len(values), dtype=np.dtype([("length", ">i4"), ("value", big_endian)]))
    fields["length"] = width
    fields["value"] = values
    return _with_nulls(_fixed_size_binary(fields), column)


def _fixed_size_binary(fields: np.ndarray) -> pa.Array:
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(fields.dtype.itemsize), len(fields), [None, pa.py_buffer(fields)]
    )
    return array.cast(pa.large_binary())


def _with_nulls(encoded: pa.Array, column: pa.Array) -> pa.Array:
    if not column.null_count:
        return encoded
    return pc.if_else(column.is_valid(), encoded, _NULL_FIELD)


def _prefixed(column: pa.Array, prefix: bytes = b"") -> pa.Array:
    """Variable-width fields (text, bytea, jsonb): the length, `prefix`, then the bytes."""
    data = column.cast(pa.large_binary())
    lengths = numbers(pc.binary_length(data), np.int64)
    header = np.empty(len(data), dtype=np.dtype([("length", ">i4")]))
    header["length"] = lengths + len(prefix)
    parts = [_fixed_size_binary(header)]
    if prefix:
        parts.append(binary_scalar(prefix))
    parts.append(data)
    joined = pc.binary_join_element_wise(*parts, _NO_SEPARATOR)  # a null value makes a null field
    return pc.fill_null(joined, _NULL_FIELD) if column.null_count else joined


def _nested_as_jsonb(column: pa.Array) -> pa.Array:
    """Lists, structs and maps as JSON text (rare: the fast path sends JSON as text already)."""
    from targets.target_duckdb.batches import json_text

    texts = [None if value is None else json_text(value) for value in column.to_pylist()]
    return _prefixed(pa.array(texts, pa.large_string()), _JSONB_VERSION)


def _date(column: pa.Array) -> pa.Array:
    days = column.cast(pa.date32()).cast(pa.int32())
    return _fixed(_numbers(days, np.int64) - _PG_EPOCH_DAYS, ">i4", column)


def _time(column: pa.Array) -> pa.Array:
    raw = column.cast(pa.int64() if column.type.bit_width == 64 else pa.int32())
    micros = _to_micros(raw, column.type.unit)
    return _fixed(micros, ">i8", column)


def _timestamp(column: pa.Array) -> pa.Array:
    micros = _to_micros(column.cast(pa.int64()), column.type.unit)
    return _fixed(micros - _PG_EPOCH_MICROS, ">i8", column)


def _to_micros(raw: pa.Array, unit: str) -> np.ndarray:
    values = _numbers(raw, np.int64)
    if unit == "ns":
        # PostgreSQL keeps microseconds; round to the nearest one, as its own text input does.
        return np.floor_divide(values + 500, 1000)
    return values * _MICROS_PER_UNIT[unit]


def _numeric(column: pa.Array) -> pa.Array:
    """Decimals as PostgreSQL numerics: sign, weight, scale and base-10000 digits.

    The unscaled integer of each decimal is split into 32-bit limbs and divided by 10000 until
    every digit is out, all rows at once; every row of a column gets the same number of digits
    (PostgreSQL strips leading and trailing zero digits when it stores the value).
    """
    column_type = column.type
    if pa.types.is_uint64(column_type):
        column = column.cast(pa.decimal128(20, 0))
    elif column_type.scale < 0:
        column = column.cast(pa.decimal256(column_type.precision - column_type.scale, 0))
    scale = column.type.scale
    limbs, negative = _magnitude_limbs(column)
    if column.null_count:  # null slots may hold any bits; as zeros they add no digits
        valid = valid_rows(column)
        limbs = [np.where(valid, limb, np.uint64(0)) for limb in limbs]
        negative = negative & valid
    rows = len(column)

    def divide(divisor: int) -> np.ndarray:
        remainder = np.zeros(rows, np.uint64)
        for i, limb in enumerate(limbs):
            current = (remainder << np.uint64(32)) | limb
            limbs[i] = current // np.uint64(divisor)
            remainder = current % np.uint64(divisor)
        return remainder

    # Base-10000 digits line up with the decimal point: a scale that is not a multiple of 4 leaves
    # a last fractional digit group of fewer decimal digits, scaled up to four. Integer digit groups
    # are taken until every value is used up (not trusting each value to fit the declared precision).
    digits: list[np.ndarray] = []  # least significant first
    odd = scale % 4
    if odd:
        digits.append(divide(10**odd) * np.uint64(10 ** (4 - odd)))
    for _ in range((scale - odd) // 4):
        digits.append(divide(10_000))
    integer_groups = 0
    while any(limb.any() for limb in limbs):
        digits.append(divide(10_000))
        integer_groups += 1
    digits.reverse()
    count = len(digits)
    layout: list[tuple[Any, ...]] = [
        ("length", ">i4"),
        ("ndigits", ">i2"),
        ("weight", ">i2"),
        ("sign", ">u2"),
        ("dscale", ">i2"),
    ]
    if count:
        layout.append(("digits", ">i2", (count,)))
    fields = np.empty(rows, dtype=np.dtype(layout))
    fields["length"] = 8 + 2 * count
    fields["ndigits"] = count
    fields["weight"] = integer_groups - 1
    fields["sign"] = np.where(negative, _NUMERIC_NEGATIVE, 0)
    fields["dscale"] = scale
    if count:
        fields["digits"] = np.stack(digits, axis=1).astype(np.int16)
    return _with_nulls(_fixed_size_binary(fields), column)


def _magnitude_limbs(column: pa.Array) -> tuple[list[np.ndarray], np.ndarray]:
    """Absolute values of a decimal column's unscaled integers as 32-bit limbs (most significant first)."""
    words = column.type.byte_width // 8  # 2 for decimal128, 4 for decimal256
    rows = len(column)
    raw = np.frombuffer(column.buffers()[1], dtype="<u8")
    raw = raw[words * column.offset : words * (column.offset + rows)].reshape(rows, words)
    negative = (raw[:, -1] >> np.uint64(63)).astype(bool)
    # Two's complement negation of the negative values: invert every word, then add one with carry.
    magnitude = np.where(negative[:, None], ~raw, raw)
    carry = negative.astype(np.uint64)
    for word in range(words):
        total = magnitude[:, word] + carry
        carry = carry & (total == 0)
        magnitude[:, word] = total
    low_mask = np.uint64(0xFFFFFFFF)
    limbs: list[np.ndarray] = []
    for word in reversed(range(words)):
        limbs.append(magnitude[:, word] >> np.uint64(32))
        limbs.append(magnitude[:, word] & low_mask)
    return limbs, negative
