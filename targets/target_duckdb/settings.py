"""target-duckdb's config: the keys it accepts (those of the PyPI and MeltanoLabs target-duckdb
plus singer-sdk's standard target keys), how alias keys are folded in, and the typed settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from singer_sdk import typing as th

from elt.errors import PluginError
from targets.config import normalized_config

DEFAULT_PATH = ".elt/warehouse.duckdb"
DEFAULT_SCHEMA = "main"
DEFAULT_BATCH_SIZE_ROWS = 100_000

APPEND_ONLY = "append-only"
UPSERT = "upsert"
OVERWRITE = "overwrite"
LOAD_METHODS = (APPEND_ONLY, UPSERT, OVERWRITE)

_PEERS = "target-duckdb on PyPI (jwills) and MeltanoLabs' target-duckdb"

CONFIG_JSONSCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "path",
        th.StringType,
        description=(
            f"The DuckDB database file (parent directories are created). Default {DEFAULT_PATH}, "
            f"relative to the working directory. Same key as {_PEERS}."
        ),
    ),
    th.Property("filepath", th.StringType, description=f"Alias of `path`, as in {_PEERS}."),
    th.Property(
        "default_target_schema",
        th.StringType,
        default=DEFAULT_SCHEMA,
        description=(
            f"The schema every stream is loaded into unless `schema_mapping` says otherwise. "
            f"Default `{DEFAULT_SCHEMA}`. Same key as {_PEERS}."
        ),
    ),
    th.Property(
        "schema_mapping",
        th.ObjectType(),
        description=(
            "For streams named `<source_schema>-<table>`: maps a source schema to "
            '`{"target_schema": "<schema>"}`, loading `<table>` into that schema instead of '
            f"`default_target_schema`. Same key and shape as {_PEERS}."
        ),
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType,
        default=DEFAULT_BATCH_SIZE_ROWS,
        description=(
            f"Rows buffered per stream before they are loaded in one transaction. Default "
            f"{DEFAULT_BATCH_SIZE_ROWS}. Same key as {_PEERS} and singer-sdk."
        ),
    ),
    th.Property(
        "load_method",
        th.StringType,
        allowed_values=list(LOAD_METHODS),
        description=(
            "singer-sdk's standard key. `append-only` inserts every record; `upsert` replaces rows "
            "with the same key_properties (the last record of a key in a batch wins); `overwrite` "
            "replaces the table's contents with what this run sends. Default: `upsert` for streams "
            "with key_properties, else `append-only`."
        ),
    ),
    th.Property(
        "add_record_metadata",
        th.BooleanType,
        description="singer-sdk's key: also load the `_sdc_*` metadata columns. Default false.",
    ),
    th.Property(
        "add_metadata_columns",
        th.BooleanType,
        description=f"Alias of `add_record_metadata`, as in {_PEERS}.",
    ),
    th.Property(
        "hard_delete",
        th.BooleanType,
        default=False,
        description=(
            "Delete the rows of records that carry `_sdc_deleted_at` (upserted streams) instead "
            f"of loading them; turns `add_record_metadata` on. Default false. As in {_PEERS}."
        ),
    ),
    th.Property(
        "primary_key_required",
        th.BooleanType,
        default=False,
        description=(
            "Fail on a stream that has no key_properties. Default false (the peers default to "
            f"true). Same key as {_PEERS}."
        ),
    ),
    th.Property(
        "validate_records",
        th.BooleanType,
        default=False,
        description=(
            "Validate every record against its JSON Schema before loading. Default false: each "
            "column's type is enforced when the batch is cast to the table's types, which is much "
            f"faster. Same key as {_PEERS} and singer-sdk."
        ),
    ),
    th.Property(
        "flush_all_streams",
        th.BooleanType,
        default=False,
        description=(
            "When one stream's batch is full, load every stream's buffered rows too, so that STATE "
            f"can be emitted at once. Default false. Same key as {_PEERS}."
        ),
    ),
    th.Property(
        "data_flattening_max_level",
        th.IntegerType,
        default=0,
        description=(
            f"As in {_PEERS}: flatten nested objects into columns down to this depth (singer-sdk's "
            "`flattening_enabled` + `flattening_max_depth`). Default 0: no flattening."
        ),
    ),
    th.Property(
        "settings",
        th.ObjectType(),
        description=(
            "DuckDB settings applied with SET when the database is opened, e.g. "
            '`{"memory_limit": "2GB", "threads": 2}`. As in MeltanoLabs\' target-duckdb.'
        ),
    ),
).to_dict()

# Keys with an alias have no `default` in the JSON Schema: singer-sdk writes defaults into the
# config while validating it, which would hide the alias.
_ALIASES = {"filepath": "path", "add_metadata_columns": "add_record_metadata"}
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with alias keys folded in and defaults written (targets/config.py); `hard_delete` turns
    `add_record_metadata` on."""
    result = normalized_config(config, _ALIASES, DEFAULT_BATCH_SIZE_ROWS)
    if result.get("hard_delete"):
        result["add_record_metadata"] = True
    return result


@dataclass(frozen=True)
class LoaderSettings:
    """What the loader needs from the config, typed and checked."""

    path: Path
    default_target_schema: str = DEFAULT_SCHEMA
    schema_mapping: Mapping[str, str] = field(default_factory=dict)
    load_method: str | None = None
    hard_delete: bool = False
    primary_key_required: bool = False
    flush_all_streams: bool = False
    duckdb_settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LoaderSettings:
        """Settings from a normalized config; raises PluginError naming the bad key."""
        mapping: dict[str, str] = {}
        for source, entry in (config.get("schema_mapping") or {}).items():
            target = entry.get("target_schema") if isinstance(entry, Mapping) else entry
            if not isinstance(target, str) or not target:
                raise PluginError(
                    f"target-duckdb config: schema_mapping['{source}'] has no target_schema",
                    hint=f'write it as "{source}": {{"target_schema": "<schema>"}}',
                )
            mapping[source] = target
        duckdb_settings = dict(config.get("settings") or {})
        for name in duckdb_settings:
            if not _SETTING_NAME.match(name):
                raise PluginError(f"target-duckdb config: settings key '{name}' is not a DuckDB setting")
        return cls(
            path=Path(config.get("path") or DEFAULT_PATH),
            default_target_schema=config.get("default_target_schema") or DEFAULT_SCHEMA,
            schema_mapping=mapping,
            load_method=config.get("load_method"),
            hard_delete=bool(config.get("hard_delete", False)),
            primary_key_required=bool(config.get("primary_key_required", False)),
            flush_all_streams=bool(config.get("flush_all_streams", False)),
            duckdb_settings=duckdb_settings,
        )

    def target_table(self, stream_name: str) -> tuple[str, str]:
        """(schema, table) a stream loads into.

        The table is the stream name lower-cased with every character outside `[a-z0-9_]` as `_`
        (docs/connectors.md); a `<source_schema>-<table>` stream whose source schema is in
        `schema_mapping` loads `<table>` into the mapped schema.
        """
        source, dash, rest = stream_name.partition("-")
        if dash and rest and source in self.schema_mapping:
            return self.schema_mapping[source], table_name(rest)
        return self.default_target_schema, table_name(stream_name)

    def load_method_for(self, key_properties: list[str]) -> str:
        """The load method of a stream: as configured, else upsert when it has keys."""
        if self.load_method == UPSERT and not key_properties:
            return APPEND_ONLY
        return self.load_method or (UPSERT if key_properties else APPEND_ONLY)


def table_name(stream_name: str) -> str:
    """A stream name as a table name: lower-cased, non `[a-z0-9_]` characters as `_`."""
    return re.sub(r"[^a-z0-9_]", "_", stream_name.lower())
