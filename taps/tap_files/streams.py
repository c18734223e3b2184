"""The stream of one configured entry: its files, its schema and its full or incremental read."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from singer_sdk import Stream
from singer_sdk.exceptions import ConfigValidationError, FatalSyncError
from singer_sdk.helpers.conform import TypeConformanceLevel

from elt import handoff
from taps.batch_limits import batch_bytes, rows_within
from taps.tap_files.readers import (
    BATCH_ROWS,
    READERS,
    CsvDialect,
    FormatReader,
    SourceFile,
    arrow_field,
    conform_array,
    find_paths,
    format_of,
    is_json,
    json_property,
    to_rows,
    unify_schemas,
)

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context

MTIME = "_sdc_source_file_mtime"
METADATA_PROPERTIES: dict[str, dict[str, Any]] = {
    "_sdc_source_file": {"type": ["string", "null"]},
    MTIME: {"type": ["string", "null"], "format": "date-time"},
    "_sdc_source_lineno": {"type": ["integer", "null"]},
}


@dataclass(frozen=True)
class FileEntry:
    """One entry of the `files` config: a stream read from one or more files."""

    entity: str
    path: str
    keys: tuple[str, ...] = ()
    replication_key: str | None = None
    format: str | None = None
    encoding: str = "utf-8"
    dialect: CsvDialect = CsvDialect()
    declared: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Declared columns, each a nullable JSON Schema."""
    add_metadata_columns: bool = False


class BookmarkError(FatalSyncError):
    """A bookmark in the state does not fit the stream's replication key."""


class FileStream(Stream):
    """The rows of the files of one entry, typed by pyarrow.

    Without a replication key every run reads every file. With `replication_key: COL` the rows are
    emitted sorted by COL: those above the bookmark, and those equal to it whose key is not among
    `keys_at_bookmark` (the keys emitted at that value so far, kept in the state). Without keys,
    rows equal to the bookmark are not emitted again. Rows whose COL is null are emitted on a full
    sync (no bookmark) only. With `replication_key: _sdc_source_file_mtime` only files modified
    after the bookmark are read, each whole; `files_at_bookmark` holds the files read at it.
    """

    is_sorted = True  # rows go out in replication-key order, so bookmarks advance as they go
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE  # `to_rows` makes rows JSON-ready

    def __init__(self, tap: Tap, entry: FileEntry) -> None:
        super().__init__(tap, name=entry.entity)
        self.entry = entry
        self.primary_keys = list(entry.keys)
        self.replication_key = entry.replication_key
        self.files = self._find_files()

    @property
    def schema(self) -> dict[str, Any]:
        """The input catalog's schema of this stream if given, else one inferred from the files."""
        if self._schema is None:
            self._schema = self._input_schema or self._infer_schema()
        return self._schema

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Yield JSON-ready rows: in file order, or by replication key from the bookmark on."""
        schema = pa.schema(
            arrow_field(name, prop)
            for name, prop in self.schema["properties"].items()
            if name not in METADATA_PROPERTIES
        )
        if self.replication_key == MTIME:
            return self._records_by_mtime(schema)
        if self.replication_key:
            return self._records_by_column(schema, self.replication_key)
        return (row for file in self.files for row in self._rows(file, schema))

    def get_batches(  # type: ignore[override]
        self, batch_config: BatchConfig, context: Context | None
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """The rows `get_records` would emit, as Parquet files of at most `batch_size` rows and
        about `batch_size_bytes`.

        Columns keep their Arrow types; JSON columns are marked for the target (docs/connectors.md).
        Before each file is announced, the stream state says exactly what the files so far hold, as
        the record path's state does after the same rows.
        """
        schema = pa.schema(
            arrow_field(name, prop)
            for name, prop in self.schema["properties"].items()
            if name not in METADATA_PROPERTIES
        )
        size = batch_config.batch_size or BATCH_ROWS
        in_process = handoff.is_handoff(batch_config.storage.root)  # elt runs the target here too
        root = Path(unquote(urlparse(batch_config.storage.root).path))
        if not in_process:
            root.mkdir(parents=True, exist_ok=True)
        max_bytes = batch_bytes(self.config)
        for table, settle in self._tables(schema):
            step = rows_within(table.nbytes, table.num_rows, size, max_bytes)
            for start in range(0, table.num_rows, step):
                chunk = self._selected_columns(table.slice(start, step))
                if in_process:
                    url = handoff.put(chunk, self.name)
                else:
                    path = root / f"{batch_config.storage.prefix or ''}{self.name}-{uuid.uuid4().hex}.parquet"
                    # Parquet compresses its pages itself; the encoding's compression is for whole files.
                    pq.write_table(chunk, path, compression="zstd")
                    url = path.as_uri()
                settle(table, start + chunk.num_rows)
                yield batch_config.encoding, [url]

    def _tables(self, schema: pa.Schema) -> Iterator[tuple[pa.Table, Any]]:
        """(table of rows to emit, settle(table, rows_written)) in the order the record path emits."""
        if self.replication_key == MTIME:
            yield from self._tables_by_mtime(schema)
        elif self.replication_key:
            yield from self._tables_by_column(schema, self.replication_key)
        else:
            for file in self.files:
                batches = list(self._batches(file, schema))
                if batches:
                    yield pa.Table.from_batches(batches), lambda table, rows: None

    def _tables_by_column(self, schema: pa.Schema, column: str) -> Iterator[tuple[pa.Table, Any]]:
        bookmark, seen = self._bookmark("keys_at_bookmark")
        keys = list(self.primary_keys)
        batches = [batch for file in self.files for batch in self._batches(file, schema)]
        if not batches:
            return
        table = pa.Table.from_batches(batches)
        if not keys:
            self.stream_state.pop("keys_at_bookmark", None)
        ties = 0
        if bookmark is not None:
            value, bookmark = self._bookmark_value(bookmark, table.schema.field(column))
            after = pc.greater_equal if keys else pc.greater
            table = table.filter(after(table[column], value))
            ties = pc.sum(pc.equal(table[column], value)).as_py() or 0
        table = table.sort_by(column)
        if ties:
            already = {tuple(key) for key in seen}
            head = to_rows(table.slice(0, ties).select(keys).combine_chunks().to_batches()[0])
            keep = [tuple(row[k] for k in keys) not in already for row in head]
            table = table.filter(pa.array(keep + [True] * (table.num_rows - ties)))
        progress = _Progress(self.stream_state, "keys_at_bookmark" if keys else None, bookmark, seen)
        self.stream_state["replication_key"] = column

        def settle(written: pa.Table, rows: int) -> None:
            last = to_rows(written.slice(rows - 1, 1).select([column]).combine_chunks().to_batches()[0])[0]
            value = last[column]
            if value is None:
                return
            # the rows written so far that share the last value: at most a few
            mask = pc.equal(written.slice(0, rows)[column], written[column][rows - 1])
            tail = written.slice(0, rows).filter(mask).select(keys) if keys else None
            if value != progress.value:
                progress.advance(value)
            if tail is not None and tail.num_rows:
                known = {tuple(k) for k in progress.seen}
                for row in to_rows(tail.combine_chunks().to_batches()[0]):
                    key = [row[k] for k in keys]
                    if tuple(key) not in known:
                        progress.seen.append(key)
            self.stream_state["replication_key_value"] = value

        yield table, settle

    def _tables_by_mtime(self, schema: pa.Schema) -> Iterator[tuple[pa.Table, Any]]:
        bookmark, seen = self._bookmark("files_at_bookmark")
        after: int | None = None
        if bookmark is not None:
            try:
                after = _mtime_ns(str(bookmark))
            except ValueError as exc:
                raise self._bookmark_error(bookmark, "a timestamp") from exc
        files = sorted(
            (
                file
                for file in self.files
                if after is None
                or file.mtime_ns > after
                or (file.mtime_ns == after and file.path not in seen)
            ),
            key=lambda file: (file.mtime_ns, file.path),
        )
        progress = _Progress(self.stream_state, "files_at_bookmark", bookmark, seen)
        self.stream_state["replication_key"] = MTIME
        for file in files:
            stamp = _mtime_iso(file.mtime_ns)
            batches = list(self._batches(file, schema))
            table = pa.Table.from_batches(batches, schema=None) if batches else None

            def settle(written: pa.Table, rows: int, stamp: str = stamp, file: SourceFile = file) -> None:
                progress.advance(stamp)
                if rows == written.num_rows:
                    progress.settle(stamp, file.path)
                self.stream_state["replication_key_value"] = stamp

            if table is None or table.num_rows == 0:
                progress.advance(stamp)
                progress.settle(stamp, file.path)
                self.stream_state["replication_key_value"] = stamp
                continue
            yield table, settle

    def _selected_columns(self, table: pa.Table) -> pa.Table:
        """Only the selected properties; JSON columns marked for the target."""
        names = [name for name in table.column_names if self.mask.get(("properties", name), True)]
        table = table.select(names)
        fields = []
        for column in table.schema:
            if is_json(column):
                column = column.with_metadata({**(column.metadata or {}), b"elt.json": b"1"})
            elif pa.types.is_timestamp(column.type) and column.type.tz is None:
                column = column.with_type(pa.timestamp(column.type.unit, tz="UTC"))  # naive means UTC
            fields.append(column)
        return table.cast(pa.schema(fields))

    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        # A null replication value never moves the bookmark; singer-sdk would warn once per row.
        if self.replication_key and latest_record.get(self.replication_key) is None:
            return
        super()._increment_stream_state(latest_record, context=context)

    # -- reading ----------------------------------------------------------------------------------

    def _find_files(self) -> list[SourceFile]:
        paths = find_paths(self.entry.path)
        if not paths:
            raise _invalid(
                f"tap-files: stream '{self.name}': path '{self.entry.path}' matches no file "
                f"(a relative path is read from the working directory, {Path.cwd()})"
            )
        files = []
        for path in paths:
            file_format = self.entry.format or format_of(path)
            if file_format is None:
                raise _invalid(
                    f"tap-files: stream '{self.name}': cannot tell the format of '{path}' from its "
                    "extension; set `format` to csv, jsonl or parquet"
                )
            files.append(SourceFile(str(path), file_format, path.stat().st_mtime_ns))
        return files

    def _reader(self, file: SourceFile) -> FormatReader:
        reader = READERS[file.format]
        return reader(self.name, encoding=self.entry.encoding, dialect=self.entry.dialect)

    def _infer_schema(self) -> dict[str, Any]:
        declared = {name: arrow_field(name, prop) for name, prop in self.entry.declared.items()}
        merged = unify_schemas(self._reader(file).infer_schema(file.path, declared) for file in self.files)
        # A declared property wins, `json`'s {} too (which is falsy).
        properties = {
            f.name: dict(self.entry.declared[f.name]) if f.name in self.entry.declared else json_property(f)
            for f in merged
        }
        for name, prop in self.entry.declared.items():
            properties.setdefault(name, dict(prop))
        metadata = METADATA_PROPERTIES if self.entry.add_metadata_columns else {}
        if self.replication_key == MTIME:
            metadata = {MTIME: METADATA_PROPERTIES[MTIME], **metadata}
        properties.update(metadata)
        self._check_columns(properties)
        return {"type": "object", "properties": properties}

    def _check_columns(self, properties: Mapping[str, Mapping[str, Any]]) -> None:
        columns = [*self.primary_keys, *([self.replication_key] if self.replication_key else [])]
        for column in columns:
            if column not in properties:
                raise _invalid(
                    f"tap-files: stream '{self.name}': key or replication key '{column}' is not a "
                    f"column of {self.entry.path} (columns: {', '.join(properties)})"
                )
            if not set(properties[column].get("type", [])) - {"object", "array", "null"}:
                raise _invalid(
                    f"tap-files: stream '{self.name}': key or replication key '{column}' holds "
                    "objects or arrays; use a column of numbers, strings, dates or timestamps"
                )

    def _rows(self, file: SourceFile, schema: pa.Schema) -> Iterator[dict[str, Any]]:
        for batch in self._batches(file, schema):
            yield from to_rows(batch)

    def _batches(self, file: SourceFile, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """A file's batches, with the metadata columns the schema asks for."""
        reader = self._reader(file)
        wanted = [name for name in METADATA_PROPERTIES if name in self.schema["properties"]]
        line = reader.first_line
        for batch in reader.read_batches(file.path, schema):
            rows = batch.num_rows
            values = {
                "_sdc_source_file": pa.repeat(file.path, rows),
                MTIME: pa.repeat(_mtime_iso(file.mtime_ns), rows),
                "_sdc_source_lineno": pa.array(range(line, line + rows), pa.int64()),
            }
            line += rows
            for name in wanted:
                batch = batch.append_column(pa.field(name, values[name].type), values[name])
            yield batch

    # -- incremental ------------------------------------------------------------------------------

    def _records_by_column(self, schema: pa.Schema, column: str) -> Iterator[dict[str, Any]]:
        bookmark, seen = self._bookmark("keys_at_bookmark")
        keys = list(self.primary_keys)
        batches = [batch for file in self.files for batch in self._batches(file, schema)]
        table = pa.Table.from_batches(batches) if batches else None
        if table is None:
            return
        if not keys:
            self.stream_state.pop("keys_at_bookmark", None)
        ties = 0
        if bookmark is not None:
            value, bookmark = self._bookmark_value(bookmark, table.schema.field(column))
            after = pc.greater_equal if keys else pc.greater
            table = table.filter(after(table[column], value))
            ties = pc.sum(pc.equal(table[column], value)).as_py() or 0
        progress = _Progress(self.stream_state, "keys_at_bookmark" if keys else None, bookmark, seen)
        already = {tuple(key) for key in seen}
        position = 0
        for batch in table.sort_by(column).to_batches(max_chunksize=BATCH_ROWS):
            for row in to_rows(batch):
                position += 1
                key = [row[name] for name in keys]
                if position <= ties and tuple(key) in already:
                    continue
                progress.advance(row[column], key)
                yield row

    def _records_by_mtime(self, schema: pa.Schema) -> Iterator[dict[str, Any]]:
        bookmark, seen = self._bookmark("files_at_bookmark")
        after: int | None = None
        if bookmark is not None:
            try:
                after = _mtime_ns(str(bookmark))
            except ValueError as exc:
                raise self._bookmark_error(bookmark, "a timestamp") from exc
            bookmark = self.stream_state["replication_key_value"] = _mtime_iso(after)
        files = sorted(
            (
                file
                for file in self.files
                if after is None
                or file.mtime_ns > after
                or (file.mtime_ns == after and file.path not in seen)
            ),
            key=lambda file: (file.mtime_ns, file.path),
        )
        progress = _Progress(self.stream_state, "files_at_bookmark", bookmark, seen)
        for file in files:
            stamp = _mtime_iso(file.mtime_ns)
            for row in self._rows(file, schema):
                progress.advance(stamp)
                yield row
            progress.settle(stamp, file.path)

    def _bookmark(self, seen_name: str) -> tuple[Any, list[Any]]:
        """The bookmark of the previous sync and what was emitted at it; (None, []) if none."""
        state = self.stream_state
        value = state.get("replication_key_value")
        if value is None or state.get("replication_key") != self.replication_key:
            state.pop("keys_at_bookmark", None)
            state.pop("files_at_bookmark", None)
            return None, []
        return value, list(state.get(seen_name, []))

    def _bookmark_value(self, bookmark: Any, column: pa.Field) -> tuple[pa.Scalar, Any]:
        """The bookmark as a scalar of the column's type, and in the form rows are emitted in.

        The latter is written back to the state: singer-sdk compares bookmarks as strings.
        """
        try:
            array = conform_array(pa.array([bookmark]), column, strings_are_json=False)
        except (pa.ArrowException, ValueError) as exc:
            raise self._bookmark_error(bookmark, f"a value of column '{column.name}'") from exc
        canonical = to_rows(pa.RecordBatch.from_arrays([array], schema=pa.schema([column])))
        self.stream_state["replication_key_value"] = canonical[0][column.name]
        return array[0], canonical[0][column.name]

    def _bookmark_error(self, bookmark: Any, expected: str) -> BookmarkError:
        return BookmarkError(
            f"tap-files: stream '{self.name}': the state's bookmark {bookmark!r} is not "
            f"{expected}; pass the state of a sync with the same replication key, or no state "
            "for a full sync"
        )


class _Progress:
    """The replication value of the rows emitted so far and what was emitted at it (keys, files).

    Kept in the stream state as rows go, next to the `replication_key_value` singer-sdk writes, so
    that every STATE message pairs a bookmark with what has been emitted at it.
    """

    def __init__(self, state: dict[str, Any], name: str | None, value: Any, seen: list[Any]):
        self.state, self.name, self.value = state, name, value
        self._reset(seen)

    def advance(self, value: Any, item: Any = None) -> None:
        """Record an emitted row's replication value and its key."""
        if value is None:
            return
        if value != self.value:
            self.value = value
            self._reset([])
        if item is not None:
            self.seen.append(item)

    def settle(self, value: Any, item: Any) -> None:
        """Record a file read whole whose rows (if any) had the replication value `value`."""
        if value == self.value and item not in self.seen:
            self.seen.append(item)

    def _reset(self, seen: list[Any]) -> None:
        self.seen = list(seen)
        if self.name is not None:
            self.state[self.name] = self.seen


def _mtime_iso(ns: int) -> str:
    """A modification time as an ISO 8601 UTC string with nanoseconds."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}+00:00"


def _mtime_ns(text: str) -> int:
    """Parse an ISO 8601 timestamp (of any precision; naive is UTC) into epoch nanoseconds."""
    match = re.fullmatch(r"(?P<base>[^.]+?)(\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:?\d\d)?", text)
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    moment = dt.datetime.fromisoformat(match["base"] + (match["zone"] or "+00:00"))
    fraction = int((match["fraction"] or "").ljust(9, "0")[:9])
    return int(moment.timestamp()) * 1_000_000_000 + fraction


def _invalid(message: str) -> ConfigValidationError:
    return ConfigValidationError(message, errors=[message])
