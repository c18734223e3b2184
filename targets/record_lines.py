"""RECORD lines kept as the tap wrote them and parsed a whole batch at a time, in C++.

What costs a Singer target its time is the Python work on each record: decoding the line into dicts,
singer-sdk's per-record steps, building columns out of the dicts. For a stream loaded as it comes (no
stream maps, no flattening, no `validate_records`, no `add_record_metadata`) the built-in targets skip
all of it:

- `message_runs` reads the input in blocks and recognises RECORD lines by their first bytes,
  `{"type":"RECORD","stream":"<name>",` (with or without spaces): a block whose lines are all RECORDs
  of one stream is one run, found with two `bytes.count` calls. Every other line is handed on alone,
  to be parsed and handled by singer-sdk as before, in the order it came.
- The stream's sink keeps the runs' bytes in its batch (`LineBuffer`); memory stays bounded by
  `batch_size_rows` as before.
- When the batch is loaded, `parse_lines` reads all of its lines with Arrow's JSON reader and an
  explicit schema made from the stream's columns (`FieldRead`). Arrow is as strict as the per-record
  path: an integer column takes only integers, a string column only strings, a boolean column only
  booleans, and a number is read into a double with the rounding of Python's `float()`. A column whose
  values need the per-record path's conversions (JSON text of objects and arrays, a property of
  several types) gets its values decoded by Python's `json` (Decimal numbers, exact); a numeric column
  that keeps the digits the tap wrote gets each number's text, cut from its line.

Anything unusual raises `LinesNotParsed`, and the sink loads that batch record by record instead
(`decode_message` and singer-sdk's steps), so its errors, warnings and values are exactly those of the
per-record path: a value of the wrong type, a line that is not JSON, a record without a key property.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks import BatchSink

from elt.arrowbufs import valid_rows
from targets.target_duckdb.errors import LoadError

BLOCK_SIZE = 1 << 20  # bytes read from the input at a time
PIECE_BYTES = 4 << 20  # bytes of a batch's lines parsed at a time
_ARROW_BLOCK_SIZE = 1 << 20  # bytes of lines Arrow parses per task (raised for a longer line)
_NUMBER_WINDOW = 48  # bytes after a key searched for its number (a longer number: record by record)

# How a field (a property of the stream's records) is read.
INTEGER = "integer"  # int64: integers only
NUMBER = "number"  # float64: numbers only
BOOLEAN = "boolean"  # bool: booleans only
STRING = "string"  # string: strings only (date-times stay text, for the warehouse to cast in bulk)
NUMBER_TEXT = "number_text"  # string: the text of each number, digit for digit as the tap wrote it
VALUE = "value"  # the decoded Python value (numbers as Decimal), for the target's own conversion

_ARROW_TYPES = {
    INTEGER: pa.int64(),
    NUMBER: pa.float64(),
    BOOLEAN: pa.bool_(),
    STRING: pa.string(),
    NUMBER_TEXT: pa.float64(),  # read to check that each value is a number; the text is cut from the line
}

# The record metadata properties singer-sdk removes from each record (with add_record_metadata: false).
SDC_PROPERTIES = frozenset(
    {
        "_sdc_extracted_at",
        "_sdc_received_at",
        "_sdc_batched_at",
        "_sdc_deleted_at",
        "_sdc_sequence",
        "_sdc_table_version",
        "_sdc_sync_started_at",
    }
)

_DECODER = json.JSONDecoder(parse_float=Decimal)
# The start of a RECORD line as taps write it; a stream name with escapes is left to the full parse.
_RECORD_START = re.compile(rb'\{\s*"type"\s*:\s*"RECORD"\s*,\s*"stream"\s*:\s*"([^"\\]*)"\s*,')


class LinesNotParsed(Exception):
    """A batch of lines that `parse_lines` leaves to the per-record path; the message says why."""


def _chunks(values: Iterable[Any]) -> list[pa.Array]:
    """The arrays of arrays and chunked arrays, in order."""
    return [
        chunk
        for value in values
        for chunk in (value.chunks if isinstance(value, pa.ChunkedArray) else [value])
    ]


def decode_message(line: str | bytes) -> dict:
    """One Singer message line as a dict, with floats as Decimal (the digits the tap wrote).

    LoadError for a line that is not JSON (or not UTF-8).
    """
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        message: dict = _DECODER.decode(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        shown = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        shown = shown if len(shown) <= 200 else shown[:197] + "..."
        raise LoadError(f"an input line is not JSON ({error}): {shown!r}") from error
    return message


# --- reading the input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Lines of the input in order: `rows` RECORD lines of `stream`, or (stream None) one other line."""

    stream: str | None
    data: bytes | memoryview  # whole lines, each ending with a newline (a view of a block read)
    rows: int

    def lines(self) -> list[bytes]:
        """The run's lines, each with its newline."""
        return [line + b"\n" for line in bytes(self.data).split(b"\n")[:-1]]


def read_blocks(stream: IO[Any], size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """The bytes of a binary or text stream, in blocks of at most `size` bytes.

    A pipe's block is what it holds (`read1`), so lines are handled as they arrive.
    """
    source = getattr(stream, "buffer", stream)
    read = getattr(source, "read1", source.read)
    while block := read(size):
        yield block.encode("utf-8") if isinstance(block, str) else block


def message_runs(blocks: Iterable[bytes]) -> Iterator[Run]:
    """The input's lines as runs: RECORD lines of one stream together, every other line alone.

    A block whose lines all start as the last RECORD line recognised did is one run, without looking at
    its lines one by one. A last line without a newline gets one.
    """
    scan = _LineScan()
    pending = b""
    for block in blocks:
        first_end = block.find(b"\n") + 1
        if not first_end:
            pending += block
            continue
        yield from scan.runs(pending + block[:first_end])
        end = block.rfind(b"\n") + 1
        pending = block[end:]
        if end == first_end:
            continue
        rows = _count_newlines(block, first_end, end)
        prefix = scan.prefix
        if (
            prefix
            and block.startswith(prefix, first_end)
            and block.count(b"\n" + prefix, first_end, end) == rows - 1
        ):
            yield Run(scan.stream, memoryview(block)[first_end:end], rows)  # not copied
        else:
            yield from scan.runs(block[first_end:end])
    if pending:
        yield from scan.runs(pending + b"\n")


def _count_newlines(block: bytes, start: int, end: int) -> int:
    # numpy compares a block several times faster than bytes.count counts one character
    return int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8, count=end - start, offset=start) == 10))


class _LineScan:
    """Splits whole lines into runs; remembers the start of the last RECORD line (`prefix`)."""

    def __init__(self) -> None:
        self.prefix = b""
        self.stream: str | None = None

    def runs(self, data: bytes) -> Iterator[Run]:
        stream: str | None = None  # of the run being gathered
        start = rows = position = 0
        for line in data.split(b"\n")[:-1]:
            length = len(line) + 1
            match = _RECORD_START.match(line)
            name = _stream_name(match.group(1)) if match else None
            if rows and name != stream:
                yield Run(stream, data[start:position], rows)
                rows = 0
            if name is None:
                yield Run(None, data[position : position + length], 1)
            else:
                if not rows:
                    start, stream = position, name
                    self.prefix, self.stream = line[: match.end()], name  # type: ignore[union-attr]
                rows += 1
            position += length
        if rows:
            yield Run(stream, data[start:position], rows)


def _stream_name(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # the full parse reports the line


# --- a batch of lines ----------------------------------------------------------------------------


class LineBuffer:
    """The RECORD lines of a stream's batch as the tap wrote them, when they were read, and their columns.

    Lines are parsed (`parse`) a piece of about `piece_bytes` at a time as they come, on a thread of their
    own while the next lines are read, so a batch's columns are ready when it is loaded and memory holds a
    few pieces' parse at a time, not a batch's.
    """

    def __init__(self, parse: Callable[[bytes], ParsedLines], piece_bytes: int = PIECE_BYTES) -> None:
        self.parse = parse
        self.piece_bytes = piece_bytes
        self.parts: list[bytes | memoryview] = []
        self.counts: list[int] = []
        self.times: list[float] = []
        self.rows = 0
        self._unparsed: list[bytes | memoryview] = []
        self._unparsed_bytes = 0
        self._pieces: list[Future[ParsedLines]] = []
        self._not_parsed: BaseException | None = None

    def add(self, data: bytes | memoryview, rows: int, received_at: float | None = None) -> None:
        """Add `rows` whole lines (`data`), read at `received_at` (epoch seconds; default now)."""
        self.parts.append(data)
        self.counts.append(rows)
        self.times.append(time.time() if received_at is None else received_at)
        self.rows += rows
        self._unparsed.append(data)
        self._unparsed_bytes += len(data)
        if self._unparsed_bytes >= self.piece_bytes:
            self._parse_piece()

    def parsed(self) -> ParsedLines:
        """All lines as columns; LinesNotParsed if a piece of them needs the per-record path."""
        if self._unparsed:
            self._parse_piece()
        for piece in self._pieces:
            self._check(piece)
        if self._not_parsed is not None:
            raise self._not_parsed
        return ParsedLines.concat([piece.result() for piece in self._pieces])

    def lines(self) -> list[bytes]:
        """Each line, with its newline."""
        return [line + b"\n" for part in self.parts for line in bytes(part).split(b"\n")[:-1]]

    def received_at(self) -> np.ndarray:
        """When each line was read (epoch seconds), one per line."""
        return np.repeat(np.array(self.times, dtype=np.float64), self.counts)

    def clear(self) -> None:
        """Let the lines and columns go (once they are loaded)."""
        self.parts.clear()
        self._pieces.clear()

    def _parse_piece(self) -> None:
        data = b"".join(self._unparsed)
        self._unparsed.clear()
        self._unparsed_bytes = 0
        # Reading stays at most a few pieces ahead of parsing (memory), and stops parsing a batch
        # that goes record by record anyway.
        for piece in self._pieces[:-_PIECES_AHEAD] if len(self._pieces) >= _PIECES_AHEAD else []:
            self._check(piece)
        if self._not_parsed is None:
            self._pieces.append(_parser().submit(self.parse, data))

    def _check(self, piece: Future[ParsedLines]) -> None:
        if self._not_parsed is None and piece.exception() is not None:
            self._not_parsed = piece.exception()


_PIECES_AHEAD = 2  # pieces of lines read but not parsed yet, at most
_PARSER: ThreadPoolExecutor | None = None


def _parser() -> ThreadPoolExecutor:
    """The thread that parses pieces of lines (Arrow's own threads do the work; this one waits on them)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
    return _PARSER


def split_rows(data: bytes | memoryview, rows: int) -> tuple[bytes | memoryview, bytes | memoryview]:
    """The first `rows` lines of `data`, and the rest."""
    position = int(np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))[rows - 1]) + 1
    return data[:position], data[position:]


DELETED_AT = "_sdc_deleted_at"
_DELETED_AT_SCHEMA = {"type": ["null", "string"], "format": "date-time"}


class RecordLinesSink(BatchSink):
    """A sink that keeps its stream's RECORD lines as they came (`take_lines`) when it may.

    Subclasses call `start_batch` of this class, and load `context["lines"]` in `process_batch`: with
    `parse_lines`, or, when that leaves them, as the records `records_of_lines` makes of them.
    """

    loader: Any  # the target
    _keeps_deleted_at = False

    @cached_property
    def validate_schema(self) -> bool:
        """Validate records with jsonschema only when asked: the warehouse enforces each column's type."""
        return bool(self.config.get("validate_records", False))

    def _validate_and_parse(self, record: dict) -> dict:
        """singer-sdk's validation, with the stream and the record's position in the error."""
        try:
            return super()._validate_and_parse(record)
        except InvalidRecord as exc:
            raise LoadError(
                f"stream '{self.stream_name}': record {self._total_records_read + 1} of the stream does not "
                f"match its schema: {exc.error_message}"
            ) from None

    def _remove_sdc_metadata_from_schema(self) -> None:
        """singer-sdk's removal of the `_sdc_*` properties, except `_sdc_deleted_at` when it carries deletes.

        It is kept when the tap declares it (its deletes are data: LOG_BASED streams, for instance, where
        without it a soft-deleted row would be its key and nulls) and with `hard_delete`.
        """
        declared = (self.original_schema.get("properties") or {}).get(DELETED_AT)
        super()._remove_sdc_metadata_from_schema()
        if declared is not None or self.loader.settings.hard_delete:
            self.schema["properties"][DELETED_AT] = declared or dict(_DELETED_AT_SCHEMA)
            self._keeps_deleted_at = True

    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        deleted_at = record.get(DELETED_AT)
        super()._remove_sdc_metadata_from_record(record)
        if self._keeps_deleted_at and deleted_at is not None:
            record[DELETED_AT] = deleted_at

    @cached_property
    def takes_lines(self) -> bool:
        """Whether the stream's records may skip singer-sdk's per-record steps: none of them is asked for."""
        return not self.validate_schema and not self.include_sdc_metadata_properties

    @property
    def line_reads(self) -> tuple[FieldRead, ...]:
        """How each column is read from the lines (given by the subclass)."""
        raise NotImplementedError

    def _parse_timestamps_in_record(self, record: dict, schema: dict, treatment: Any) -> None:
        """Leave date-times as text, for the warehouse to cast a whole batch's column at once.

        That is far faster than singer-sdk's parsing of every field of every record, and a bad
        value still fails its batch, by stream, column and value.
        """

    def start_batch(self, context: dict) -> None:
        context["lines"] = LineBuffer(self.parse_lines)
        context["records"] = []
        context["time_extracted"] = []
        context["received_at"] = []

    def process_record(self, record: dict, context: dict) -> None:
        context["records"].append(record)
        context["time_extracted"].append(self.loader.time_extracted)
        context["received_at"].append(time.time())

    def process_batch(self, context: dict) -> None:
        """Load the buffered RECORD lines (or records) in one transaction, while the next batch is read
        (targets/committing.py)."""
        lines: LineBuffer | None = context.get("lines")
        if lines is not None and lines.rows:
            batch = self.batch_of_lines(lines, context)
        else:
            records: list[dict[str, Any]] = context.get("records") or []
            if not records:
                return
            # BATCH files that singer-sdk reads come without the per-record times.
            time_extracted = context.get("time_extracted") or [None] * len(records)
            received_at = context.get("received_at") or [time.time()] * len(records)
            batch = self.batch_of_records(records, time_extracted, received_at)
        self.load_in_background(batch)

    def batch_of_lines(self, lines: LineBuffer, context: dict) -> Any:
        """The batch of the buffered lines, in the form `load_in_background` takes (given by the subclass)."""
        raise NotImplementedError

    def batch_of_records(
        self,
        records: list[dict[str, Any]],
        time_extracted: Sequence[str | None],
        received_at: Sequence[float],
    ) -> Any:
        """The batch of the buffered records (given by the subclass)."""
        raise NotImplementedError

    def load_in_background(self, batch: Any) -> None:
        """Hand the batch to the target's loading thread (given by the subclass)."""
        raise NotImplementedError

    def parse_lines(self, data: bytes) -> ParsedLines:
        """Whole RECORD lines of the stream as columns (`parse_lines`)."""
        return parse_lines(data, self.line_reads, keys=self.key_properties)

    def take_lines(self, data: bytes | memoryview, rows: int, received_at: float | None = None) -> None:
        """Add `rows` RECORD lines of the stream (`data`) to the batch, as they are."""
        context = self._get_context({})
        context["lines"].add(data, rows, received_at)
        self.tally_record_read(rows)
        self.record_counter_metric.increment(rows)

    def records_of_lines(
        self, buffer: LineBuffer, context: dict
    ) -> tuple[list[dict], list[str | None], list[float]]:
        """The batch's lines as records (with their time_extracted and when they were read), through the
        per-record steps singer-sdk would have taken on reading them."""
        records = []
        extracted = []
        for line in buffer.lines():
            message = decode_message(line)
            self.loader._assert_line_requires(message, requires={"stream", "record"})
            record = message["record"]
            self._remove_sdc_metadata_from_record(record)
            record = self._validate_and_parse(record)
            record = self.preprocess_record(record, context)
            self._singer_validate_message(record)
            records.append(record)
            extracted.append(message.get("time_extracted"))
        return records, extracted, buffer.received_at().tolist()


# --- parsing a batch -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRead:
    """How one property of the records is read (one of the kinds above)."""

    name: str
    kind: str


def declared_type(property_schema: dict[str, Any]) -> str | None:
    """The one JSON type a property declares besides null (`["string", "null"]`: string), else None."""
    declared = property_schema.get("type")
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, list) or "anyOf" in property_schema or "oneOf" in property_schema:
        return None
    found = [name for name in names if name != "null"]
    return found[0] if len(found) == 1 and isinstance(found[0], str) else None


@dataclass(frozen=True)
class ParsedLines:
    """RECORD lines as columns, one per field read: Arrow values, or Python values (VALUE)."""

    rows: int
    columns: dict[str, pa.Array | pa.ChunkedArray | list[Any]]
    time_extracted: pa.Array | pa.ChunkedArray  # each message's time_extracted (string), or null
    unknown: tuple[str, ...]  # properties of the records that are not in the stream's schema

    @classmethod
    def concat(cls, pieces: Sequence[ParsedLines]) -> ParsedLines:
        """Parsed pieces of lines as one (Arrow values as chunked arrays)."""
        columns: dict[str, pa.Array | pa.ChunkedArray | list[Any]] = {}
        for name, first in pieces[0].columns.items():
            if isinstance(first, list):
                columns[name] = [value for piece in pieces for value in piece.columns[name]]
            else:
                columns[name] = pa.chunked_array(_chunks(piece.columns[name] for piece in pieces), first.type)
        return cls(
            rows=sum(piece.rows for piece in pieces),
            columns=columns,
            time_extracted=pa.chunked_array(_chunks(piece.time_extracted for piece in pieces), pa.string()),
            unknown=tuple(sorted({name for piece in pieces for name in piece.unknown})),
        )


def parse_lines(
    data: bytes,
    reads: Sequence[FieldRead],
    *,
    keys: Sequence[str] = (),
    ignored: Collection[str] = SDC_PROPERTIES,
) -> ParsedLines:
    """The RECORD messages in `data` (whole lines of one stream) as columns; LinesNotParsed if they
    need the per-record path (a value of another type, a record without a key property, ...).

    `ignored` are properties that are neither columns nor reported as unknown.
    """
    decoded = any(read.kind == VALUE for read in reads)
    record_type = pa.struct([pa.field(r.name, _ARROW_TYPES[r.kind]) for r in reads if r.kind != VALUE])
    schema = pa.schema([pa.field("record", record_type), pa.field("time_extracted", pa.string())])
    # Unknown properties are inferred, to be reported; with decoded lines they are seen there.
    table = _read_json(data, schema, unexpected="ignore" if decoded else "infer")
    chunks = table.column("record").chunks  # the parse's own chunks, not copied into one
    if any(chunk.null_count for chunk in chunks):
        raise LinesNotParsed("a RECORD message without a record object")
    rows = table.num_rows
    record_type = table.schema.field("record").type
    fields = {name: _field_of(chunks, record_type, name) for name in (f.name for f in record_type)}
    columns: dict[str, pa.ChunkedArray | list[Any]] = {
        read.name: fields[read.name] for read in reads if read.kind not in (VALUE, NUMBER_TEXT)
    }
    known = {read.name for read in reads}
    if decoded:
        records = _decoded_records(data, rows)
        for name in keys:
            if any(name not in values for values in records):
                raise LinesNotParsed(f"a record without key property '{name}'")
        for read in reads:
            if read.kind in (VALUE, NUMBER_TEXT):
                columns[read.name] = [values.get(read.name) for values in records]
        unknown = set().union(*records) - known - set(ignored)
    else:
        for name in keys:
            if fields[name].null_count:
                raise LinesNotParsed(f"a record without a value of key property '{name}'")
        numbers = [read.name for read in reads if read.kind == NUMBER_TEXT]
        if numbers:
            starts = _line_starts(data, rows)
            for name in numbers:
                columns[name] = _number_texts(data, starts, name, fields[name].combine_chunks())
        unknown = set(fields) - known - set(ignored)
    time_extracted = table.column("time_extracted")
    return ParsedLines(rows, columns, time_extracted, tuple(sorted(unknown)))


def _field_of(chunks: Sequence[pa.StructArray], record_type: pa.StructType, name: str) -> pa.ChunkedArray:
    index = record_type.get_field_index(name)
    return pa.chunked_array([chunk.flatten()[index] for chunk in chunks], record_type.field(index).type)


def _read_json(data: bytes, schema: pa.Schema, *, unexpected: str) -> pa.Table:
    block_size = _ARROW_BLOCK_SIZE
    while True:
        try:
            return pj.read_json(
                pa.BufferReader(data),
                read_options=pj.ReadOptions(block_size=block_size),
                parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected),
                # malloc's: large parse buffers go back to the system when freed (mimalloc keeps them)
                memory_pool=pa.system_memory_pool(),
            )
        except pa.ArrowInvalid as error:
            if "straddl" in str(error) and block_size < len(data):
                block_size *= 8  # a line longer than a block
                continue
            raise LinesNotParsed(str(error)) from error
        except pa.ArrowException as error:
            raise LinesNotParsed(str(error)) from error


def _decoded_records(data: bytes, rows: int) -> list[dict[str, Any]]:
    lines = data.split(b"\n")
    if lines[-1].strip():
        raise LinesNotParsed("a last line without a newline")
    records = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = decode_message(line).get("record")
        except LoadError as error:
            raise LinesNotParsed(str(error)) from error
        if not isinstance(record, dict):
            raise LinesNotParsed("a RECORD message without a record object")
        records.append(record)
    if len(records) != rows:
        raise LinesNotParsed("lines that Arrow and Python count differently")
    return records


def _line_starts(data: bytes, rows: int) -> np.ndarray:
    """The offset of each line's start, and of the end of the data."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    if len(ends) != rows:
        raise LinesNotParsed("blank lines among the records")
    return np.concatenate(([0], ends + 1))


def _byte_class(characters: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(characters, dtype=np.uint8)] = True
    return table


_BLANK = _byte_class(b" \t\r\n")
_DELIMITER = _byte_class(b",}] \t\r\n")
_NUMBER_START = _byte_class(b"-0123456789")


def _number_texts(data: bytes, starts: np.ndarray, name: str, parsed: pa.Array) -> pa.Array:
    """Property `name`'s numbers as the text the tap wrote, cut from each line after `"name":`.

    `parsed` is the property as Arrow read it (float64): a line holds a number where it is not null.
    Where the key appears with a number more or less often than that says (the same key in a nested
    object, a key written with other escapes), LinesNotParsed.
    """
    rows = len(starts) - 1
    needles = {json.dumps(name).encode() + b":", json.dumps(name, ensure_ascii=False).encode() + b":"}
    positions = np.sort(np.concatenate([_positions_after(data, needle) for needle in needles]))
    # The bytes after each key (the data padded if a key is near its end).
    if len(positions) and positions[-1] > len(data) - _NUMBER_WINDOW:
        data += b" " * _NUMBER_WINDOW
    buffer = np.frombuffer(data, dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(buffer, _NUMBER_WINDOW)[positions]
    lead = np.argmin(_BLANK[windows], axis=1)  # the value's first byte
    is_number = _NUMBER_START[windows[np.arange(len(positions)), lead]]
    windows, lead = windows[is_number], lead[is_number]
    number_rows = (np.searchsorted(starts, positions, side="right") - 1)[is_number]
    valid = valid_rows(parsed)
    if len(number_rows) != int(valid.sum()) or not np.array_equal(number_rows, np.flatnonzero(valid)):
        raise LinesNotParsed(f"property '{name}' appears in the lines other than as one number each")
    column = np.arange(_NUMBER_WINDOW)
    ends = _DELIMITER[windows] & (column > lead[:, None])
    if not ends.any(axis=1).all():
        raise LinesNotParsed(f"a number of '{name}' longer than {_NUMBER_WINDOW - 1} characters")
    stop = np.argmax(ends, axis=1)
    row_lengths = np.zeros(rows, dtype=np.int64)
    row_lengths[number_rows] = stop - lead
    offsets = np.concatenate(([0], np.cumsum(row_lengths))).astype(np.int32)
    # Row by row, the bytes from `lead` to `stop` of each window: the numbers' text, in row order.
    text = windows[(column >= lead[:, None]) & (column < stop[:, None])]
    nulls = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(
        rows, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()), nulls, rows - len(number_rows)
    )


def _positions_after(data: bytes, needle: bytes) -> np.ndarray:
    """The offset just after each occurrence of `needle` in `data`."""
    lengths = np.fromiter(map(len, data.split(needle)), dtype=np.int64)
    if len(lengths) == 1:
        return np.zeros(0, dtype=np.int64)
    return np.cumsum(lengths[:-1]) + np.arange(1, len(lengths)) * len(needle)
