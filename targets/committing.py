"""What the built-in targets share: STATE only after the rows before it are committed.

singer-sdk's Target keeps the latest STATE message it has read and writes it to stdout only at the end
of `drain_all()`, after every sink (stream) has loaded its buffered records; a sink that fills up is
loaded alone (`drain_one`) without writing STATE. A `CommittingTarget` loads each batch in one
transaction committed before the sink returns, one sink at a time on its one connection, so every
STATE written follows the commit of every row read before it. To emit STATE sooner than the SDK does
(at end of input, or every five minutes), `drain_all()` is also called when that only writes STATE:
after a full batch's commit leaves no stream with buffered rows (with `flush_all_streams`, the other
streams are loaded first), and when a new STATE arrives while no stream holds buffered rows. A target
whose batches share one transaction (target-postgres loading a partition, targets/target_postgres/ledger.py)
holds STATE until `end_of_input` has committed it.

The reader hands the RECORD lines of a stream loaded as it comes to its sink as they are, a run of lines
at a time, to be parsed a batch at a time (targets/record_lines.py); every other line goes through
singer-sdk's message handling as before, in the order it came.
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import PurePath
from types import FrameType
from typing import IO, Any, TypeVar

from singer_sdk import Target
from singer_sdk.io_base import SingerReader
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.singerlib.json import serialize_json
from singer_sdk.sinks import Sink

from elt.errors import EltError
from targets.record_lines import decode_message, message_runs, read_blocks, split_rows
from targets.target_duckdb.settings import OVERWRITE

Result = TypeVar("Result")


# Takes RECORD lines of a stream as they are: (stream, whole lines, how many) -> taken?
TakeLines = Callable[[str, bytes | memoryview, int], bool]


class SingerLineReader(SingerReader):
    """singer-sdk's reader, reading the input in blocks and handing RECORD lines on as they are.

    Given `take_record_lines`, runs of RECORD lines go to it whole (record_lines.message_runs) and only
    the lines it does not take are parsed here; a RECORD line parsed here is offered to it too. Like
    singer-sdk it reads floats as Decimal (so exact columns get the digits the tap wrote), with one
    decoder for every line.
    """

    take_record_lines: TakeLines | None = None
    input_ended: Callable[[], None] | None = None  # e.g. waits for the batch loading

    def deserialize_json(self, line: str | bytes) -> dict:
        return decode_message(line)

    def process_lines(
        self, file_input: IO[str] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        take = self.take_record_lines
        if take is None:
            return super().process_lines(file_input, callbacks)
        stats: Counter[str] = Counter()
        for run in message_runs(read_blocks(file_input or self.default_input)):
            if run.stream is not None and take(run.stream, run.data, run.rows):
                stats["RECORD"] += run.rows
                continue
            for line in run.lines():
                stats[self._process_line(line, callbacks, take)] += 1
        if self.input_ended is not None:
            self.input_ended()
        return stats

    def _process_line(
        self, line: bytes, callbacks: dict[str, Callable[[dict], None]], take: TakeLines
    ) -> str:
        """Handle one line as singer-sdk's reader does; return its message type."""
        message = self.deserialize_json(line)
        self.assert_line_requires(message, requires={"type"})
        kind: str = message["type"]
        if kind == "RECORD" and _is_record(message) and take(message["stream"], line, 1):
            return kind
        if callback := callbacks.get(kind):
            callback(message)
        else:
            self._process_unknown_message(message)
        return kind


class _LoadThread:
    """Loads batches on a thread of its own, one at a time, while the main thread reads and parses on.

    A load waits for the one before it, so at most one batch is loading while the next is read. A
    process that exits (an error, a signal) while a batch loads lets that load end first, committed or
    not, and writes no STATE after it; one that is killed leaves its transaction uncommitted.
    """

    def __init__(self) -> None:
        self._work: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None  # of a load; every later wait raises it

    @property
    def busy(self) -> bool:
        """Whether a batch is loading."""
        return self._work.unfinished_tasks > 0

    def submit(self, work: Callable[[], None]) -> None:
        """Run `work` on the loading thread once the load before it is done."""
        self.wait()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="load", daemon=True)
            self._thread.start()
            # At exit the load in progress ends first; registered after the connection's close (atexit
            # runs the last registered first).
            atexit.register(self.wait, raise_failure=False)
        self._work.put(work)

    def wait(self, *, raise_failure: bool = True) -> None:
        """Wait for the batch loading, if any; raise the failure of a load."""
        self._work.join()
        if raise_failure and self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        while True:
            work = self._work.get()
            try:
                if self.failure is None:
                    work()
            except BaseException as error:  # raised in the main thread by its next wait
                self.failure = error
            finally:
                self._work.task_done()


def _is_record(message: dict) -> bool:
    """Whether a RECORD message has a stream name and a record object."""
    return isinstance(message.get("stream"), str) and isinstance(message.get("record"), dict)


class CommittingTarget(Target):
    """A Target whose sinks commit each batch, and which writes STATE only after those commits.

    Subclasses give `normalize` (config aliases folded in), `settings_class`, `open_connection()`
    and `empty_table(table)`; their sinks have a `table` (with `key` and
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
        self._line_sinks: dict[str, Any] = {}  # stream -> its sink when it takes RECORD lines, else None
        self._connection: Any = None
        self._sinks: list[Any] = []
        self._overwritten: set[tuple[str, str]] = set()  # tables emptied by this overwrite run
        self._loading = False
        self._loads = _LoadThread()
        self._commits = 0
        self._commits_at_state = 0
        self._state_written: dict | None = None
        self._state_held: dict | None = None  # STATE waiting for a transaction that spans batches
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
        if isinstance(self.message_reader, SingerLineReader):
            self.message_reader.take_record_lines = self.take_record_lines
            self.message_reader.input_ended = self.wait_for_loads

    @property
    def connection(self) -> Any:
        """The process's one connection to the warehouse, opened on first use."""
        if self._connection is None:
            self._connection = self.open_connection()
        return self._connection

    def open_connection(self) -> Any:
        """A new connection to the warehouse (given by the subclass)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection once the batch loading is done (a DuckDB file's lock is released)."""
        self.wait_for_loads(raise_failure=False)
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def empty_table(self, table: Any) -> None:
        """Delete every row of `table` (an overwrite stream that sent no rows)."""
        raise NotImplementedError

    def commit(self, table: Any, load: Callable[[bool], Result]) -> Result:
        """Run `load(empty_first)`, which loads one batch of `table` in one committed transaction.

        `empty_first` is true for the first batch of an overwrite run, which empties the table in the
        same transaction.
        """
        self._loads.wait()
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

    def commit_in_background(
        self, table: Any, load: Callable[[bool], Result], loaded: Callable[[Result], None]
    ) -> None:
        """Like `commit`, but `load` runs on the loading thread while the input is read on, and `loaded`
        gets its result there.

        Batches are committed one at a time, in the order given; `commit`, every new STATE and the end
        of the input wait for them, and a failed load is raised by the next of those.
        """
        self._loads.wait()
        # Opened here, not on the loading thread: the connection is then closed (atexit) only after
        # the exit hooks registered later, and one connection serves both threads in turn.
        _ = self.connection
        empty_first = table.load_method == OVERWRITE and table.key not in self._overwritten
        if table.load_method == OVERWRITE:
            self._overwritten.add(table.key)
        self._commits += 1
        self._loads.submit(lambda: loaded(load(empty_first)))

    def spanning_transaction(self) -> bool:
        """Whether batches committed by `commit` still sit inside a transaction that spans them (a
        partition's, targets/target_postgres/ledger.py): STATE waits until `end_of_input` commits it."""
        return False

    def end_of_input(self) -> None:
        """After the last batch is loaded, before the connection closes: commit what spans batches."""
        return None

    def wait_for_loads(self, *, raise_failure: bool = True) -> None:
        """Wait for the batch loading in the background (`commit_in_background`), if any."""
        self._loads.wait(raise_failure=raise_failure)

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
        if schema is not None:
            self._line_sinks.clear()
        return sink

    def take_record_lines(self, stream: str, data: bytes | memoryview, rows: int) -> bool:
        """Keep `rows` RECORD lines of `stream` (`data`, whole lines) in its sink's batch as they are,
        loading the batch each time it is full; False if the stream's records take the per-record path.

        A stream takes lines when it has a schema, its records are not mapped, flattened, validated or
        given metadata properties (targets/record_lines.py).
        """
        sink = self._line_sink(stream)
        if sink is None:
            return False
        if self._loads.failure is not None:
            raise self._loads.failure
        received_at = time.time()
        while rows:
            room = max(sink.max_size - sink.current_size, 1)
            count = min(rows, room)
            taken, data = (data, b"") if count == rows else split_rows(data, count)
            sink.take_lines(taken, count, received_at)
            rows -= count
            commits = self._commits
            if sink.is_full:
                self.logger.info("Target sink for '%s' is full (%d rows): loading", stream, sink.current_size)
                self.drain_one(sink)
            self._write_state_after(commits)
        self._handle_max_record_age()
        return True

    def _line_sink(self, stream: str) -> Any:
        """The stream's sink if it takes RECORD lines as they are, else None."""
        if stream in self._line_sinks:
            return self._line_sinks[stream]
        sink = self._sinks_active.get(stream)
        if sink is None:
            return None  # a record before its schema: singer-sdk reports it
        maps = self.mapper.stream_maps.get(stream) or []
        as_it_comes = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == stream
            and not maps[0].flattening_enabled
        )
        self._line_sinks[stream] = sink if as_it_comes and getattr(sink, "takes_lines", False) else None
        return self._line_sinks[stream]

    def _process_record_message(self, message_dict: dict) -> None:
        if _is_record(message_dict) and self._line_sink(message_dict["stream"]):
            # A record given as a dict (elt's in-process run) joins the stream's batch as its line.
            line = serialize_json(message_dict).encode("utf-8") + b"\n"
            self.take_record_lines(message_dict["stream"], line, 1)
            return
        # The sink reads the record's time_extracted from here for `_elt_synced_at`.
        self.time_extracted = message_dict.get("time_extracted")
        commits = self._commits
        super()._process_record_message(message_dict)
        self._write_state_after(commits)

    def _write_state_after(self, commits: int) -> None:
        """After a batch's commit (since `commits`), STATE may follow once no stream holds unloaded rows."""
        just_committed = self._commits not in (commits, self._commits_at_state)
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
        self._loads.wait()  # the rows before it are committed
        if self.spanning_transaction():
            self._state_held = state  # written once that transaction has committed
            return
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
            self._loads.wait()
            pending = {sink.table.key for sink in self._sinks if sink.current_size}
            for sink in self._sinks:
                key = sink.table.key
                if sink.table.load_method == OVERWRITE and key not in self._overwritten | pending:
                    self.empty_table(sink.table)
                    self._overwritten.add(key)
            super().process_endofpipe()
            self._loads.wait()
            self.end_of_input()
            if self._state_held is not None:
                held, self._state_held = self._state_held, None
                self._write_state_message(held)
        finally:
            self._loads.wait(raise_failure=False)
            self.close()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        if self._loading:
            # Mid-transaction: stop; the open transaction is rolled back and no STATE is written.
            self.logger.error("Received signal %d while loading a batch; exiting without STATE", signum)
            sys.exit(128 + signum)
        if self._loads.busy:
            # A batch loading in the background is let finish (or fail); no STATE is written after it.
            self.logger.error("Received signal %d while loading a batch; exiting without STATE", signum)
            self._loads.wait(raise_failure=False)
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
