"""The stream of one table or view: its catalog entry, and its rows as records or as Parquet batches.

Rows are read with an unbuffered (server-side) cursor, a chunk at a time, so memory holds one chunk
whatever the table's size. FULL_TABLE reads every row. INCREMENTAL reads the rows whose replication
key is at or above the bookmark, ordered by it: rows *at* the bookmark are read again on the next
sync, so a row written later with the same value as the last one read is not lost; loading by key
(upsert) makes the repeat harmless. Rows whose replication key is NULL are read on a sync without a
bookmark only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pymysql.cursors
from singer_sdk import Stream
from singer_sdk import singerlib as singer
from singer_sdk.exceptions import FatalSyncError, InvalidReplicationKeyException
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib.catalog import (
    REPLICATION_FULL_TABLE,
    REPLICATION_INCREMENTAL,
    Metadata,
    StreamMetadata,
)

from elt import handoff
from taps.batch_limits import batch_bytes, rows_within
from taps.tap_mysql.columns import Column, TimeOutOfRange
from taps.tap_mysql.connection import connect
from taps.tap_mysql.discovery import Table

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context

RECORD_CHUNK_ROWS = 10_000  # rows fetched at a time on the record path
FIRST_BATCH_ROWS = 1_000  # the first batch's rows, which tell how many fit in batch_size_bytes
PARQUET_COMPRESSION = "zstd"  # Parquet compresses its pages itself; files are never compressed whole


@dataclass(slots=True)
class TableMetadata(StreamMetadata):
    """The stream's catalog metadata, with the keys the Singer MySQL taps add."""

    replication_method: str | None = None
    database_name: str | None = None
    is_view: bool | None = None
    row_count: int | None = None


@dataclass(slots=True)
class ColumnMetadata(Metadata):
    """A property's catalog metadata, with the column's MySQL type."""

    sql_datatype: str | None = None


class BookmarkError(FatalSyncError):
    """A bookmark in the state is not a value of the stream's replication key."""


class ReplicationMethodError(FatalSyncError):
    """The catalog asks for a replication method this tap does not have (LOG_BASED)."""


class ColumnValueError(FatalSyncError):
    """A value the stream's types cannot hold (a TIME outside a day)."""


class TableStream(Stream):
    """The rows of one table or view."""

    is_sorted = True  # incremental rows come ordered by the replication key: bookmarks advance as they go
    # MySQL orders by the column's collation, which Python's string order need not match; the
    # database's order is the one bookmarks follow.
    check_sorted = False
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # rows are made JSON-ready from the column types

    def __init__(self, tap: Tap, table: Table) -> None:
        schema = {"type": "object", "properties": {c.name: c.json_schema() for c in table.columns}}
        super().__init__(tap, schema=schema, name=table.stream_name)
        self.table = table
        self.primary_keys = list(table.primary_key)

    @property
    def schema(self) -> dict[str, Any]:
        """The input catalog's schema of this stream if given, else the discovered one."""
        return self._input_schema or super().schema

    @property
    def metadata(self) -> singer.MetadataMapping:
        """The input catalog's metadata; when discovering, the table's (see `discovered_metadata`)."""
        if self._metadata is None and not (
            self._tap_input_catalog and self._tap_input_catalog.get_stream(self.tap_stream_id)
        ):
            self._metadata = self.discovered_metadata()
            self._metadata.root.selected = self._tap_input_catalog is None and self.selected_by_default
        return super().metadata

    def discovered_metadata(self) -> singer.MetadataMapping:
        """Key properties, every sortable column as a valid replication key, FULL_TABLE by default,
        and each column's MySQL type as `sql-datatype`."""
        table = self.table
        mapping = singer.MetadataMapping()
        mapping[()] = TableMetadata(
            inclusion=Metadata.InclusionType.AVAILABLE,
            selected_by_default=self.selected_by_default,
            table_key_properties=list(table.primary_key),
            valid_replication_keys=[c.name for c in table.columns if c.sortable],
            replication_method=REPLICATION_FULL_TABLE,
            database_name=table.database,
            is_view=table.is_view,
            row_count=table.row_count,
        )
        for column in table.columns:
            automatic = column.name in table.primary_key
            mapping[("properties", column.name)] = ColumnMetadata(
                inclusion=Metadata.InclusionType.AUTOMATIC if automatic else Metadata.InclusionType.AVAILABLE,
                selected_by_default=True,
                sql_datatype=column.column_type,
            )
        return mapping

    @property
    def _singer_catalog_entry(self) -> singer.CatalogEntry:
        # The replication method goes in the metadata only (`replication-method`), where a
        # catalog's override of it is read (see `TapMySQL.__init__`).
        return singer.CatalogEntry(
            tap_stream_id=self.tap_stream_id,
            stream=self.name,
            schema=singer.Schema.from_dict(self.schema),
            metadata=self.metadata,
            key_properties=list(self.table.primary_key),
            is_view=self.table.is_view,
            database=self.table.database,
            table=self.table.name,
            row_count=self.table.row_count,
        )

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """None: rows come in key order, so the bookmark is the last row's value, never capped."""
        return None

    # -- the record path --------------------------------------------------------------------------

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The rows as JSON-ready dicts, in replication-key order when incremental."""
        columns = self.selected_columns()
        names = [column.name for column in columns]
        converters = [(i, convert) for i, c in enumerate(columns) if (convert := c.json_converter())]
        for rows in self._chunks(columns, context, RECORD_CHUNK_ROWS):
            for row in rows:
                values = list(row)
                index = 0
                try:
                    for index, convert in converters:
                        if values[index] is not None:
                            values[index] = convert(values[index])
                except TimeOutOfRange as exc:
                    raise self._value_error(columns[index], exc) from exc
                yield dict(zip(names, values, strict=True))

    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        if self.replication_key:
            value = latest_record.get(self.replication_key)
            if value is None:
                return  # a NULL replication key never moves the bookmark
            if isinstance(value, Decimal):
                # as text: a JSON number read back as a float could land above the true value
                latest_record = {self.replication_key: str(value)}
        super()._increment_stream_state(latest_record, context=context)

    # -- the fast path ----------------------------------------------------------------------------

    def get_batch_config(self, config: Mapping[str, Any]) -> BatchConfig | None:
        """singer-sdk's `batch_config`, unless stream maps or flattening are configured: they work on
        records, so the stream stays on the record path rather than write files they never saw."""
        if config.get("batch_config") and (config.get("stream_maps") or config.get("flattening_enabled")):
            self.logger.info(
                "Stream '%s': stream maps or flattening are configured; writing records", self.name
            )
            return None
        return super().get_batch_config(config)

    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """The rows `get_records` would emit, as Parquet files of at most `batch_size` rows.

        Each chunk of the cursor goes into Arrow columns of the columns' exact types directly. Before
        a file is announced, the stream state's bookmark is the last row it holds, so the STATE that
        singer-sdk writes after the BATCH message covers exactly the files announced so far.
        """
        self._write_starting_replication_value(context)
        columns = self.selected_columns()
        schema = pa.schema([column.arrow_field() for column in columns])
        key = self._replication_column(columns)
        key_index = columns.index(key) if key else None
        storage = batch_config.storage
        stem = f"{storage.prefix or ''}{re.sub(r'[^A-Za-z0-9_.-]', '_', self.name)}-{uuid.uuid4().hex[:12]}"
        max_rows = batch_config.batch_size or 100_000
        max_bytes = batch_bytes(self.config)
        # The first file is small: it tells how wide the rows are, and so how many fit in max_bytes.
        size = [min(max_rows, FIRST_BATCH_ROWS)]
        chunks = self._chunks(columns, context, lambda: size[0], decode=False)
        for number, rows in enumerate(chunks, start=1):
            arrays = []
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                try:
                    arrays.append(column.arrow_array(values))
                except TimeOutOfRange as exc:
                    raise self._value_error(column, exc) from exc
            filename = f"{stem}-{number:06d}.parquet"
            table = pa.Table.from_arrays(arrays, schema=schema)
            size[0] = rows_within(table.nbytes, table.num_rows, max_rows, max_bytes)
            if handoff.is_handoff(storage.root):  # elt runs the tap and its target in one process
                url = handoff.put(table, self.name)
            else:
                with storage.open(filename, mode="wb") as handle:
                    pq.write_table(table, handle, compression=PARQUET_COMPRESSION)
                url = storage.get_url(filename)
            if key is not None and key_index is not None:
                last = arrays[key_index][-1].as_py()  # rows come ordered by the key: the greatest
                if last is not None:
                    self._increment_stream_state({key.name: key.json_value(last)}, context=context)
            self.logger.info("Wrote %d rows of '%s' to %s", len(rows), self.name, filename)
            yield batch_config.encoding, [url]
        # singer-sdk finalizes the state on the record path only; the last STATE drops its markers.
        self._finalize_state(self.stream_state)
        self.state_manager.is_flushed = False
        self._write_state_message()

    # -- reading ----------------------------------------------------------------------------------

    def selected_columns(self) -> list[Column]:
        """The table's columns that the catalog selects (keys and the replication key always)."""
        properties = self.schema.get("properties") or {}
        always = {*self.primary_keys, *([self.replication_key] if self.replication_key else [])}
        live = {column.name for column in self.table.columns}
        if gone := [name for name in properties if name not in live]:
            self.logger.warning(
                "Stream '%s': the catalog's columns %s are no longer in the table; they are not read",
                self.name,
                ", ".join(gone),
            )
        return [
            column
            for column in self.table.columns
            if column.name in properties and (column.name in always or self.mask[("properties", column.name)])
        ]

    def _replication_column(self, columns: Sequence[Column]) -> Column | None:
        """The replication key's column when the stream is incremental; raises when it cannot be one."""
        if self.replication_method == REPLICATION_FULL_TABLE:
            return None
        if self.replication_method != REPLICATION_INCREMENTAL:
            raise ReplicationMethodError(
                f"tap-mysql: stream '{self.name}': replication method {self.replication_method} is not "
                "supported (binlog replication is not read); set `replication-method` to INCREMENTAL (with a "
                "`replication-key`) or FULL_TABLE"
            )
        by_name = {column.name: column for column in columns}
        column = by_name.get(self.replication_key or "")
        if column is None or not column.sortable:
            valid = ", ".join(c.name for c in self.table.columns if c.sortable) or "none"
            problem = "is not set" if not self.replication_key else f"'{self.replication_key}' cannot be one"
            raise InvalidReplicationKeyException(
                f"tap-mysql: stream '{self.name}' is INCREMENTAL but its replication key {problem}; "
                f"set `replication-key` to one of: {valid}"
            )
        return column

    def _query(self, columns: Sequence[Column], context: Context | None) -> tuple[str, tuple[Any, ...]]:
        selected = ", ".join(_quote(column.name) for column in columns)
        sql = f"SELECT {selected} FROM {_quote(self.table.database)}.{_quote(self.table.name)}"
        key = self._replication_column(columns)
        if key is None:
            return sql, ()
        params: tuple[Any, ...] = ()
        bookmark = self.get_starting_replication_key_value(context)
        if bookmark is not None:
            try:
                params = (key.bookmark_value(bookmark),)
            except (TypeError, ValueError) as exc:
                raise BookmarkError(
                    f"tap-mysql: stream '{self.name}': the state's bookmark {bookmark!r} is not a value of "
                    f"'{key.name}' ({key.column_type}); pass the state of a sync with this replication key, "
                    "or none for a full sync"
                ) from exc
            sql += f" WHERE {_quote(key.name)} >= %s"
        return f"{sql} ORDER BY {_quote(key.name)}", params

    def _chunks(
        self,
        columns: Sequence[Column],
        context: Context | None,
        size: int | Callable[[], int],
        *,
        decode: bool = True,
    ) -> Iterator[Sequence[tuple[Any, ...]]]:
        """The query's rows, `size` at a time (asked again before each chunk if it is a function), from
        an unbuffered cursor on a connection of its own; decoded into Python values, or
        (`decode=False`) as the server's text."""
        rows_per_chunk = size if callable(size) else lambda: size
        sql, params = self._query(columns, context)
        self.logger.info("Reading '%s': %s", self.name, sql)
        connection = connect(self.config, decode=decode)
        try:
            cursor = connection.cursor(pymysql.cursors.SSCursor)
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(rows_per_chunk()):
                yield rows
            cursor.close()
        finally:
            # Closing the connection (not the cursor) does not read the rest of an abandoned result.
            connection.close()

    def _value_error(self, column: Column, exc: Exception) -> ColumnValueError:
        return ColumnValueError(
            f"tap-mysql: stream '{self.name}': column '{column.name}' ({column.column_type}): {exc}; "
            "read the table through a view that casts the column (e.g. to CHAR), or deselect it"
        )


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"
