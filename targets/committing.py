"""What the built-in targets share: STATE only after the rows before it are committed.

singer-sdk's Target keeps the latest STATE message it has read and writes it to stdout only at the end
of `drain_all()`, after every sink (stream) has loaded its buffered records; a sink that fills up is
loaded alone (`drain_one`) without writing STATE. A `CommittingTarget` loads each batch in one
transaction committed before the sink returns, one sink at a time on its one connection, so every
STATE written follows the commit of every row read before it. To emit STATE sooner than the SDK does
(at end of input, or every five minutes), `drain_all()` is also called when that only writes STATE:
after a full batch's commit leaves no stream with buffered rows (with `flush_all_streams`, the other
streams are loaded first), and when a new STATE arrives while no stream holds buffered rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import PurePath
from types import FrameType
from typing import IO, Any, TypeVar

from singer_sdk import Target
from singer_sdk.io_base import SingerReader
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.sinks import Sink

from elt.errors import EltError
from targets.target_duckdb.errors import LoadError
from targets.target_duckdb.settings import OVERWRITE

Result = TypeVar("Result")


class SingerLineReader(SingerReader):
    """singer-sdk's reader with one JSON decoder for every line.

    Like singer-sdk it reads floats as Decimal (so exact columns get the digits the tap wrote), but
    without building a new decoder per line, which `json.loads(line, parse_float=...)` does.
    """

    _decoder = json.JSONDecoder(parse_float=Decimal)

    def deserialize_json(self, line: str) -> dict:
        try:
            message: dict = self._decoder.decode(line)
        except json.JSONDecodeError as error:
            text = line if len(line) <= 200 else line[:197] + "..."
            raise LoadError(f"an input line is not JSON ({error}): {text!r}") from error
        return message


class CommittingTarget(Target):
    """A Target whose sinks commit each batch, and which writes STATE only after those commits.

    Subclasses give `normalize` (config aliases folded in), `settings_class`, the `connection`
    property, `close()` and `empty_table(table)`; their sinks have a `table` (with `key` and
    `load_method`) and load through `commit`.
    """

    message_reader_class = SingerLineReader
    normalize: Callable[[dict], dict]
    settings_class: Any

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
        self._connection: Any = None
        self._sinks: list[Any] = []
        self._overwritten: set[tuple[str, str]] = set()  # tables emptied by this overwrite run
        self._loading = False
        self._commits = 0
        self._commits_at_state = 0
        self._state_written: dict | None = None
        self.on_state: Callable[[dict], None] | None = None  # where STATE goes instead of stdout
        super().__init__(
            config=config,
            parse_env_config=parse_env_config,
            validate_config=validate_config,
            setup_mapper=False,
            message_reader=message_reader,
        )
        # Alias keys are folded in before the mapper (flattening) and the sinks read the config.
        self._config = type(self).normalize(self._config)
        self.settings = self.settings_class.from_config(self._config)
        if setup_mapper:
            self.setup_mapper()
        # One connection, one transaction at a time: sinks are loaded one after another.
        self.max_parallelism = 1

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def empty_table(self, table: Any) -> None:
        """Delete every row of `table` (an overwrite stream that sent no rows)."""
        raise NotImplementedError

    def commit(self, table: Any, load: Callable[[bool], Result]) -> Result:
        """Run `load(empty_first)`, which loads one batch of `table` in one committed transaction.

        `empty_first` is true for the first batch of an overwrite run, which empties the table in the
        same transaction.
        """
        empty_first = table.load_method == OVERWRITE and table.key not in self._overwritten
        self._loading = True
        try:
            result = load(empty_first)
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
        if isinstance(sink, self.default_sink_class) and sink not in self._sinks:
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
        if self.on_state is not None:
            self.on_state(state)  # elt runs this target in its own process (elt/inprocess.py)
        else:
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
                    self.empty_table(sink.table)
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
