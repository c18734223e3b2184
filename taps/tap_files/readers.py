"""Read CSV, JSONL and Parquet files into typed Arrow record batches.

A stream's columns are one Arrow schema, derived from its JSON Schema (`arrow_field`) and back
(`json_property`). A `FormatReader` infers a file's schema (`infer_schema`, reading the whole
file with pyarrow) and reads a file as batches conformed to a target schema (`read_batches`);
`to_rows` turns a batch into JSON-ready dicts. Formats differ only in how pyarrow is called.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from singer_sdk.exceptions import FatalSyncError

BATCH_ROWS = 10_000
TIMESTAMP = pa.timestamp("us", tz="UTC")
TIME = pa.time64("us")

# A string field holding JSON text, emitted decoded (declared `json`, or an untyped object/array).
_JSON_META = {b"tap_files": b"json"}

_SHORT_TYPES: dict[str, dict[str, Any]] = {
    "integer": {"type": ["integer", "null"]},
    "number": {"type": ["number", "null"]},
    "string": {"type": ["string", "null"]},
    "boolean": {"type": ["boolean", "null"]},
    "date": {"type": ["string", "null"], "format": "date"},
    "date-time": {"type": ["string", "null"], "format": "date-time"},
    "time": {"type": ["string", "null"], "format": "time"},
    "json": {},  # no type: JSON text may hold a scalar or null as well as an object or array
}
SHORT_TYPE_NAMES = tuple(_SHORT_TYPES)

_COMPRESSION_SUFFIXES = (".gz", ".bz2")
_FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
_OFFSET_AT_END = r"[T ]\d\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|[+-]\d\d(:?\d\d)?)$"
_LOOKS_TEMPORAL = re.compile(r"^(\d{4}-\d\d-\d\d|\d\d:\d\d)")


class FileReadError(FatalSyncError):
    """A source file cannot be read, or a value in it does not fit its column's type."""


# -- files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """One file of a stream, as found when the tap started."""

    path: str
    format: str
    mtime_ns: int


def find_paths(pattern: str) -> list[Path]:
    """Return the files named by `pattern`: a file, a directory (its files, recursively) or a glob.

    Inside a directory, names starting with "." or "_" are skipped: hidden files and the markers
    (`_SUCCESS`) that Spark and Hadoop write next to their output. An empty list means nothing
    matched.
    """
    pattern = str(Path(pattern).expanduser())
    path = Path(pattern)
    if any(char in pattern for char in "*?["):
        anchor = Path(path.anchor) if path.is_absolute() else Path()
        relative = str(path.relative_to(anchor)) if path.is_absolute() else pattern
        return sorted(p for p in anchor.glob(relative) if p.is_file())
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
    return [path] if path.is_file() else []


def format_of(path: Path) -> str | None:
    """Return the format implied by a file's extension (ignoring .gz/.bz2), or None."""
    name = path.name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return _FORMAT_BY_SUFFIX.get(Path(name).suffix)


# -- types --------------------------------------------------------------------------------------


def declared_property(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Return the nullable JSON Schema of a declared column: a short type name or a schema dict."""
    if isinstance(spec, str):
        if spec not in _SHORT_TYPES:
            raise ValueError(f"unknown type '{spec}', expected one of {', '.join(_SHORT_TYPES)}")
        return dict(_SHORT_TYPES[spec])
    prop = dict(spec)
    types = prop.get("type")
    if isinstance(types, str) and types != "null":
        prop["type"] = [types, "null"]
    elif isinstance(types, list) and "null" not in types:
        prop["type"] = [*types, "null"]
    return prop


def is_json(field: pa.Field) -> bool:
    """Whether a field holds JSON text to be emitted decoded."""
    return bool(field.metadata and field.metadata.get(b"tap_files") == b"json")


def json_field(name: str) -> pa.Field:
    """A field holding JSON text (see `is_json`)."""
    return pa.field(name, pa.string(), metadata=_JSON_META)


def arrow_field(name: str, prop: Mapping[str, Any]) -> pa.Field:
    """Return the Arrow field that holds values of the JSON Schema `prop`."""
    prop = _without_any_of(prop)
    raw = prop.get("type", [])
    types = {raw} if isinstance(raw, str) else set(raw)
    types.discard("null")
    if types == {"string"}:
        by_format = {"date-time": TIMESTAMP, "date": pa.date32(), "time": TIME}
        return pa.field(name, by_format.get(prop.get("format", ""), pa.string()))
    scalars = {"integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}
    if len(types) == 1 and (only := next(iter(types))) in scalars:
        return pa.field(name, scalars[only])
    if types == {"integer", "number"}:
        return pa.field(name, pa.float64())
    if types and types <= {"string", "integer", "number", "boolean"}:
        return pa.field(name, pa.string())
    if types == {"object"} and prop.get("properties"):
        children = [arrow_field(key, value) for key, value in prop["properties"].items()]
        if not any(is_json(child) for child in children):
            return pa.field(name, pa.struct(children))
    if types == {"array"} and isinstance(prop.get("items"), Mapping):
        item = arrow_field("item", prop["items"])
        if not is_json(item):
            return pa.field(name, pa.list_(item.type))
    return json_field(name)


def _without_any_of(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """`{"anyOf": [A, B]}` as one schema with the types of A and B (and their format, if any)."""
    if "type" in prop or "anyOf" not in prop:
        return prop
    merged: dict[str, Any] = {"type": []}
    for option in map(_without_any_of, prop["anyOf"]):
        types = option.get("type", [])
        merged["type"] += [types] if isinstance(types, str) else list(types)
        for key in ("format", "properties", "items"):
            if key in option:
                merged.setdefault(key, option[key])
    return merged


def json_property(field: pa.Field) -> dict[str, Any]:
    """Return the nullable JSON Schema of an Arrow field (the inverse of `arrow_field`)."""
    kind = field.type
    if is_json(field):
        return dict(_SHORT_TYPES["json"])
    if pa.types.is_integer(kind):
        return {"type": ["integer", "null"]}
    if pa.types.is_floating(kind):
        return {"type": ["number", "null"]}
    if pa.types.is_boolean(kind):
        return {"type": ["boolean", "null"]}
    if pa.types.is_timestamp(kind):
        return dict(_SHORT_TYPES["date-time"])
    if pa.types.is_date(kind):
        return dict(_SHORT_TYPES["date"])
    if pa.types.is_time(kind):
        return dict(_SHORT_TYPES["time"])
    if pa.types.is_struct(kind) and kind.num_fields:
        properties = {child.name: json_property(child) for child in kind}
        return {"type": ["object", "null"], "properties": properties}
    if pa.types.is_list(kind):
        return {"type": ["array", "null"], "items": json_property(kind.value_field)}
    if pa.types.is_struct(kind):
        return {"type": ["object", "null"]}
    return {"type": ["string", "null"]}


def normalize_type(kind: pa.DataType) -> pa.DataType:
    """Map an Arrow type onto the few a stream uses: int64, float64, UTC microseconds, ..."""
    if pa.types.is_dictionary(kind):
        return normalize_type(kind.value_type)
    if pa.types.is_integer(kind):
        return pa.int64()
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pa.float64()
    if pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return kind
    if pa.types.is_timestamp(kind):
        return TIMESTAMP
    if pa.types.is_date(kind):
        return pa.date32()
    if pa.types.is_time(kind):
        return TIME
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(child.name, normalize_type(child.type)) for child in kind])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return pa.list_(normalize_type(kind.value_type))
    return pa.string()


def unify_types(left: pa.DataType, right: pa.DataType) -> pa.DataType:
    """Return a type holding values of both: integer+number is number, other conflicts string."""
    if left == right or pa.types.is_null(right):
        return left
    if pa.types.is_null(left):
        return right
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(left) for f in numeric) and any(f(right) for f in numeric):
        return pa.float64()
    if pa.types.is_struct(left) and pa.types.is_struct(right):
        merged = {child.name: child.type for child in left}
        for child in right:
            merged[child.name] = unify_types(merged.get(child.name, pa.null()), child.type)
        return pa.struct(list(merged.items()))
    if pa.types.is_list(left) and pa.types.is_list(right):
        return pa.list_(unify_types(left.value_type, right.value_type))
    return pa.string()


def unify_schemas(schemas: Iterable[pa.Schema]) -> pa.Schema:
    """Merge file schemas into one: the union of columns in first-seen order, types unified.

    A column that is null in every file becomes a string column.
    """
    merged: dict[str, pa.DataType] = {}
    for schema in schemas:
        for field in schema:
            merged[field.name] = unify_types(merged.get(field.name, pa.null()), field.type)
    return pa.schema([pa.field(name, _without_nulls(kind)) for name, kind in merged.items()])


def _without_nulls(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_null(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(child.name, _without_nulls(child.type)) for child in kind])
    if pa.types.is_list(kind):
        return pa.list_(_without_nulls(kind.value_type))
    return kind


# -- values -------------------------------------------------------------------------------------


def conform_array(array: pa.Array, field: pa.Field, *, strings_are_json: bool) -> pa.Array:
    """Convert `array` to the type of `field`; raises pyarrow or ValueError on a value that won't.

    Empty strings are null in a non-string column. Naive timestamps are taken as UTC.
    `strings_are_json` says whether a string is JSON text (a CSV cell) or a JSON string value.
    """
    source, target = array.type, field.type
    if pa.types.is_dictionary(source):
        array = array.dictionary_decode()
        source = array.type
    if is_json(field):
        if pa.types.is_string(source) and strings_are_json:
            array = _empty_as_null(array)
            for value in array.to_pylist():
                if value is not None:
                    json.loads(value)
            return array
        return _json_text(array)
    if source == target:
        return array
    if pa.types.is_null(source):
        return pa.nulls(len(array), target)
    if _is_text(source) and not pa.types.is_string(target):
        array = _empty_as_null(array)
        if pa.types.is_timestamp(target):
            return parse_timestamps(array)
        if pa.types.is_time(target):
            day = pa.scalar("1970-01-01T", source)
            prefixed = pc.binary_join_element_wise(day, array, pa.scalar("", source))
            return pc.cast(_parse_naive_timestamps(prefixed), TIME)
    if pa.types.is_string(target):
        if pa.types.is_nested(source):
            return _json_text(array)
        if pa.types.is_timestamp(source):
            return _iso_timestamps(array)
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        return pc.cast(array, target, safe=False)
    if pa.types.is_nested(target) and pa.types.is_nested(source):
        try:
            return pc.cast(array, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Structs with other fields than the target's: rebuild from Python values.
            plain = pc.cast(array, normalize_type(source))
            return pa.array(plain.to_pylist(), type=target)
    return pc.cast(array, target)


def _iso_timestamps(array: pa.Array) -> pa.Array:
    # Wall-clock UTC first: formatting then needs no time zone database. %S carries the fraction.
    utc = pc.cast(pc.cast(array, TIMESTAMP, safe=False), pa.timestamp("us"))
    return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S+00:00")


def _empty_as_null(strings: pa.Array) -> pa.Array:
    empty = pc.equal(strings, pa.scalar("", strings.type))
    return pc.if_else(empty, pa.scalar(None, strings.type), strings)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _json_text(array: pa.Array) -> pa.Array:
    values = array.to_pylist()
    return pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())


def parse_timestamps(strings: pa.Array) -> pa.Array:
    """Parse ISO 8601 strings into UTC microsecond timestamps; values without an offset are UTC.

    Unlike a plain cast, a column may mix values with and without an offset, and may carry
    nanoseconds (truncated).
    """
    has_offset = pc.match_substring_regex(strings, _OFFSET_AT_END)
    nothing = pa.scalar(None, strings.type)
    with_offset = _cast_timestamps(pc.if_else(has_offset, strings, nothing), TIMESTAMP)
    naive = _parse_naive_timestamps(pc.if_else(has_offset, nothing, strings))
    return pc.if_else(has_offset, with_offset, pc.cast(naive, TIMESTAMP))


def _parse_naive_timestamps(strings: pa.Array) -> pa.Array:
    return _cast_timestamps(strings, pa.timestamp("us"))


def _cast_timestamps(strings: pa.Array, kind: pa.TimestampType) -> pa.Array:
    try:
        return pc.cast(strings, kind)
    except pa.ArrowInvalid:
        # Nanosecond strings only parse at nanosecond unit; microseconds are what we keep.
        fine = pa.timestamp("ns", tz=kind.tz)
        return pc.cast(pc.cast(strings, fine), kind, safe=False)


def sniff_temporal(strings: pa.Array | pa.ChunkedArray) -> pa.DataType | None:
    """Return date, time or timestamp if every non-empty string parses as one, else None.

    pyarrow infers these types itself, except for a column that mixes offsets and naive values,
    carries nanoseconds, or comes from JSON (whose reader only knows whole-second timestamps).
    """
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    present = pc.drop_null(_empty_as_null(strings))
    if len(present) == 0 or not _LOOKS_TEMPORAL.match(present[0].as_py()):
        return None
    for kind in (pa.date32(), TIME, TIMESTAMP):
        try:
            conform_array(present, pa.field("value", kind), strings_are_json=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return kind
    return None


def first_failing_row(array: pa.Array, convert: Callable[[pa.Array], object]) -> int | None:
    """Return the index of the first value `convert` fails on (by bisection), or None."""

    def fails(part: pa.Array) -> bool:
        try:
            convert(part)
        except (pa.ArrowException, ValueError):
            return True
        return False

    if not fails(array):
        return None
    low, high = 0, len(array)  # the failure lies in array[low:high]
    while high - low > 1:
        middle = (low + high) // 2
        if fails(array.slice(low, middle - low)):
            high = middle
        else:
            low = middle
    return low


def to_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Return a batch as JSON-ready dicts.

    Timestamps become ISO 8601 strings in UTC with microseconds (`2024-01-02T03:04:05.000000+00:00`,
    the format singer-sdk writes bookmarks in, so that strings sort as the instants do), dates and
    times ISO strings, NaN null, and JSON text decoded.
    """
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = _iso_timestamps(column)
        elif pa.types.is_date(field.type) or pa.types.is_time(field.type):
            column = pc.cast(column, pa.string())
        elif pa.types.is_floating(field.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
        columns.append(column)
    rows = pa.RecordBatch.from_arrays(columns, names=batch.schema.names).to_pylist()
    for name in (field.name for field in batch.schema if is_json(field)):
        for row in rows:
            if row[name] is not None:
                row[name] = json.loads(row[name])
    return rows


# -- formats ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written; a `None` delimiter is a tab for .tsv files, else a comma."""

    delimiter: str | None = None
    quotechar: str = '"'
    escapechar: str | None = None
    doublequote: bool = True


class FormatReader:
    """Reads files of one format for one stream; subclasses say how pyarrow is called."""

    first_line: ClassVar[int] = 1
    """Line (or row) number of a file's first record, for messages and `_sdc_source_lineno`."""
    position: ClassVar[str] = "line"
    """What a record's place in a file is called in messages."""
    strings_are_json: ClassVar[bool] = True
    """Whether a string read for a `json` column is JSON text (else it is a JSON string value)."""

    def __init__(self, entity: str, *, encoding: str = "utf-8", dialect: CsvDialect | None = None) -> None:
        self.entity = entity
        self.encoding = encoding
        self.dialect = dialect or CsvDialect()

    def infer_schema(self, path: str, declared: Mapping[str, pa.Field]) -> pa.Schema:
        """Return the normalized schema of a whole file, checking `declared` columns' values.

        An empty file (zero bytes) has no columns.
        """
        if _is_empty(path):
            return pa.schema([])
        table = self._read_whole(path, declared)
        fields = []
        for field, column in zip(table.schema, table.columns, strict=True):
            if field.name in declared:
                self._conform_column(path, column.combine_chunks(), declared[field.name], 0)
                fields.append(declared[field.name])
                continue
            kind = normalize_type(field.type)
            if pa.types.is_string(field.type):
                kind = sniff_temporal(column) or kind
            fields.append(pa.field(field.name, kind))
        return pa.schema(fields)

    def read_batches(self, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        """Yield a file's rows as batches with exactly the fields of `schema`."""
        if _is_empty(path):
            return
        first_row = 0
        for batch in self._guarded(path, self._read(path, schema)):
            arrays = []
            for field in schema:
                index = batch.schema.get_field_index(field.name)
                if index < 0:
                    arrays.append(pa.nulls(batch.num_rows, field.type))
                else:
                    arrays.append(self._conform_column(path, batch.column(index), field, first_row))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            first_row += batch.num_rows

    def error(self, path: str, problem: str, line: int | None = None) -> FileReadError:
        """An error naming the stream, the file and, if known, the line."""
        where = path if line is None else f"{path}, {self.position} {line}"
        return FileReadError(f"tap-files: stream '{self.entity}': {where}: {problem}")

    def _read_whole(self, path: str, declared: Mapping[str, pa.Field]) -> pa.Table:
        raise NotImplementedError

    def _read(self, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def _explain(self, path: str, exc: Exception) -> FileReadError:
        """Turn an error of pyarrow or the file system into a message naming stream and file."""
        if isinstance(exc, OSError):
            return self.error(path, f"cannot open the file: {exc.strerror or exc}")
        kind = type(self).__name__.removesuffix("Reader").upper()
        return self.error(path, f"not readable as {kind}: {_first_line(exc)}")

    def _guarded(self, path: str, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except (pa.ArrowException, OSError) as exc:
            raise self._explain(path, exc) from exc

    def _conform_column(self, path: str, source: pa.Array, field: pa.Field, first_row: int) -> pa.Array:
        def convert(part: pa.Array) -> pa.Array:
            return conform_array(part, field, strings_are_json=self.strings_are_json)

        try:
            return convert(source)
        except (pa.ArrowException, ValueError) as exc:
            row = first_failing_row(source, convert)
            found = "" if row is None else f", found {source[row].as_py()!r}"
            line = None if row is None else first_row + row + self.first_line
            raise self.error(
                path,
                f"column '{field.name}' expects {describe_type(field)}{found} ({_first_line(exc)})",
                line,
            ) from exc


class CsvReader(FormatReader):
    """CSV with pyarrow.csv: the whole file for inference, streamed blocks for reading.

    Declared types are parsed by pyarrow itself, so "007" declared as a string stays "007". Only an
    empty cell is null (not "NA" or "NULL"), and cells of string columns stay as written.
    """

    first_line = 2
    _CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (.+?): invalid value")

    def _read_whole(self, path: str, declared: Mapping[str, pa.Field]) -> pa.Table:
        types = {name: _csv_parse_type(field) for name, field in declared.items()}
        options = self._convert_options(types)
        try:
            table = pa_csv.read_csv(path, self._read_options(), self._parse_options(path), options)
        except (pa.ArrowException, OSError) as exc:
            raise self._explain(path, exc) from exc
        for field in table.schema:
            if pa.types.is_binary(field.type):
                raise self.error(
                    path,
                    f"column '{field.name}' is not valid {self.encoding} text; "
                    "set `encoding` for this stream (e.g. latin-1)",
                )
        return table

    def _read(self, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        types = {field.name: _csv_parse_type(field) for field in schema}
        options = self._convert_options(types, include=schema.names)
        yield from pa_csv.open_csv(path, self._read_options(), self._parse_options(path), options)

    def _explain(self, path: str, exc: Exception) -> FileReadError:
        match = self._CONVERSION.search(str(exc))
        value = re.search(r"invalid value '(.*)'", str(exc))
        if match is None or value is None:
            return super()._explain(path, exc)
        header = pa_csv.open_csv(path, self._read_options(), self._parse_options(path)).schema
        name = header.names[int(match[1])]
        problem = f"column '{name}' expects {_user_type(match[2])}, found {value[1]!r}"
        return self.error(path, problem, self._line_of(path, name, value[1]))

    def _line_of(self, path: str, column: str, value: str) -> int | None:
        """The line of the first cell of `column` holding `value` (if no cell spans lines)."""
        options = self._convert_options({column: pa.string()}, include=[column])
        cells = pa_csv.read_csv(path, self._read_options(), self._parse_options(path), options)
        index: int = pc.index(cells.column(0), value).as_py()
        return None if index < 0 else index + self.first_line

    def _read_options(self) -> pa_csv.ReadOptions:
        return pa_csv.ReadOptions(encoding=self.encoding)

    def _parse_options(self, path: str) -> pa_csv.ParseOptions:
        tab = ".tsv" in Path(path).name.lower()
        return pa_csv.ParseOptions(
            delimiter=self.dialect.delimiter or ("\t" if tab else ","),
            quote_char=self.dialect.quotechar,
            double_quote=self.dialect.doublequote,
            escape_char=self.dialect.escapechar or False,
            newlines_in_values=True,
        )

    @staticmethod
    def _convert_options(
        types: Mapping[str, pa.DataType], include: list[str] | None = None
    ) -> pa_csv.ConvertOptions:
        return pa_csv.ConvertOptions(
            column_types=dict(types),
            null_values=[""],
            include_columns=include,
            include_missing_columns=include is not None,
        )


def _csv_parse_type(field: pa.Field) -> pa.DataType:
    """The type pyarrow.csv parses a column as; times, timestamps and JSON are converted after.

    (Their conversions accept more than pyarrow.csv's: mixed offsets, "10:30" for a time.)
    """
    kind = field.type
    if is_json(field) or pa.types.is_timestamp(kind) or pa.types.is_time(kind):
        return pa.string()
    return pa.string() if pa.types.is_nested(kind) else kind


class JsonlReader(FormatReader):
    """Newline-delimited JSON with pyarrow.json, a whole file at a time.

    pyarrow reads each JSON type into one Arrow type, so a key must keep one JSON type (number,
    string, object...) within a file; files may differ, and are merged like any others.
    """

    strings_are_json = False

    def _read_whole(self, path: str, declared: Mapping[str, pa.Field]) -> pa.Table:
        table = self._load(path)
        # pyarrow reads whole-second ISO strings, dates included, as timestamps: re-read a column
        # as strings when all its values sit at midnight, so that dates can be told apart.
        midnight = [
            field.name
            for field, column in zip(table.schema, table.columns, strict=True)
            if pa.types.is_timestamp(field.type) and _all_midnight(column)
        ]
        if midnight:
            as_strings = pa.schema([pa.field(name, pa.string()) for name in midnight])
            table = self._load(path, as_strings)
        return table

    def _read(self, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        yield from self._load(path).to_batches(max_chunksize=BATCH_ROWS)

    def _load(self, path: str, explicit: pa.Schema | None = None) -> pa.Table:
        options = pa_json.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")
        try:
            if self.encoding.replace("-", "").replace("_", "").lower() == "utf8":
                return pa_json.read_json(path, parse_options=options)
            with pa.input_stream(path) as stream:
                text = stream.read().decode(self.encoding)
            return pa_json.read_json(pa.BufferReader(text.encode()), parse_options=options)
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise self._explain(path, exc) from exc

    def _explain(self, path: str, exc: Exception) -> FileReadError:
        if isinstance(exc, UnicodeDecodeError):
            return self.error(path, f"not valid {self.encoding} text: {exc}")
        changed = re.search(r"Column\((.*?)\) changed from (\w+) to (\w+) in row (\d+)", str(exc))
        if changed is None:
            return super()._explain(path, exc)
        column, before, after, row = changed.groups()
        if not column:
            return self.error(path, "each line must hold one JSON object (JSON Lines)")
        problem = (
            f"key '{column.lstrip('/')}' holds {before} values, then a {after} near row {row}; "
            "a key must keep one JSON type within a file"
        )
        return self.error(path, problem)


def _all_midnight(column: pa.ChunkedArray) -> bool:
    present = pc.drop_null(column)
    if len(present) == 0:
        return False
    seconds = pc.cast(present, pa.timestamp("s"), safe=False)
    return bool(pc.all(pc.equal(seconds, pc.floor_temporal(seconds, unit="day"))).as_py())


class ParquetReader(FormatReader):
    """Parquet with pyarrow.parquet: the schema from the file footer, row groups read in batches."""

    position = "row"

    def infer_schema(self, path: str, declared: Mapping[str, pa.Field]) -> pa.Schema:
        if _is_empty(path):
            return pa.schema([])
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise self._explain(path, exc) from exc
        return pa.schema(
            declared.get(field.name, pa.field(field.name, normalize_type(field.type))) for field in schema
        )

    def _read(self, path: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        file = pq.ParquetFile(path)
        columns = [name for name in schema.names if name in file.schema_arrow.names]
        yield from file.iter_batches(batch_size=BATCH_ROWS, columns=columns)


READERS: dict[str, type[FormatReader]] = {
    "csv": CsvReader,
    "jsonl": JsonlReader,
    "parquet": ParquetReader,
}


def describe_type(field: pa.Field) -> str:
    """A type as a user declares it: integer, number, date-time, json..."""
    if is_json(field):
        return "json"
    prop = json_property(field)
    return str(prop.get("format") or next(t for t in prop["type"] if t != "null"))


def _user_type(arrow_name: str) -> str:
    """An Arrow type name as a user declares it (int64 -> integer), if it is one of ours."""
    for alias in (arrow_name, arrow_name.split("[")[0]):
        with contextlib.suppress(ValueError, KeyError):
            return describe_type(pa.field("value", normalize_type(pa.type_for_alias(alias))))
    return arrow_name


def _is_empty(path: str) -> bool:
    try:
        return Path(path).stat().st_size == 0
    except OSError:
        return False  # reading it will say why


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
