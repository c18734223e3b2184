"""target-duckdb: a Singer target that loads each stream into a DuckDB table through Arrow batches.

When STATE comes out: singer-sdk's Target keeps the latest STATE message it has read and writes
it to stdout only at the end of `drain_all()`, after every sink (stream) has loaded its buffered
records; a sink that fills up is loaded alone (`drain_one`) without writing STATE. Each load here
is one DuckDB transaction committed before `process_batch` returns, and sinks are drained one at a
time on the one connection, so every STATE written follows the commit of every row read before it.
To emit STATE sooner than the SDK does (at end of input, or every five minutes), `drain_all()` is
also called when that only writes STATE: after a full batch's commit leaves no stream with
buffered rows (with `flush_all_streams`, the other streams are loaded first), and when a new STATE
arrives while no stream holds buffered rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import PurePath
from types import FrameType
from typing import IO

import duckdb
import pyarrow as pa
from singer_sdk import Target
from singer_sdk.helpers.capabilities import TargetCapabilities
from singer_sdk.io_base import SingerReader
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.sinks import Sink

from elt.errors import EltError
from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.settings import (
    CONFIG_JSONSCHEMA,
    OVERWRITE,
    LoaderSettings,
    normalize_config,
)
from targets.target_duckdb.sinks import DuckDBSink
from targets.target_duckdb.warehouse import (
    BatchResult,
    TableSpec,
    empty_table,
    load_batch,
    load_file_batch,
    open_database,
)


class SingerLineReader(SingerReader):
    """singer-sdk's reader with one JSON decoder for every line.

    Like singer-sdk it reads floats as Decimal, but without building a new decoder per line, which
    `json.loads(line, parse_float=...)` does.
    """

    _decoder = json.JSONDecoder(parse_float=Decimal)

    def deserialize_json(self, line: str) -> dict:
        try:
            message: dict = self._decoder.decode(line)
        except json.JSONDecodeError as error:
            text = line if len(line) <= 200 else line[:197] + "..."
            raise LoadError(f"an input line is not JSON ({error}): {text!r}") from error
        return message


class TargetDuckDB(Target):
    """Loads Singer streams into DuckDB tables, per docs/connectors.md."""

    name = "target-duckdb"
    config_jsonschema = CONFIG_JSONSCHEMA
    default_sink_class = DuckDBSink
    message_reader_class = SingerLineReader
    capabilities = [*Target.capabilities, TargetCapabilities.HARD_DELETE]

    def __init__(
        self,
        *,
        config: dict | PurePath | str | list[PurePath | str] | None = None,
        parse_env_config: bool = False,
        validate_config: bool = True,
        setup_mapper: bool = True,
        message_reader: SingerReader | None = None,
    ) -> None:
        self.time_extracted: str | None = None  # of the record being processed
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._sinks: list[DuckDBSink] = []
        self._overwritten: set[tuple[str, str]] = set()  # tables emptied by this overwrite run
        self._loading = False
        self._commits = 0
        self._commits_at_state = 0
        self._state_written: dict | None = None
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=False,
            message_reader=message_reader,
        )
        # Alias keys are folded in before the mapper (flattening) and the sinks read the config.
        self._config = normalize_config(self._config)
        self.settings = LoaderSettings.from_config(self._config)
        if setup_mapper:
            self.setup_mapper()
        # One connection, one transaction at a time: sinks are loaded one after another.
        self.max_parallelism = 1

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The process's one DuckDB connection, opened on first use."""
        if self._connection is None:
            self._connection = open_database(self.settings)
        return self._connection

    def close(self) -> None:
        """Close the connection, releasing the database file's lock."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def load(self, table: TableSpec, batch: pa.Table) -> BatchResult:
        """Load one batch of a stream's records in one committed transaction."""
        return self._commit(table, batch, load_batch)

    def load_file(self, table: TableSpec, data: pa.Table) -> BatchResult:
        """Load one BATCH file of a stream in one committed transaction."""
        return self._commit(table, data, load_file_batch)

    def _commit(self, table: TableSpec, data: pa.Table, loader: Callable[..., BatchResult]) -> BatchResult:
        empty_first = table.load_method == OVERWRITE and table.key not in self._overwritten
        self._loading = True
        try:
            result = loader(self.connection, table, data, empty_table_first=empty_first)
        finally:
            self._loading = False
        if table.load_method == OVERWRITE:
            self._overwritten.add(table.key)
        self._commits += 1
        return result

    def get_sink(
        self,
        stream_name: str,
        *,
        record: dict | None = None,
        schema: dict | None = None,
        key_properties: Sequence[str] | None = None,
    ) -> Sink:
        """The stream's sink; on a new schema the old sink's rows are loaded before any new ones.

        singer-sdk would hold the old sink's rows until the next `drain_all()`, so a full batch
        under the new schema could be written before older rows (upsert would keep older values).
        """
        if schema is not None and self.sink_exists(stream_name):
            current = super().get_sink(stream_name)
            if current.original_schema != schema or list(current.key_properties) != list(
                key_properties or []
            ):
                self.drain_one(current)
        sink = super().get_sink(stream_name, record=record, schema=schema, key_properties=key_properties)
        if isinstance(sink, DuckDBSink) and sink not in self._sinks:
            self._sinks.append(sink)
        return sink

    def _process_record_message(self, message_dict: dict) -> None:
        # The sink reads the record's time_extracted from here for `_elt_synced_at`.
        self.time_extracted = message_dict.get("time_extracted")
        commits = self._commits
        super()._process_record_message(message_dict)
        just_committed = self._commits not in (commits, self._commits_at_state)
        # After a full batch's commit, STATE may follow once no stream holds unloaded rows.
        if just_committed and (self.settings.flush_all_streams or not self._rows_buffered()):
            self.drain_all()

    def _process_state_message(self, message_dict: dict) -> None:
        super()._process_state_message(message_dict)
        # With no unloaded rows, every row before this STATE is committed: it may go out now.
        if message_dict["value"] != self._state_written and not self._rows_buffered():
            self.drain_all()

    def _write_state_message(self, state: dict) -> None:
        self._commits_at_state = self._commits
        if state == self._state_written:
            return  # the same STATE again (e.g. the end-of-input drain) says nothing new
        self._state_written = state
        super()._write_state_message(state)

    def _rows_buffered(self) -> bool:
        return any(sink.current_size for sink in self._sinks)

    def process_endofpipe(self) -> None:
        """Empty the tables of overwrite streams that sent no rows, load the rest, emit STATE."""
        try:
            pending = {sink.table.key for sink in self._sinks if sink.current_size}
            for sink in self._sinks:
                key = sink.table.key
                if sink.table.load_method == OVERWRITE and key not in self._overwritten | pending:
                    empty_table(self.connection, sink.table)
                    self._overwritten.add(key)
            super().process_endofpipe()
        finally:
            self.close()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        if self._loading:
            # Mid-transaction: stop; the open transaction is rolled back and no STATE is written.
            self.logger.error("Received signal %d while loading a batch; exiting without STATE", signum)
            sys.exit(128 + signum)
        super()._handle_termination(signum, frame)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: IO[str] | None = None,
    ) -> None:
        """Run the target; an elt error is reported as its message alone, with its exit code."""
        try:
            super().invoke(about=about, about_format=about_format, config=config, file_input=file_input)
        except EltError as error:
            cls.logger.error("%s", error)
            sys.exit(error.exit_code)
