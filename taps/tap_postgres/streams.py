"""A table or view as a Singer stream: FULL_TABLE or INCREMENTAL, read through binary COPY.

Rows are decoded a batch at a time into Arrow arrays (`binary_copy`) and go out either as RECORD
lines built for the whole batch at once (`record_lines`), or, when the config has a Parquet
`batch_config`, as Parquet files announced by BATCH messages (`batch_files`). Each batch of records
or each file is followed by a STATE message whose bookmark covers exactly the rows sent before it.

INCREMENTAL reads the rows whose replication key is at or after the bookmark (`>=`), in key order, so
that rows which share the bookmark's value, or arrive later with it, are not lost; the rows at the
bookmark are read again on the next run, and a target loading by key keeps one of each. Rows whose
key is null are read on a full sync only.

LOG_BASED reads the table's changes from a replication slot (`logical`), as RECORD messages whatever
the `batch_config`; its first sync reads the table in full first, through the same COPY.

With `partition: {stream, column, lower, upper}` in the config (elt's partitioned syncs,
docs/partitions.md), that stream reads only the rows `lower <= column < upper`, unordered and without
a bookmark: elt keeps the stream's bookmark itself.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
from psycopg import sql
from singer_sdk import Stream
from singer_sdk.exceptions import FatalSyncError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import CatalogEntry, Metadata, MetadataMapping, Schema

from elt import handoff
from taps.batch_limits import batch_bytes
from taps.tap_postgres import logical
from taps.tap_postgres.batch_files import ParquetFiles, cut
from taps.tap_postgres.binary_copy import copy_batches, to_arrow
from taps.tap_postgres.discovery import Column, Table
from taps.tap_postgres.partitions import custom_where_clauses, partition_column, range_condition
from taps.tap_postgres.pgtypes import JsonValue, Wire
from taps.tap_postgres.record_lines import RecordLines, json_value

if TYPE_CHECKING:
    from singer_sdk.helpers._batch import BatchConfig
    from singer_sdk.helpers.types import Context

    from taps.tap_postgres.tap import TapPostgres

RECORD_ROWS = 10_000
"""Rows per batch of RECORD lines; a STATE message follows each."""
MAX_DECODE_ROWS = 100_000
"""Rows decoded at a time for BATCH files: what memory holds, whatever `batch_size` is."""


class SyncError(FatalSyncError):
    """A stream cannot be read as asked (its catalog entry or its replication settings)."""


@dataclass(frozen=True)
class ReadPlan:
    """What one sync of a stream reads: the columns, in the order of the stream's schema, and how."""

    columns: tuple[Column, ...]
    wires: tuple[Wire, ...]
    statement: str
    replication_key: int | None
    """Index of the replication key among the columns (INCREMENTAL), else None."""
    bookmark: str | None = None
    """The property the stream's bookmark is a value of: the replication key, or `_sdc_lsn` (LOG_BASED)."""

    @property
    def log_based(self) -> bool:
        return self.bookmark == logical.LSN

    @property
    def json_columns(self) -> list[tuple[str, JsonValue]]:
        """The properties of the records, and how each is written."""
        columns = [(column.name, column.type.json_value) for column in self.columns]
        return [*columns, *logical.CHANGE_COLUMNS] if self.log_based else columns


class TableStream(Stream):
    """One table or view, named `<schema>-<table>`."""

    is_sorted = True  # INCREMENTAL rows go out in replication-key order
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # records are JSON-ready as built

    def __init__(self, tap: TapPostgres, table: Table) -> None:
        schema = table.json_schema()
        if tap.config.get("default_replication_method") == "LOG_BASED":
            schema = logical.with_change_properties(schema)
        super().__init__(tap, schema=schema, name=table.stream_name)
        self.table = table
        self.primary_keys = list(table.primary_key)
        self._postgres = tap

    # -- catalog ----------------------------------------------------------------------------------

    @property
    def metadata(self) -> MetadataMapping:
        """Standard metadata plus the schema name and the columns that can be replication keys."""
        catalog = self._tap_input_catalog
        if self._metadata is None and (catalog is None or catalog.get_stream(self.tap_stream_id) is None):
            mapping = MetadataMapping.get_standard_metadata(
                schema=self.schema,
                schema_name=self.table.schema,
                key_properties=self.primary_keys,
                replication_method=self.forced_replication_method,
                selected_by_default=self.selected_by_default,
            )
            mapping.root.valid_replication_keys = self.table.replication_key_candidates or None
            mapping.root.replication_key = self.replication_key
            mapping.root.selected = catalog is None and self.selected_by_default
            for name, _ in logical.CHANGE_COLUMNS:
                if ("properties", name) in mapping:
                    mapping[("properties", name)].inclusion = Metadata.InclusionType.AUTOMATIC
            self._metadata = mapping
        return super().metadata

    @property
    def _singer_catalog_entry(self) -> CatalogEntry:
        return CatalogEntry(
            tap_stream_id=self.tap_stream_id,
            stream=self.name,
            schema=Schema.from_dict(self.schema),
            metadata=self.metadata,
            key_properties=self.primary_keys or [],
            replication_key=self.replication_key,
            replication_method=self.replication_method,
            is_view=self.table.is_view,
            database=self._postgres.database,
            table=self.table.name,
            row_count=None,
            stream_alias=None,
        )

    @property
    def replication_method(self) -> str:
        """The catalog's method; else INCREMENTAL given a replication key; else default_replication_method."""
        if self.forced_replication_method:
            return self.forced_replication_method
        if self.replication_key:
            return "INCREMENTAL"
        return str(self.config.get("default_replication_method") or "FULL_TABLE")

    # -- syncing ----------------------------------------------------------------------------------

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The rows as dicts: singer-sdk's own path, taken when stream maps or flattening apply."""
        plan = self._plan(records=True)
        lines = RecordLines(self.name, plan.json_columns)
        for arrays, bookmark in self._record_batches(plan):
            if arrays:
                yield from lines.records(arrays)
            # singer-sdk has written the records before it asks for the next: they are out.
            self._set_bookmark(plan, bookmark)

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, Any], Any, Any]:
        if self.ABORT_AT_RECORD_COUNT is not None:
            # A dry run (`--test`, singer-sdk's test suites): singer-sdk's loop stops at the limit.
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        # singer-sdk's loop spends several microseconds on each record; without stream maps or
        # flattening there is nothing for it to do that a whole batch cannot have done at once.
        if not write_messages or not self._records_unmapped() or self._in_process():
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        plan = self._plan(records=True)
        lines = RecordLines(self.name, plan.json_columns, self._stream_version)
        out = _binary_stdout()
        with self.get_record_counter() as counter, self.get_sync_timer():
            for arrays, bookmark in self._record_batches(plan):
                if arrays:
                    extracted = datetime.now(UTC).isoformat()
                    sys.stdout.flush()  # what singer-sdk wrote before goes first
                    out.write(lines.render(arrays, extracted))
                    out.flush()
                    counter.increment(len(arrays[0]))
                self._set_bookmark(plan, bookmark)
                self._write_state_message()
        # As singer-sdk's loop does: the stream's sync ends with a STATE, even one that did not change.
        self._finalize_state(self.stream_state)
        self._write_state_message()

    def get_batch_config(self, config: Mapping[str, Any]) -> BatchConfig | None:
        """singer-sdk's `batch_config`, unless stream maps or flattening are configured: they work on
        records, so the stream stays on the record path rather than write files they never saw."""
        if config.get("batch_config") and not self._records_unmapped():
            self.logger.info(
                "Stream '%s': stream maps or flattening are configured; writing records", self.name
            )
            return None
        return super().get_batch_config(config)

    def _sync_batches(self, batch_config: BatchConfig, context: Context | None = None) -> None:
        if self.replication_method == "LOG_BASED":
            # Changes are few and come with deletes: they go out as records.
            for _ in self._sync_records(context):
                pass
            return
        if batch_config.encoding.format != "parquet":
            super()._sync_batches(batch_config, context=context)
            return
        plan = self._plan(records=False)
        schema = pa.schema(column.type.arrow_field(column.name) for column in plan.columns)
        files = ParquetFiles(batch_config.storage, self.name, schema, batch_config.encoding.compression)
        size = max(1, batch_config.batch_size)
        max_bytes = batch_bytes(self.config)
        bookmark = None
        with self.get_batch_counter() as batches, self.get_record_counter() as records, self.get_sync_timer():
            try:
                # COPY data is read a quarter of a batch's bytes at most at a time
                chunks = self._read(plan, min(size, MAX_DECODE_ROWS), max(1, max_bytes // 4))
                for arrays, ends_file in cut(chunks, size, max_bytes):
                    files.write(
                        [
                            to_arrow(column.type, array)
                            for column, array in zip(plan.columns, arrays, strict=True)
                        ]
                    )
                    records.increment(len(arrays[0]))
                    if (found := self._bookmark_in(plan, arrays)) is not None:
                        bookmark = found
                    if ends_file:
                        self._announce(batch_config, files.finish(), plan, bookmark)
                        batches.increment()
                if url := files.finish():
                    self._announce(batch_config, url, plan, bookmark)
                    batches.increment()
            finally:
                files.abandon()
        # As on the record path: the stream's sync ends with a STATE, even one that did not change.
        self._finalize_state(self.stream_state)
        self._write_state_message()

    def _announce(self, batch_config: BatchConfig, url: str | None, plan: ReadPlan, bookmark: Any) -> None:
        """BATCH for a finished file, then the STATE that covers its rows."""
        if url is None:
            return
        self._write_batch_message(encoding=batch_config.encoding, manifest=[url])
        self._set_bookmark(plan, bookmark)
        self._write_state_message()

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """None: no cap on bookmarks. Rows are read at or after the bookmark in key order and the
        bookmark is the last row sent, so a row stamped in the future is read again, never skipped."""
        return None

    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        # singer-sdk's own record path (stream maps): rows come in key order, so the bookmark is the
        # last row's key, as on the other paths; a null key (those come last) never moves it.
        if self.replication_method == "INCREMENTAL" and self.replication_key:
            self._store_bookmark(self.replication_key, latest_record.get(self.replication_key))

    def _in_process(self) -> bool:
        """Whether elt runs this tap and its target in one process: messages go to the target's
        queue through singer-sdk's writer, never to stdout (elt/inprocess.py)."""
        storage = (self.config.get("batch_config") or {}).get("storage") or {}
        return handoff.is_handoff(storage.get("root"))

    def _records_unmapped(self) -> bool:
        """Whether records go out as read: no stream map renames, filters or changes them."""
        maps = self.stream_maps
        return (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.name
            and not maps[0].flattening_enabled
        )

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, plan: ReadPlan, rows: int, max_bytes: int | None = None) -> Iterator[list[pa.Array]]:
        with self._postgres.connection.cursor() as cursor:
            yield from copy_batches(cursor, plan.statement, plan.wires, rows, max_bytes)

    def _record_batches(self, plan: ReadPlan) -> Iterator[tuple[list[pa.Array], Any]]:
        """Batches of rows for RECORD messages, each with the bookmark it brings the stream to (or None)."""
        if not plan.log_based:
            for arrays in self._read(plan, RECORD_ROWS):
                yield arrays, self._bookmark_in(plan, arrays)
            return
        source = logical.ChangeStream(
            self.name,
            self.table,
            plan.columns,
            plan.wires,
            logical.replication_for(self.config, self.name),
        )
        yield from logical.read_log_based(
            self._postgres.connection,
            source,
            self._starting_bookmark(logical.LSN),
            lambda: self._read(plan, RECORD_ROWS),
            RECORD_ROWS,
            self.logger,
        )

    def _plan(self, *, records: bool) -> ReadPlan:
        """The columns to read (selected ones, keys and replication key) and the COPY statement."""
        method = self.replication_method
        if method not in ("FULL_TABLE", "INCREMENTAL", "LOG_BASED"):
            raise SyncError(
                f"tap-postgres: stream '{self.name}': replication method {method} is not supported; "
                "use FULL_TABLE, INCREMENTAL or LOG_BASED"
            )
        if method == "LOG_BASED" and self._custom_where_clauses():
            raise SyncError(
                f"tap-postgres: stream '{self.name}' is LOG_BASED: its changes cannot be filtered by "
                f"custom_where_clauses; remove them from stream_options.{self.name}"
            )
        partition = self._partition()
        if partition is not None and method == "LOG_BASED":
            raise SyncError(
                f"tap-postgres: stream '{self.name}' is LOG_BASED: it cannot be read in partitions; "
                "make it FULL_TABLE or INCREMENTAL"
            )
        # A partition is a range of rows read in any order: the bookmark is elt's, not the stream's.
        key = self.replication_key if method == "INCREMENTAL" and partition is None else None
        if method == "INCREMENTAL" and not key and partition is None:
            raise SyncError(
                f"tap-postgres: stream '{self.name}' is INCREMENTAL but has no replication key; set "
                "`replication-key` in its metadata to one of: "
                + ", ".join(self.table.replication_key_candidates)
            )
        columns = self._columns(key)
        conn = self._postgres.connection
        reads = [column.type.read(_quote(conn, column.name), records=records) for column in columns]
        source = _quote(conn, self.table.schema, self.table.name)
        query = f"SELECT {', '.join(expression for expression, _ in reads)} FROM {source}"
        conditions = [f"({clause})" for clause in self._custom_where_clauses()]
        if partition is not None:
            column = partition_column(self.table, str(partition["column"]))
            conditions.append(range_condition(conn, column, partition))
        index = None
        if key:
            index = [column.name for column in columns].index(key)
            column = columns[index]
            start = self._starting_bookmark(key)
            if start is not None:
                literal = sql.Literal(start if isinstance(start, str) else str(start)).as_string(conn)
                conditions.append(f"{_quote(conn, key)} >= CAST({literal} AS {column.cast_type})")
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        if key:
            query += f" ORDER BY {_quote(conn, key)}"
        # A LOG_BASED copy is cut short by nothing: its rows are not read again.
        if (limit := self.config.get("max_record_count")) and method != "LOG_BASED":
            query += f" LIMIT {int(limit)}"
        statement = f"COPY ({query}) TO STDOUT (FORMAT binary)"
        bookmark = logical.LSN if method == "LOG_BASED" else key
        return ReadPlan(tuple(columns), tuple(wire for _, wire in reads), statement, index, bookmark)

    def _columns(self, key: str | None) -> list[Column]:
        """The table's columns for the selected properties, in the order of the stream's schema."""
        properties = list(self.effective_schema.get("properties", {}))
        always = {*self.primary_keys, *([key] if key else [])}
        columns = []
        added = {name for name, _ in logical.CHANGE_COLUMNS}
        for name in properties:
            if name not in always and not self.mask[("properties", name)]:
                continue
            if name in added and self.table.column(name) is None:
                continue  # LOG_BASED's own properties: not read from the table
            column = self.table.column(name)
            if column is None:
                raise SyncError(
                    f"tap-postgres: stream '{self.name}': property '{name}' of the catalog is not a column "
                    f"of {self.table.schema}.{self.table.name} (columns: "
                    f"{', '.join(c.name for c in self.table.columns)}); refresh the catalog"
                )
            columns.append(column)
        missing = always - {column.name for column in columns}
        if missing:
            raise SyncError(
                f"tap-postgres: stream '{self.name}': key or replication key {', '.join(sorted(missing))} "
                "is not a property of its catalog schema"
            )
        if not columns:
            raise SyncError(f"tap-postgres: stream '{self.name}': no property is selected")
        return columns

    def _custom_where_clauses(self) -> list[str]:
        return custom_where_clauses(self.config, self.name)

    def _partition(self) -> Mapping[str, Any] | None:
        """The range of rows of this stream to read (`partition` of the config), if one is given."""
        partition = self.config.get("partition")
        if not partition or partition.get("stream") != self.name:
            return None
        return dict(partition)

    # -- bookmarks --------------------------------------------------------------------------------

    def _starting_bookmark(self, key: str) -> Any:
        """The bookmark of the state passed in, if it is one of `key`."""
        state = self.stream_state
        if state.get("replication_key") not in (None, key):
            return None
        return state.get("replication_key_value")

    def _bookmark_in(self, plan: ReadPlan, arrays: list[pa.Array]) -> Any:
        """The greatest replication key value among the rows (the last non-null one: rows are ordered)."""
        if plan.replication_key is None:
            return None
        values = arrays[plan.replication_key]
        last = len(values) - values.null_count - 1
        if last < 0:
            return None
        return json_value(values, plan.columns[plan.replication_key].type.json_value, last)

    def _set_bookmark(self, plan: ReadPlan, value: Any) -> None:
        if plan.bookmark is not None:
            self._store_bookmark(plan.bookmark, value)

    def _store_bookmark(self, key: str, value: Any) -> None:
        """Make `value` of `key` the stream's bookmark; a numeric one as its exact text (a JSON number
        would come back as a float, which may round above the true value and skip the rows at it)."""
        if value is None:
            return
        state = self.stream_state
        state["replication_key"] = key
        state["replication_key_value"] = str(value) if isinstance(value, Decimal) else value
        self.state_manager.is_flushed = False


def _quote(conn: Any, *names: str) -> str:
    return sql.Identifier(*names).as_string(conn)


class _Output(Protocol):
    def write(self, data: memoryview, /) -> int: ...

    def flush(self) -> None: ...


def _binary_stdout() -> _Output:
    buffer: _Output | None = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else _TextOutput()


class _TextOutput:
    """Bytes to a stdout that takes text only (a test harness's), as UTF-8."""

    def write(self, data: memoryview, /) -> int:
        return sys.stdout.write(bytes(data).decode("utf-8"))

    def flush(self) -> None:
        sys.stdout.flush()
