"""One sink per stream: buffer the stream's records (or its RECORD lines as they came, parsed a batch at
a time: targets/record_lines.py) and load each batch into its PostgreSQL table; load the Parquet files
of the stream's BATCH messages straight from Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchFileFormat

from elt import handoff
from targets.record_lines import FieldRead, LineBuffer, LinesNotParsed, RecordLinesSink
from targets.target_duckdb.errors import LoadError
from targets.target_postgres.batches import (
    BatchSource,
    line_reads,
    lines_source,
    parquet_source,
    records_source,
)
from targets.target_postgres.settings import DEFAULT_BATCH_SIZE_ROWS, UPSERT
from targets.target_postgres.types import columns_of, stream_table_name
from targets.target_postgres.warehouse import BatchResult, TableSpec

if TYPE_CHECKING:
    from targets.target_postgres.target import TargetPostgres


class PostgresSink(RecordLinesSink):
    """Loads a stream into `<schema>.<table>` one batch (one transaction) at a time."""

    MAX_SIZE_DEFAULT = DEFAULT_BATCH_SIZE_ROWS

    def __init__(
        self,
        target: TargetPostgres,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self.loader = target
        super().__init__(target, stream_name, schema, key_properties)
        self._known_fields = set(self.schema.get("properties") or {})
        self.columns = columns_of(self.schema)
        self.table = self._table_spec()

    @cached_property
    def line_reads(self) -> tuple[FieldRead, ...]:
        """How each column is read from the stream's RECORD lines."""
        return line_reads(self.columns, self.schema.get("properties") or {})

    def _table_spec(self) -> TableSpec:
        settings = self.loader.settings
        keys = tuple(self.key_properties)
        missing = [key for key in keys if key not in {column.field for column in self.columns}]
        if missing:
            raise LoadError(f"stream '{self.stream_name}': key_properties {missing} are not properties")
        if settings.primary_key_required and not keys:
            raise LoadError(
                f"stream '{self.stream_name}' has no key_properties, and primary_key_required is true",
                hint="set primary_key_required: false to load streams without a key",
            )
        method = settings.load_method_for(list(keys))
        if settings.load_method == UPSERT and method != UPSERT:
            self.logger.warning("Stream '%s' has no key_properties: appending", self.stream_name)
        schema, table = settings.target_schema(self.stream_name)
        return TableSpec(
            stream=self.stream_name,
            schema=schema,
            name=stream_table_name(table),
            keys=keys,
            load_method=method,
            hard_delete=settings.hard_delete,
        )

    def load_in_background(self, batch: BatchSource) -> None:
        self.loader.load_in_background(self.table, [batch], self._report)

    def batch_of_records(
        self,
        records: list[dict[str, Any]],
        time_extracted: Sequence[str | None],
        received_at: Sequence[float],
    ) -> BatchSource:
        self._warn_unknown_fields(set().union(*records))
        source = records_source(
            self.stream_name,
            self.columns,
            records,
            time_extracted,
            received_at,
            sanitize_nul=self.loader.settings.sanitize_null_text,
        )
        # The records are in the Arrow batch now; let their dicts go.
        records.clear()
        return source

    def batch_of_lines(self, lines: LineBuffer, context: dict) -> BatchSource:
        """The batch's RECORD lines parsed by Arrow; record by record where `parse_lines` leaves them."""
        try:
            parsed = lines.parsed()
        except LinesNotParsed as reason:
            self.logger.info("Stream '%s': loading a batch record by record (%s)", self.stream_name, reason)
            records, time_extracted, received_at = self.records_of_lines(lines, context)
            lines.clear()
            return self.batch_of_records(records, time_extracted, received_at)
        self._warn_unknown_fields(set(parsed.unknown))
        source = lines_source(
            self.stream_name,
            self.columns,
            parsed,
            lines.received_at(),
            sanitize_nul=self.loader.settings.sanitize_null_text,
        )
        lines.clear()
        return source

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        """Load the Parquet files of one BATCH message in one transaction, then delete them.

        Records of the stream read before the BATCH message are loaded first, so that rows keep
        their order. Other encodings are read by singer-sdk and loaded as records.
        """
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        self.loader.drain_one(self)
        synced_at = datetime.now(UTC).isoformat()
        paths = [
            handoff.take(url, self.stream_name) if handoff.is_handoff(url) else self._local_path(url)
            for url in files
        ]
        sanitize = self.loader.settings.sanitize_null_text
        # A generator: each file is opened when the one before it is loaded.
        sources = (
            parquet_source(self.stream_name, path, synced_at, self.columns, sanitize_nul=sanitize)
            for path in paths
        )
        result = self.loader.load(self.table, sources)
        for path in paths:
            if isinstance(path, Path):
                path.unlink(missing_ok=True)
        self.record_counter_metric.increment(result.rows_in_batch)
        self._report(result)

    def _local_path(self, url: str) -> Path:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return Path(url2pathname(parsed.path))
        if not parsed.scheme:
            return Path(url)
        raise LoadError(
            f"stream '{self.stream_name}': BATCH file {url} is not a local file",
            hint="give the tap a batch_config storage root of file://...",
        )

    def _report(self, result: BatchResult) -> None:
        if result.duplicates_merged:
            self.tally_duplicate_merged(result.duplicates_merged)
        self.logger.info(
            "Loaded %d rows of '%s' into %s.%s (%s%s)",
            result.rows_loaded,
            self.stream_name,
            self.table.schema,
            self.table.name,
            self.table.load_method,
            f", {result.rows_deleted} deleted" if result.rows_deleted else "",
        )

    def _warn_unknown_fields(self, names: set[str]) -> None:
        unknown = names - self._known_fields
        for name in sorted(unknown):
            self.logger.warning(
                "Stream '%s': field '%s' is not in its schema; not loaded", self.stream_name, name
            )
        self._known_fields |= unknown
