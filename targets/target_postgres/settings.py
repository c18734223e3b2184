"""target-postgres's config: the keys it accepts (those of MeltanoLabs' target-postgres, the keys of
pipelinewise-target-postgres that mean the same, and singer-sdk's standard target keys), how alias keys
are folded in, and the typed settings, including the libpq connection string.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from singer_sdk import typing as th

from elt.errors import PluginError
from targets.config import normalized_config
from targets.target_duckdb.settings import APPEND_ONLY, LOAD_METHODS, OVERWRITE, UPSERT

DEFAULT_SCHEMA = "public"
DEFAULT_PORT = 5432
DEFAULT_BATCH_SIZE_ROWS = 100_000
DEFAULT_SSL_MODE = "verify-full"
DEFAULT_SSL_STORAGE = ".secrets"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

__all__ = [
    "APPEND_ONLY",
    "CONFIG_JSONSCHEMA",
    "LOAD_METHODS",
    "OVERWRITE",
    "UPSERT",
    "LoaderSettings",
    "normalize_config",
]

_MELTANOLABS = "MeltanoLabs' target-postgres"
_PIPELINEWISE = "pipelinewise-target-postgres"
_IGNORED_WITH_URL = "Ignored when `sqlalchemy_url` is set."

CONFIG_JSONSCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "host",
        th.StringType,
        description=(
            f"PostgreSQL host name or address. Default: libpq's (`PGHOST`, else the local socket). "
            f"{_IGNORED_WITH_URL} Same key as {_MELTANOLABS} and {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "port",
        th.IntegerType,
        description=f"Port. Default {DEFAULT_PORT}. {_IGNORED_WITH_URL} Same key as {_MELTANOLABS}.",
    ),
    th.Property(
        "user",
        th.StringType,
        description=f"User name. {_IGNORED_WITH_URL} Same key as {_MELTANOLABS} and {_PIPELINEWISE}.",
    ),
    th.Property(
        "password",
        th.StringType,
        secret=True,
        description=f"Password. {_IGNORED_WITH_URL} Same key as {_MELTANOLABS} and {_PIPELINEWISE}.",
    ),
    th.Property(
        "database",
        th.StringType,
        description=f"Database name. {_IGNORED_WITH_URL} Same key as {_MELTANOLABS}.",
    ),
    th.Property("dbname", th.StringType, description=f"Alias of `database`, as in {_PIPELINEWISE}."),
    th.Property(
        "sqlalchemy_url",
        th.StringType,
        secret=True,
        description=(
            "A connection URL, `postgresql://user:password@host:port/database?sslmode=require` (a "
            "`+driver` suffix such as `postgresql+psycopg` is ignored; special characters in the "
            "password percent-encoded). Read by libpq, so any libpq parameter may be given in the "
            f"query string. Overrides host, port, user, password, database and the ssl_* keys. As in "
            f"{_MELTANOLABS}."
        ),
    ),
    th.Property(
        "dialect+driver",
        th.StringType,
        description=f"Accepted for {_MELTANOLABS} configs; has no effect (the driver is always psycopg 3).",
    ),
    th.Property(
        "default_target_schema",
        th.StringType,
        description=(
            f"The schema every stream is loaded into (created if missing) unless `schema_mapping` says "
            f"otherwise. Default `{DEFAULT_SCHEMA}`; `elt sync` sets it to the tap's namespace "
            f"(`tap-files` -> `tap_files`). Same key as {_MELTANOLABS} and {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "schema_mapping",
        th.ObjectType(),
        description=(
            "For streams named `<source_schema>-<table>`: maps a source schema to "
            '`{"target_schema": "<schema>"}`, loading `<table>` into that schema instead of '
            f"`default_target_schema`. Same key and shape as {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "load_method",
        th.StringType,
        allowed_values=list(LOAD_METHODS),
        description=(
            "singer-sdk's standard key. `append-only` inserts every record; `upsert` inserts or "
            "updates by key_properties (INSERT ... ON CONFLICT on the table's primary key; the last "
            "record of a key in a batch wins); `overwrite` empties the table in the transaction of "
            "this run's first batch and appends. Default: `upsert` for streams with key_properties, "
            f"else `append-only` ({_MELTANOLABS} defaults to `append-only` for all)."
        ),
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType,
        description=(
            f"Rows buffered per stream before they are loaded in one transaction. Default "
            f"{DEFAULT_BATCH_SIZE_ROWS}. Same key as singer-sdk, {_MELTANOLABS} and {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "partition",
        th.ObjectType(
            th.Property("id", th.StringType, required=True),
            th.Property("stream", th.StringType, required=True),
            th.Property("loaded_by", th.StringType),
        ),
        description=(
            "Set by elt's partitioned syncs (docs/partitions.md): load `stream` as the partition `id`, in "
            "one transaction with its row in the schema's `_elt_partitions` ledger, unless the ledger has it"
        ),
    ),
    th.Property(
        "hard_delete",
        th.BooleanType,
        description=(
            "For streams with key_properties: a record whose `_sdc_deleted_at` is set deletes the "
            "table's rows with its key and is not loaded. Default false: such a record is loaded with "
            "`_sdc_deleted_at` filled (a soft delete). `_sdc_deleted_at` is kept whenever the tap's "
            f"schema declares it, whatever `add_record_metadata` says. Same key as {_MELTANOLABS} "
            f"and {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "add_record_metadata",
        th.BooleanType,
        description=(
            "singer-sdk's key: also load the `_sdc_*` metadata columns (`_sdc_extracted_at`, "
            f"`_sdc_batched_at`, ...). Default false ({_MELTANOLABS} defaults to true). Records loaded "
            "from Parquet BATCH files carry no `_sdc_*` values."
        ),
    ),
    th.Property(
        "add_metadata_columns",
        th.BooleanType,
        description=f"Alias of `add_record_metadata`, as in {_PIPELINEWISE}.",
    ),
    th.Property(
        "primary_key_required",
        th.BooleanType,
        description=f"Fail on a stream that has no key_properties. Default false. As in {_PIPELINEWISE}.",
    ),
    th.Property(
        "validate_records",
        th.BooleanType,
        description=(
            "Validate every record against its JSON Schema before loading. Default false: PostgreSQL "
            "checks every value against its column's type, and a bad one fails its batch naming the "
            f"stream and column. Same key as singer-sdk, {_MELTANOLABS} and {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "flush_all_streams",
        th.BooleanType,
        description=(
            "When one stream's batch is full, load every stream's buffered rows too, so that STATE "
            f"can be emitted at once. Default false. As in {_PIPELINEWISE}."
        ),
    ),
    th.Property(
        "data_flattening_max_level",
        th.IntegerType,
        description=(
            f"As in {_PIPELINEWISE}: flatten nested objects into columns down to this depth "
            "(singer-sdk's `flattening_enabled` + `flattening_max_depth`). Default 0: no flattening."
        ),
    ),
    th.Property(
        "sanitize_null_text_characters",
        th.BooleanType,
        description=(
            "Remove NUL characters (`\\u0000`), which PostgreSQL cannot store in text or jsonb, from "
            "text and JSON values. Default false: a value with one fails its batch, naming the stream "
            f"and column. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "use_copy",
        th.BooleanType,
        description=f"Accepted for {_MELTANOLABS} configs; loading always uses binary COPY.",
    ),
    th.Property(
        "activate_version",
        th.BooleanType,
        description=(
            f"Accepted for {_MELTANOLABS} configs; ACTIVATE_VERSION messages are ignored (use "
            "`load_method: overwrite` to replace a table's contents)."
        ),
    ),
    th.Property(
        "ssl_enable",
        th.BooleanType,
        description=(
            "Verify the server with SSL: sets libpq's `sslmode` to `ssl_mode` and `sslrootcert` to "
            f"`ssl_certificate_authority`. Default false (libpq's `sslmode=prefer`). As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_mode",
        th.StringType,
        allowed_values=list(SSL_MODES),
        description=(
            f"libpq's sslmode when `ssl_enable` is true. Default `{DEFAULT_SSL_MODE}`. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_certificate_authority",
        th.StringType,
        description=(
            "The CA certificate that signed the server's: a file path, or the PEM text itself (written to "
            f"`ssl_storage_directory`). Default libpq's `~/.postgresql/root.crt`. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_client_certificate_enable",
        th.BooleanType,
        description=(
            "Authenticate with a client certificate (`ssl_client_certificate`, "
            f"`ssl_client_private_key`). Default false. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_client_certificate",
        th.StringType,
        description=(
            "The client certificate: a file path or the PEM text. Default libpq's "
            f"`~/.postgresql/postgresql.crt`. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_client_private_key",
        th.StringType,
        secret=True,
        description=(
            "The client certificate's private key: a file path or the PEM text. Default libpq's "
            f"`~/.postgresql/postgresql.key`. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl_storage_directory",
        th.StringType,
        description=(
            "Where certificates and keys given as PEM text are written (readable by the owner only). "
            f"Default `{DEFAULT_SSL_STORAGE}`. As in {_MELTANOLABS}."
        ),
    ),
    th.Property(
        "ssl",
        th.CustomType({"type": ["boolean", "string"]}),
        description=f'`true` (or `"true"`) requires SSL (`sslmode=require`), as in {_PIPELINEWISE}.',
    ),
).to_dict()

# Keys with an alias have no `default` in the JSON Schema: singer-sdk writes defaults into the
# config while validating it, which would hide the alias.
_ALIASES = {"dbname": "database", "add_metadata_columns": "add_record_metadata"}
_PEM = "-----BEGIN"
_URL_SCHEME = re.compile(r"^(postgres(?:ql)?)(\+[A-Za-z0-9_]+)?://", re.IGNORECASE)


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with alias keys folded in and defaults written (targets/config.py)."""
    return normalized_config(config, _ALIASES, DEFAULT_BATCH_SIZE_ROWS)


@dataclass(frozen=True)
class LoaderSettings:
    """What the loader needs from the config, typed and checked."""

    conninfo: str = field(repr=False)  # holds the password
    default_target_schema: str = DEFAULT_SCHEMA
    schema_mapping: Mapping[str, str] = field(default_factory=dict)
    load_method: str | None = None
    hard_delete: bool = False
    primary_key_required: bool = False
    flush_all_streams: bool = False
    sanitize_null_text: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LoaderSettings:
        """Settings from a normalized config; raises PluginError naming the bad key."""
        mapping: dict[str, str] = {}
        for source, entry in (config.get("schema_mapping") or {}).items():
            target = entry.get("target_schema") if isinstance(entry, Mapping) else entry
            if not isinstance(target, str) or not target:
                raise PluginError(
                    f"target-postgres config: schema_mapping['{source}'] has no target_schema",
                    hint=f'write it as "{source}": {{"target_schema": "<schema>"}}',
                )
            mapping[source] = target
        return cls(
            conninfo=connection_string(config),
            default_target_schema=config.get("default_target_schema") or DEFAULT_SCHEMA,
            schema_mapping=mapping,
            load_method=config.get("load_method"),
            hard_delete=bool(config.get("hard_delete", False)),
            primary_key_required=bool(config.get("primary_key_required", False)),
            flush_all_streams=bool(config.get("flush_all_streams", False)),
            sanitize_null_text=bool(config.get("sanitize_null_text_characters", False)),
        )

    def target_schema(self, stream_name: str) -> tuple[str, str]:
        """(schema, stream name part) a stream loads into.

        A `<source_schema>-<table>` stream whose source schema is in `schema_mapping` loads `<table>`
        into the mapped schema; any other stream loads into `default_target_schema`.
        """
        source, dash, rest = stream_name.partition("-")
        if dash and rest and source in self.schema_mapping:
            return self.schema_mapping[source], rest
        return self.default_target_schema, stream_name

    def load_method_for(self, key_properties: list[str]) -> str:
        """The load method of a stream: as configured, else upsert when it has keys."""
        if self.load_method == UPSERT and not key_properties:
            return APPEND_ONLY
        return self.load_method or (UPSERT if key_properties else APPEND_ONLY)


def connection_string(config: Mapping[str, Any]) -> str:
    """The libpq connection string the config describes (`sqlalchemy_url`, else the separate keys)."""
    tunnel = config.get("ssh_tunnel")
    if isinstance(tunnel, Mapping) and tunnel.get("enable"):
        raise PluginError(
            "target-postgres config: ssh_tunnel is not supported by elt's built-in target-postgres",
            hint="open the tunnel yourself (ssh -L 5433:db:5432 bastion) and set host/port to its end, "
            "or use MeltanoLabs' target-postgres with a pip_url",
        )
    url = config.get("sqlalchemy_url")
    if url:
        params = _url_params(str(url))
    else:
        params = {
            "host": config.get("host"),
            "port": config.get("port") or (DEFAULT_PORT if config.get("host") else None),
            "user": config.get("user"),
            "password": config.get("password"),
            "dbname": config.get("database"),
        }
        params.update(_ssl_params(config))
    params.setdefault("application_name", "elt target-postgres")
    return make_conninfo(**{key: value for key, value in params.items() if value not in (None, "")})


def _url_params(url: str) -> dict[str, Any]:
    match = _URL_SCHEME.match(url)
    if not match:
        raise PluginError(
            "target-postgres config: sqlalchemy_url must start with postgresql:// "
            f"(got {_redact_url(url)!r})",
            hint="write it as postgresql://user:password@host:5432/database",
        )
    try:
        return dict(conninfo_to_dict("postgresql://" + url[match.end() :]))
    except psycopg.ProgrammingError as error:
        raise PluginError(
            f"target-postgres config: sqlalchemy_url {_redact_url(url)!r} is not a PostgreSQL URL: "
            f"{_redact_url(str(error))}",
            hint="percent-encode special characters of the password (@ as %40, / as %2F)",
        ) from error


def _redact_url(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***`."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def _ssl_params(config: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    legacy = config.get("ssl")
    if legacy is True or (isinstance(legacy, str) and legacy.strip().lower() in ("true", "1", "yes")):
        params["sslmode"] = "require"
    storage = Path(config.get("ssl_storage_directory") or DEFAULT_SSL_STORAGE)
    if config.get("ssl_enable"):
        params["sslmode"] = config.get("ssl_mode") or DEFAULT_SSL_MODE
        params["sslrootcert"] = _pem_file(config.get("ssl_certificate_authority"), storage, "root.crt")
    if config.get("ssl_client_certificate_enable"):
        params.setdefault("sslmode", "require")
        params["sslcert"] = _pem_file(config.get("ssl_client_certificate"), storage, "client.crt")
        params["sslkey"] = _pem_file(config.get("ssl_client_private_key"), storage, "client.key")
    return params


def _pem_file(value: Any, storage: Path, name: str) -> str | None:
    """A certificate or key setting as a file path: PEM text is written to `storage/name` first."""
    if not value:
        return None  # libpq's default file under ~/.postgresql
    text = str(value)
    if not text.lstrip().startswith(_PEM):
        return str(Path(text).expanduser())
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return str(path.resolve())
