"""Parquet files of a stream's rows, at most `batch_size` rows each, for Singer BATCH messages.

Files are written through singer-sdk's storage target (`batch_config.storage`), which makes a local
file appear under its name only once it is complete. A file is written a decoded chunk at a time
(one row group each), so memory holds one chunk, whatever `batch_size` is. When elt runs the tap and
its target in one process, a batch is handed over as an Arrow table instead (elt/handoff.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack

import pyarrow as pa
import pyarrow.parquet as pq
from singer_sdk.helpers._batch import StorageTarget

from elt import handoff


def cut(
    chunks: Iterable[list[pa.Array]], rows: int, max_bytes: int | None = None
) -> Iterator[tuple[list[pa.Array], bool]]:
    """The chunks sliced so that every `rows` rows end a file, and a chunk that brings a file to
    `max_bytes` of Arrow data ends it too: (arrays, whether they end the file)."""
    room = rows
    size = 0
    for arrays in chunks:
        count = len(arrays[0]) if arrays else 0
        start = 0
        while start < count:
            take = min(room, count - start)
            part = arrays if take == count else [array.slice(start, take) for array in arrays]
            start += take
            room -= take
            if max_bytes:
                size += sum(array.nbytes for array in arrays) * take // count
            full = room == 0 or bool(max_bytes and size >= max_bytes)
            yield part, full
            if full:
                room, size = rows, 0


class ParquetFiles:
    """Writes one stream's Parquet files, one after the other, and names them."""

    def __init__(self, storage: StorageTarget, stream: str, schema: pa.Schema, compression: str | None):
        self.storage = storage
        self.stream = stream
        self.schema = schema
        self.compression = compression or "none"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stream)
        self._name = f"{storage.prefix or ''}{safe}-{{:06d}}-{uuid.uuid4().hex[:8]}.parquet"
        self._count = 0
        self._open: tuple[ExitStack, pq.ParquetWriter, str] | None = None
        # With elt's in-process root, a "file" is the Arrow table itself (elt/handoff.py).
        self._in_process: list[pa.RecordBatch] | None = [] if handoff.is_handoff(storage.root) else None

    def write(self, arrays: Sequence[pa.Array]) -> None:
        """Append rows (one array per column of the schema) to the file being written."""
        if self._in_process is not None:
            self._in_process.append(pa.RecordBatch.from_arrays(list(arrays), schema=self.schema))
            return
        if self._open is None:
            self._count += 1
            filename = self._name.format(self._count)
            stack = ExitStack()
            handle = stack.enter_context(self.storage.open(filename, "wb"))
            writer = pq.ParquetWriter(handle, self.schema, compression=self.compression)
            stack.callback(writer.close)
            self._open = (stack, writer, filename)
        self._open[1].write_batch(pa.RecordBatch.from_arrays(list(arrays), schema=self.schema))

    def finish(self) -> str | None:
        """Complete the file being written; its URL, or None if none was started."""
        if self._in_process:
            # One chunk per column: DuckDB inserts a table of one chunk twice as fast as one of several.
            table = pa.Table.from_batches(self._in_process, schema=self.schema).combine_chunks()
            self._in_process = []
            return handoff.put(table, self.stream)
        if self._open is None:
            return None
        stack, _, filename = self._open
        self._open = None
        stack.close()
        return self.storage.get_url(filename)

    def abandon(self) -> None:
        """Close the file being written after a failure (it is not announced)."""
        if self._in_process:
            self._in_process = []
        if self._open is not None:
            self._open[0].close()
            self._open = None
