"""`COPY (…) TO STDOUT (FORMAT binary)` into Arrow arrays, a batch of rows at a time.

PostgreSQL sends each row as one CopyData message (the first also carries the file header, the
last message is the trailer). A batch's messages are joined into one buffer and decoded column by
column with numpy: the position of the next field is worked out for all rows of the batch at once,
so no Python code runs per row or per value. Text is cut out of the buffer by Arrow's `take`.

Values PostgreSQL has but Arrow and JSON do not (`infinity` dates and timestamps) are read as null.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import psycopg.errors
import psycopg.pq
import pyarrow as pa
import pyarrow.compute as pc

from elt.arrowbufs import from_numpy, validity
from taps.tap_postgres.pgtypes import ColumnType, Wire

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
TRAILER = b"\xff\xff"
_PAD = bytes(16)  # fixed-width reads at a NULL's position may run past the last row; they read this
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in microseconds since 1970
_PG_EPOCH_DAYS = 10_957
_SPANS = {width: np.arange(width, dtype=np.int64) for width in range(1, 21)}
_HEX = np.array([[ord(f"{b:02x}"[0]), ord(f"{b:02x}"[1])] for b in range(256)], dtype=np.uint8)
# Built from buffers, as every array here: pa.array() would import pandas (0.2 s at every start).
NOT_NUMBERS = pa.Array.from_buffers(
    pa.string(),
    3,
    [None, pa.py_buffer(np.array([0, 3, 11, 20], np.int32)), pa.py_buffer(b"NaNInfinity-Infinity")],
)


class CopyFormatError(Exception):
    """The COPY stream is not the binary format of the columns asked for."""


def copy_batches(
    cursor: psycopg.Cursor[Any],
    statement: str,
    wires: Sequence[Wire],
    rows: int,
    max_bytes: int | None = None,
) -> Iterator[list[pa.Array]]:
    """Run `statement`, a `COPY (…) TO STDOUT (FORMAT binary)`, and decode its rows `rows` at a time,
    or fewer when they come to `max_bytes` of COPY data first (wide rows: memory stays bounded).

    Each list holds one array per column, typed by its wire format (numeric text is a string array,
    for instance); `to_arrow` gives them the columns' Arrow types.

    This loop is the only Python that runs per row, so it does little: psycopg's `Copy.read()` costs
    about a microsecond a row, more than decoding the row, so rows libpq has already received are
    taken from it directly (`get_copy_data` without waiting) and `read()` is called only to wait
    for more. Rows are appended to one buffer rather than kept as objects, which would leave a
    hundred thousand of them for the garbage collector to walk again and again.
    """
    if not wires:
        raise CopyFormatError("no columns to read")
    with cursor.copy(statement) as copy:
        pgconn = cursor.connection.pgconn
        get = pgconn.get_copy_data
        first = copy.read()
        if not first:
            return
        data = bytearray(_without_header(first))
        lengths = array("q", [len(data)])
        append = lengths.append
        left = rows - 1
        limit = max_bytes or 0
        while True:
            if left <= 0 or (limit and len(data) >= limit):
                if batch := _batch(data, lengths, wires):
                    yield batch
                data, lengths, left = bytearray(), array("q"), rows
                append = lengths.append
            size, message = get(1)
            if size > 0:
                data += message
            elif size < 0:
                _finish(pgconn)
                break
            else:
                waited = copy.read()  # waits for the server; empty at the end of the COPY
                if not waited:
                    break
                size = len(waited)
                data += waited
            append(size)
            left -= 1
        if batch := _batch(data, lengths, wires):
            yield batch


def _batch(data: bytearray, lengths: array[int], wires: Sequence[Wire]) -> list[pa.Array] | None:
    """The rows' arrays, the COPY's trailer left out (a two-byte message: no row is that short)."""
    if lengths and lengths[-1] == len(TRAILER) and data.endswith(TRAILER):
        del data[-len(TRAILER) :]
        lengths.pop()
    return decode_rows(data, lengths, wires) if lengths else None


def _finish(pgconn: psycopg.pq.abc.PGconn) -> None:
    """Collect the results that follow the COPY data, as `Copy.read()` would; raise if it failed."""
    failed = None
    while (result := pgconn.get_result()) is not None:
        if result.status != psycopg.pq.ExecStatus.COMMAND_OK and failed is None:
            failed = result
    if failed is not None:
        message = (failed.error_message or b"the COPY failed").decode("utf-8", "replace").strip()
        sqlstate = failed.error_field(psycopg.pq.DiagnosticField.SQLSTATE)
        error = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.DatabaseError
        raise error(message)


def decode_rows(data: bytearray, lengths: array[int], wires: Sequence[Wire]) -> list[pa.Array]:
    """Decode whole rows, joined in `data` (header removed), `lengths` bytes each, into column arrays.

    `data` is padded and then belongs to the arrays: it must not change afterwards.
    """
    count = len(lengths)
    if int.from_bytes(data[:2], "big") != len(wires):
        raise CopyFormatError(f"rows have {int.from_bytes(data[:2], 'big')} fields, expected {len(wires)}")
    position = np.zeros(count, dtype=np.int64)
    np.cumsum(np.frombuffer(lengths, dtype=np.int64)[:-1], out=position[1:])
    position += 2  # the row's field count
    data += _PAD
    buf = np.frombuffer(data, dtype=np.uint8)
    holder = pa.py_buffer(data)
    arrays = []
    for wire in wires:
        width = _WIDTHS.get(wire)
        if width is None:
            sizes = _integers(buf, position, 4)
            valid = sizes >= 0
            sizes = np.maximum(sizes, 0)
            at = position + 4
            skip = 1 if wire is Wire.JSONB else 0  # jsonb's binary form is a version byte, then the text
            arrays.append(slices(holder, at + skip * valid, at + sizes, valid, _WIRE_TYPES[wire]))
            position = at + sizes
        else:
            # A fixed-width value is read together with its length, in one gather.
            block = buf[position[:, None] + _SPANS[4 + width]]
            sizes = np.ascontiguousarray(block[:, :4]).view(">i4")[:, 0]
            valid = sizes >= 0
            if (sizes[valid] != width).any():
                raise CopyFormatError(f"a {wire.value} value is not {width} bytes long")
            arrays.append(_fixed(wire, np.ascontiguousarray(block[:, 4:]), valid))
            position = position + 4 + width * valid
    return arrays


def to_arrow(column: ColumnType, array: pa.Array) -> pa.Array:
    """A decoded column in the column's Arrow type (numeric text becomes decimal128 or float64)."""
    if array.type == column.arrow_type:
        return array
    if column.nan_is_null:
        array = pc.if_else(pc.is_in(array, value_set=NOT_NUMBERS), pa.nulls(len(array), array.type), array)
    return pc.cast(array, column.arrow_type)


# -- decoding -------------------------------------------------------------------------------------


def _integers(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The big-endian signed integers of `width` bytes at each position."""
    return buf[at[:, None] + _SPANS[width]].view(f">i{width}")[:, 0].astype(np.int64)


def _fixed(wire: Wire, raw: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Fixed-width values, `raw` holding each row's bytes (garbage where not `valid`)."""
    if wire in _NUMBERS:
        dtype, arrow_type = _NUMBERS[wire]
        values = raw.view(dtype)[:, 0]
        return from_numpy(values.astype(values.dtype.newbyteorder("=")), arrow_type, valid)
    if wire is Wire.BOOL:
        bits = np.packbits(raw[:, 0] != 0, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(raw), [validity(valid), pa.py_buffer(bits)])
    if wire is Wire.DATE:
        days = raw.view(">i4")[:, 0].astype(np.int64)
        valid = valid & (days != np.iinfo(np.int32).max) & (days != np.iinfo(np.int32).min)
        days = np.where(valid, days, 0) + _PG_EPOCH_DAYS
        return from_numpy(days.astype(np.int32), pa.date32(), valid)
    if wire in (Wire.TIMESTAMP, Wire.TIMESTAMPTZ):
        micros = raw.view(">i8")[:, 0].astype(np.int64)
        valid = valid & (micros != np.iinfo(np.int64).max) & (micros != np.iinfo(np.int64).min)
        micros = np.where(valid, micros, 0) + _PG_EPOCH_US
        return from_numpy(micros, _WIRE_TYPES[wire], valid)
    return _uuids(raw, valid)


def slices(
    holder: pa.Buffer, begin: np.ndarray, end: np.ndarray, valid: np.ndarray | None, arrow_type: pa.DataType
) -> pa.Array:
    """An array of the bytes [begin, end) of `holder` for each row (ranges in increasing order).

    The offsets (begin0, end0, begin1, end1, …) make an array of 2n values over the holder whose even
    values are the wanted ones (the odd ones span what lies between), and `take` copies those out in
    one pass.
    """
    count = len(begin)
    if count == 0:
        return pa.nulls(0, arrow_type)
    large = holder.size >= 2**31
    offsets = np.empty(2 * count + 1, dtype=np.int64 if large else np.int32)
    offsets[0:-1:2] = begin
    offsets[1::2] = end
    offsets[-1] = end[-1]
    spans = pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(), 2 * count, [None, pa.py_buffer(offsets), holder]
    )
    taken = spans.take(from_numpy(np.arange(0, 2 * count, 2, dtype=np.int64), pa.int64(), None))
    if large:
        taken = taken.cast(pa.binary())
    return pa.Array.from_buffers(arrow_type, count, [validity(valid), *taken.buffers()[1:]])


def _uuids(raw: np.ndarray, valid: np.ndarray) -> pa.Array:
    """16 bytes each, as the 36 characters of their canonical text."""
    count = len(raw)
    digits = _HEX[raw].reshape(count, 32)
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    for start, stop, source in ((0, 8, 0), (9, 13, 8), (14, 18, 12), (19, 23, 16), (24, 36, 20)):
        text[:, start:stop] = digits[:, source : source + stop - start]
    offsets = np.arange(0, 36 * (count + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [validity(valid), pa.py_buffer(offsets), pa.py_buffer(text)]
    )


def _without_header(message: Any) -> Any:
    view = memoryview(message)
    if bytes(view[:11]) != SIGNATURE:
        raise CopyFormatError("the COPY stream does not start with the binary signature")
    extension = int.from_bytes(view[15:19], "big")
    return view[19 + extension :]


_WIDTHS = {
    Wire.INT16: 2,
    Wire.INT32: 4,
    Wire.INT64: 8,
    Wire.FLOAT32: 4,
    Wire.FLOAT64: 8,
    Wire.BOOL: 1,
    Wire.UUID: 16,
    Wire.DATE: 4,
    Wire.TIME: 8,
    Wire.TIMESTAMP: 8,
    Wire.TIMESTAMPTZ: 8,
}

_NUMBERS: dict[Wire, tuple[str, pa.DataType]] = {
    Wire.INT16: (">i2", pa.int16()),
    Wire.INT32: (">i4", pa.int32()),
    Wire.INT64: (">i8", pa.int64()),
    Wire.FLOAT32: (">f4", pa.float32()),
    Wire.FLOAT64: (">f8", pa.float64()),
    Wire.TIME: (">i8", pa.time64("us")),
}

_WIRE_TYPES: dict[Wire, pa.DataType] = {
    **{wire: arrow_type for wire, (_, arrow_type) in _NUMBERS.items()},
    Wire.BOOL: pa.bool_(),
    Wire.TEXT: pa.string(),
    Wire.JSONB: pa.string(),
    Wire.BYTES: pa.binary(),
    Wire.UUID: pa.string(),
    Wire.DATE: pa.date32(),
    Wire.TIMESTAMP: pa.timestamp("us"),
    Wire.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
}
