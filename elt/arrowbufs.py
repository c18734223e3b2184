"""Arrow arrays and numpy values exchanged through their buffers, for the connectors' hot paths.

pyarrow imports pandas (0.2 s and 35 MB on this machine) the first time `pa.array()`, `pa.scalar()`,
`Array.to_numpy()` or a compute function given a plain Python value runs, whenever pandas is
installed, as it is here (Python blocks use it). A sync needs none of it: these helpers build arrays and
scalars from buffers and read values back through them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_ARROW_TYPES = {
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
    np.dtype(np.float32): pa.float32(),
    np.dtype(np.float64): pa.float64(),
}


def from_numpy(
    values: np.ndarray, arrow_type: pa.DataType | None = None, valid: np.ndarray | None = None
) -> pa.Array:
    """An Arrow array over numpy values of the type's width (`arrow_type` defaults to the dtype's),
    null where `valid` is false."""
    values = np.ascontiguousarray(values)
    arrow_type = arrow_type or _ARROW_TYPES[values.dtype]
    return pa.Array.from_buffers(arrow_type, len(values), [validity(valid), pa.py_buffer(values)])


def validity(valid: np.ndarray | None) -> pa.Buffer | None:
    """A validity bitmap for `valid` (None when every value is valid)."""
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def valid_rows(array: pa.Array) -> np.ndarray:
    """Whether each value of `array` is not null, as numpy booleans."""
    bitmap = array.buffers()[0]
    if bitmap is None or array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)


def numbers(array: pa.Array, dtype: type[np.generic] | np.dtype) -> np.ndarray:
    """A fixed-width (or boolean) array's values as numpy `dtype`, nulls as zero."""
    width = len(array)
    data = array.buffers()[1]
    if data is None:
        return np.zeros(width, dtype=dtype)
    if pa.types.is_boolean(array.type):
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        values = bits[array.offset : array.offset + width].astype(dtype)
    else:
        native = np.dtype(array.type.to_pandas_dtype()) if not pa.types.is_temporal(array.type) else None
        native = native or np.dtype(f"i{array.type.bit_width // 8}")
        values = np.frombuffer(data, dtype=native, count=array.offset + width)[array.offset :].astype(dtype)
    if array.null_count:
        values[~valid_rows(array)] = 0
    return values


def string_scalar(value: str) -> pa.Scalar:
    """A string scalar, for compute functions' arguments."""
    return binary_scalar(value.encode(), pa.string())


def binary_scalar(value: bytes, arrow_type: pa.DataType | None = None) -> pa.Scalar:
    """A binary (or string) scalar of `arrow_type` (default large_binary)."""
    arrow_type = arrow_type or pa.large_binary()
    large = arrow_type in (pa.large_binary(), pa.large_string())
    offsets = np.array([0, len(value)], dtype=np.int64 if large else np.int32)
    array = pa.Array.from_buffers(arrow_type, 1, [None, pa.py_buffer(offsets), pa.py_buffer(value)])
    return array[0]
