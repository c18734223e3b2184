"""`tap-files`: a Singer tap reading CSV, JSONL and Parquet files, one stream per `files` entry.

Its config is a drop-in for MeltanoLabs' tap-csv (`files`, `csv_files_definition`,
`add_metadata_columns`), plus `format`, `replication_key` and declared column types (`schema`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from taps import batch_limits
from taps.tap_files.readers import READERS, SHORT_TYPE_NAMES, CsvDialect, declared_property
from taps.tap_files.streams import FileEntry, FileStream

_ONE_CHARACTER = {"type": "string", "minLength": 1, "maxLength": 1}

FILE_ENTRY = th.ObjectType(
    th.Property("entity", th.StringType, required=True, description="Stream name"),
    th.Property(
        "path",
        th.StringType,
        required=True,
        description="A file, a directory (its files, recursively) or a glob such as data/**/*.csv",
    ),
    th.Property("keys", th.ArrayType(th.StringType), description="Primary key columns"),
    th.Property("key_properties", th.ArrayType(th.StringType), description="Alias of `keys`"),
    th.Property(
        "format",
        th.StringType(allowed_values=list(READERS)),
        description="csv, jsonl or parquet; by default from the extension",
    ),
    th.Property("delimiter", th.CustomType(_ONE_CHARACTER), description="CSV only"),
    th.Property("quotechar", th.CustomType(_ONE_CHARACTER), description="CSV only"),
    th.Property("escapechar", th.CustomType(_ONE_CHARACTER), description="CSV only"),
    th.Property("doublequote", th.BooleanType, description="CSV only"),
    th.Property("encoding", th.StringType, description="A Python codec name, e.g. latin-1"),
    th.Property(
        "replication_key",
        th.StringType,
        description="A column to sync incrementally by, or _sdc_source_file_mtime",
    ),
    th.Property(
        "schema",
        th.CustomType(
            {
                "type": "object",
                "additionalProperties": {
                    "anyOf": [
                        {"type": "string", "enum": list(SHORT_TYPE_NAMES)},
                        {"type": "object"},
                    ]
                },
            }
        ),
        description="Declared column types: a type name or a JSON Schema per column",
    ),
)


class TapFiles(Tap):
    """Reads local CSV, JSONL and Parquet files; each `files` entry is one stream."""

    name = "tap-files"
    package_name = "elt"  # the distribution the tap ships in, for --version and --about
    config_jsonschema = th.PropertiesList(
        th.Property("files", th.ArrayType(FILE_ENTRY), description="The streams to read"),
        batch_limits.SETTING,
        th.Property(
            "csv_files_definition",
            th.StringType,
            description="A JSON file holding the `files` list (instead of `files`)",
        ),
        th.Property(
            "add_metadata_columns",
            th.BooleanType,
            default=False,
            description="Add _sdc_source_file, _sdc_source_file_mtime and _sdc_source_lineno",
        ),
    ).to_dict()

    def discover_streams(self) -> list[FileStream]:
        """One stream per entry of `files` (or of the `csv_files_definition` file)."""
        return [FileStream(self, entry) for entry in load_entries(self.config)]


def load_entries(config: Mapping[str, Any]) -> list[FileEntry]:
    """Return the configured entries; raises ConfigValidationError naming the entry at fault."""
    items = config.get("files")
    if definition := config.get("csv_files_definition"):
        items = _read_definition(Path(definition))
    if not items:
        raise _invalid("tap-files: no streams configured; set `files` or `csv_files_definition`")
    entries = [_entry(item, bool(config.get("add_metadata_columns"))) for item in items]
    names = [entry.entity for entry in entries]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise _invalid(f"tap-files: entity {', '.join(duplicates)} is configured more than once")
    return entries


def _read_definition(path: Path) -> list[Any]:
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _invalid(f"tap-files: csv_files_definition '{path}' is not readable: {exc}") from exc
    schema = {"type": "array", "items": FILE_ENTRY.type_dict}
    if problems := [error.message for error in Draft7Validator(schema).iter_errors(items)]:
        raise _invalid(f"tap-files: csv_files_definition '{path}': {'; '.join(problems)}")
    return list(items)


def _entry(item: Mapping[str, Any], add_metadata_columns: bool) -> FileEntry:
    entity = item["entity"]
    encoding = item.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise _invalid(f"tap-files: stream '{entity}': unknown encoding '{encoding}'") from exc
    declared = {}
    for column, spec in (item.get("schema") or {}).items():
        try:
            declared[column] = declared_property(spec)
        except ValueError as exc:
            raise _invalid(f"tap-files: stream '{entity}': column '{column}': {exc}") from exc
    return FileEntry(
        entity=entity,
        path=item["path"],
        keys=tuple(item.get("keys") or item.get("key_properties") or ()),
        replication_key=item.get("replication_key") or None,
        format=item.get("format"),
        encoding=encoding,
        dialect=CsvDialect(
            delimiter=item.get("delimiter"),
            quotechar=item.get("quotechar", '"'),
            escapechar=item.get("escapechar"),
            doublequote=item.get("doublequote", True),
        ),
        declared=declared,
        add_metadata_columns=add_metadata_columns,
    )


def _invalid(message: str) -> ConfigValidationError:
    return ConfigValidationError(message, errors=[message])
