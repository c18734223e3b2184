"""One sink per stream: buffer the stream's records (or its RECORD lines as they came, parsed a batch at
a time: targets/record_lines.py), then load each batch into its DuckDB table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchFileFormat

from elt import handoff
from targets.record_lines import FieldRead, LineBuffer, LinesNotParsed, RecordLinesSink
from targets.target_duckdb.batches import batch_of_lines, build_batch, line_reads
from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.parquet import exact_columns, local_path, read_batch_file
from targets.target_duckdb.settings import DEFAULT_BATCH_SIZE_ROWS, UPSERT
from targets.target_duckdb.types import columns_of
from targets.target_duckdb.warehouse import BatchResult, TableSpec

if TYPE_CHECKING:
    from targets.target_duckdb.target import TargetDuckDB


class DuckDBSink(RecordLinesSink):
    """Loads a stream into `<schema>.<table>` one Arrow batch (one transaction) at a time."""

    MAX_SIZE_DEFAULT = DEFAULT_BATCH_SIZE_ROWS

    def __init__(
        self,
        target: TargetDuckDB,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self.loader = target
        super().__init__(target, stream_name, schema, key_properties)
        self._known_fields = set(self.schema.get("properties") or {})
        self.table = self._table_spec()

    @cached_property
    def line_reads(self) -> tuple[FieldRead, ...]:
        """How each column is read from the stream's RECORD lines."""
        return line_reads(self.table.columns, self.schema.get("properties") or {})

    def _table_spec(self) -> TableSpec:
        settings = self.loader.settings
        columns = columns_of(self.schema)
        names = [column.name for column in columns]
        keys = tuple(self.key_properties)
        missing = [key for key in keys if key not in names]
        if missing:
            raise LoadError(f"stream '{self.stream_name}': key_properties {missing} are not properties")
        lowered = [name.lower() for name in names]
        clashes = sorted({name for name in names if lowered.count(name.lower()) > 1})
        if clashes:
            raise LoadError(
                f"stream '{self.stream_name}': properties {clashes} differ only in case, "
                "and DuckDB column names ignore case",
                hint="rename them with a stream map",
            )
        if settings.primary_key_required and not keys:
            raise LoadError(
                f"stream '{self.stream_name}' has no key_properties, and primary_key_required is true",
                hint="set primary_key_required: false to load streams without a key",
            )
        method = settings.load_method_for(list(keys))
        if settings.load_method == UPSERT and method != UPSERT:
            self.logger.warning("Stream '%s' has no key_properties: appending", self.stream_name)
        schema, table = settings.target_table(self.stream_name)
        return TableSpec(
            stream=self.stream_name,
            schema=schema,
            name=table,
            columns=columns,
            keys=keys,
            load_method=method,
            hard_delete=settings.hard_delete,
        )

    def load_in_background(self, batch: pa.Table) -> None:
        self.loader.load_in_background(self.table, batch, self._loaded)

    def _loaded(self, result: BatchResult) -> None:
        if result.duplicates_merged:
            self.tally_duplicate_merged(result.duplicates_merged)
        self.logger.info(
            "Loaded %d rows of '%s' into %s.%s (%s)",
            result.rows_inserted,
            self.stream_name,
            self.table.schema,
            self.table.name,
            self.table.load_method,
        )

    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        """Load Parquet BATCH files straight from their columns, each in one transaction, then delete them."""
        if encoding.format != BatchFileFormat.PARQUET:
            super().process_batch_files(encoding, files)
            return
        for url in files:
            path = None if handoff.is_handoff(url) else local_path(url)
            if path is None:
                data = handoff.take(url, self.stream_name)
            else:
                data = read_batch_file(self.stream_name, path)
            spec = replace(self.table, columns=exact_columns(self.table.columns, data.schema))
            result = self.loader.load_file(spec, data)
            self.record_counter_metric.increment(data.num_rows)
            if path is not None:
                path.unlink(missing_ok=True)
            self.logger.info(
                "Loaded %d rows of '%s' from %s into %s.%s (%s)",
                result.rows_inserted,
                self.stream_name,
                "an in-process batch" if path is None else path.name,
                spec.schema,
                spec.name,
                spec.load_method,
            )

    def batch_of_records(
        self,
        records: list[dict[str, Any]],
        time_extracted: Sequence[str | None],
        received_at: Sequence[float],
    ) -> pa.Table:
        self._warn_unknown_fields(set().union(*records))
        batch = build_batch(self.stream_name, self.table.columns, records, time_extracted, received_at)
        # The records are in the Arrow table now; let their dicts go before DuckDB needs memory.
        records.clear()
        return batch

    def batch_of_lines(self, lines: LineBuffer, context: dict) -> pa.Table:
        """The batch's RECORD lines parsed by Arrow; record by record where `parse_lines` leaves them."""
        try:
            parsed = lines.parsed()
        except LinesNotParsed as reason:
            self.logger.info("Stream '%s': loading a batch record by record (%s)", self.stream_name, reason)
            records, time_extracted, received_at = self.records_of_lines(lines, context)
            lines.clear()
            return self.batch_of_records(records, time_extracted, received_at)
        self._warn_unknown_fields(set(parsed.unknown))
        batch = batch_of_lines(self.stream_name, self.table.columns, parsed, lines.received_at())
        lines.clear()
        return batch

    def _warn_unknown_fields(self, names: set[str]) -> None:
        unknown = names - self._known_fields
        for name in sorted(unknown):
            self.logger.warning(
                "Stream '%s': field '%s' is not in its schema; not loaded", self.stream_name, name
            )
        self._known_fields |= unknown
