"""How big a built-in tap's batches get on the fast path: `batch_size` rows, and `batch_size_bytes`.

A batch (a Parquet file, or an Arrow table handed over in-process) ends at `batch_config.batch_size`
rows or when its Arrow data reaches `batch_size_bytes`, whichever comes first, so that wide rows (long
text, JSON documents, bytea) cannot make a batch, and the memory that holds it, grow without bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from singer_sdk import typing as th

DEFAULT_BATCH_BYTES = 64 * 2**20

SETTING = th.Property(
    "batch_size_bytes",
    th.IntegerType,
    default=DEFAULT_BATCH_BYTES,
    description=(
        "With batch_config: a batch also ends when its data reaches this many bytes (default 64 MiB), "
        "so wide rows keep memory bounded"
    ),
)


def batch_bytes(config: Mapping[str, Any]) -> int:
    """The tap's byte limit of a batch."""
    value = config.get("batch_size_bytes")
    return max(1, int(value)) if value else DEFAULT_BATCH_BYTES


def rows_within(nbytes: int, rows: int, max_rows: int, max_bytes: int) -> int:
    """Rows per batch for rows like these (`rows` of them took `nbytes`): at most `max_rows`, and
    few enough to stay under `max_bytes`; at least one."""
    if rows <= 0 or nbytes <= 0:
        return max_rows
    return max(1, min(max_rows, int(max_bytes * rows // nbytes)))
