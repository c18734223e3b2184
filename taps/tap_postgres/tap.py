"""`tap-postgres`: a Singer tap for PostgreSQL tables and views, one stream per table (`<schema>-<table>`).

Its config is a drop-in for MeltanoLabs' tap-postgres (`host`, `port`, `user`, `password`,
`database` or `sqlalchemy_url`, `filter_schemas`, `ssl_*`, `default_replication_method`,
`max_record_count`, `stream_options`, `dates_as_string`, `json_as_object`). Its schemas carry each
column's PostgreSQL type as `x-sql-datatype`; with a Parquet `batch_config` it sends Parquet files of
exact Arrow types instead of RECORD messages (docs/connectors.md, "The fast path").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path, PurePath
from typing import Any

import psycopg
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import Catalog

from taps import batch_limits
from taps.tap_postgres.connection import connect
from taps.tap_postgres.discovery import discover
from taps.tap_postgres.logical import DEFAULT_SLOT, SLOT_PATTERN, log_based_entry
from taps.tap_postgres.pgtypes import TypeOptions
from taps.tap_postgres.streams import TableStream

_IGNORED = " Accepted for compatibility with MeltanoLabs tap-postgres; not used by the built-in tap."
_IGNORED_PATH = "Note if sqlalchemy_url is set this will be ignored."


class TapPostgres(Tap):
    """Reads PostgreSQL tables and views with binary COPY."""

    name = "tap-postgres"
    package_name = "elt"  # the distribution the tap ships in, for --version and --about
    dynamic_catalog = True  # streams come from the server: discovery needs a valid config
    config_jsonschema = th.PropertiesList(
        batch_limits.SETTING,
        th.Property("host", th.StringType, description=f"Hostname of the server. {_IGNORED_PATH}"),
        th.Property("port", th.IntegerType, default=5432, description=f"Port of the server. {_IGNORED_PATH}"),
        th.Property("user", th.StringType, description=f"User to connect as. {_IGNORED_PATH}"),
        th.Property("password", th.StringType, secret=True, description=f"Its password. {_IGNORED_PATH}"),
        th.Property("database", th.StringType, description=f"Database name. {_IGNORED_PATH}"),
        th.Property(
            "sqlalchemy_url",
            th.StringType,
            secret=True,
            description="A connection URL, e.g. postgresql://user:password@host:5432/db?sslmode=require",
        ),
        th.Property(
            "filter_schemas",
            th.ArrayType(th.StringType),
            description="Schemas whose tables and views become streams; all schemas when left out",
        ),
        th.Property(
            "default_replication_method",
            th.StringType(allowed_values=["FULL_TABLE", "INCREMENTAL", "LOG_BASED"]),
            default="FULL_TABLE",
            description=(
                "For streams whose catalog entry sets no method. LOG_BASED reads changes from a replication "
                "slot per stream (docs/connectors.md)"
            ),
        ),
        th.Property(
            "max_record_count", th.IntegerType, description="At most this many rows per stream and sync"
        ),
        th.Property(
            "stream_options",
            th.ObjectType(
                additional_properties=th.ObjectType(
                    th.Property(
                        "custom_where_clauses",
                        th.ArrayType(th.StringType),
                        description="SQL conditions the stream's rows must meet (combined with AND)",
                    ),
                    th.Property(
                        "replication_slot_name",
                        th.StringType(pattern=SLOT_PATTERN),
                        description="LOG_BASED: the stream's replication slot, instead of a name made from "
                        "the tap's replication_slot_name",
                    ),
                    th.Property(
                        "publication_name",
                        th.StringType,
                        description="LOG_BASED: the publication its changes are read through (created FOR "
                        "TABLE when missing); default: the slot's name",
                    ),
                )
            ),
            description="Per stream name: options such as custom_where_clauses",
        ),
        th.Property(
            "dates_as_string",
            th.BooleanType,
            default=False,
            description="Declare dates and timestamps as plain strings (no format) in schemas",
        ),
        th.Property(
            "json_as_object",
            th.BooleanType,
            default=False,
            description="Declare json and jsonb columns as objects in schemas (else: any JSON value)",
        ),
        th.Property(
            "ssl_enable", th.BooleanType, default=False, description="Verify the server's certificate"
        ),
        th.Property(
            "ssl_mode",
            th.StringType(
                allowed_values=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
            ),
            default="verify-full",
            description="libpq sslmode when ssl_enable is true",
        ),
        th.Property(
            "ssl_certificate_authority",
            th.StringType,
            description="The CA certificate: a file path, or the certificate itself",
        ),
        th.Property(
            "ssl_client_certificate_enable",
            th.BooleanType,
            default=False,
            description="Authenticate with a client certificate",
        ),
        th.Property(
            "ssl_client_certificate",
            th.StringType,
            description="The client certificate: a file path, or the certificate itself",
        ),
        th.Property(
            "ssl_client_private_key",
            th.StringType,
            secret=True,
            description="The client certificate's key: a file path, or the key itself",
        ),
        th.Property(
            "ssl_storage_directory",
            th.StringType,
            default=".secrets",
            description="Where certificates given as text are written before use",
        ),
        th.Property(
            "ssh_tunnel",
            th.ObjectType(
                th.Property("enable", th.BooleanType, default=False),
                th.Property("host", th.StringType),
                th.Property("port", th.IntegerType, default=22),
                th.Property("username", th.StringType),
                th.Property("private_key", th.StringType, secret=True),
                th.Property("private_key_password", th.StringType, secret=True),
            ),
            description="Not supported: connect through a tunnel opened outside the tap",
        ),
        th.Property(
            "batch_config",
            th.ObjectType(
                th.Property(
                    "encoding",
                    th.ObjectType(
                        th.Property("format", th.StringType(allowed_values=["parquet", "jsonl"])),
                        th.Property(
                            "compression", th.StringType(allowed_values=["zstd", "snappy", "gzip", "none"])
                        ),
                    ),
                ),
                th.Property(
                    "storage",
                    th.ObjectType(th.Property("root", th.StringType), th.Property("prefix", th.StringType)),
                ),
                th.Property("batch_size", th.IntegerType, description="Rows per file"),
            ),
            description=(
                "Send BATCH messages with Parquet files instead of RECORD messages (singer-sdk's "
                "batch_config, with zstd and snappy compression too); elt sync sets it between built-in "
                "connectors"
            ),
        ),
        th.Property(
            "partition",
            th.ObjectType(
                th.Property("stream", th.StringType, required=True),
                th.Property("column", th.StringType, required=True),
                th.Property("lower", th.CustomType({}), required=True),
                th.Property("upper", th.CustomType({}), required=True),
            ),
            description=(
                "Set by elt's partitioned syncs (docs/partitions.md): read only the rows of `stream` whose "
                "`column` is at or above `lower` and below `upper`, in no order and without a bookmark"
            ),
        ),
        th.Property(
            "replication_slot_name",
            th.StringType(pattern=SLOT_PATTERN),
            default=DEFAULT_SLOT,
            description=(
                "LOG_BASED: prefix of the streams' replication slots, each named "
                "<prefix>_<schema>_<table>_<hash> (as MeltanoLabs tap-postgres' key, one slot a stream)"
            ),
        ),
        th.Property("replication_max_run_seconds", th.IntegerType, description="LOG_BASED only." + _IGNORED),
        th.Property(
            "replication_idle_exit_seconds", th.IntegerType, description="LOG_BASED only." + _IGNORED
        ),
        th.Property("log_based_single_connection", th.BooleanType, description="LOG_BASED only." + _IGNORED),
        th.Property("auto_bootstrap_log_based", th.BooleanType, description="LOG_BASED only." + _IGNORED),
    ).to_dict()

    def __init__(
        self, *, catalog: PurePath | str | dict[str, Any] | Catalog | None = None, **kwargs: Any
    ) -> None:
        if isinstance(catalog, str | PurePath):
            catalog = json.loads(Path(catalog).read_text(encoding="utf-8"))
        if isinstance(catalog, Mapping):
            catalog = with_replication_methods(catalog)
        super().__init__(catalog=catalog, **kwargs)

    @cached_property
    def connection(self) -> psycopg.Connection[Any]:
        """The connection every discovery and read goes through."""
        if (self.config.get("ssh_tunnel") or {}).get("enable"):
            raise _invalid(
                "tap-postgres: ssh_tunnel is not supported by the built-in tap; open the tunnel outside "
                "the tap and point host/port at it, or use MeltanoLabs' tap-postgres (give it a pip_url)"
            )
        try:
            return connect(self.config)
        except psycopg.OperationalError as exc:
            raise _invalid(f"tap-postgres: cannot connect to PostgreSQL: {str(exc).strip()}") from exc

    def close(self) -> None:
        """Close the connection, if one was opened (elt runs taps in its own process too)."""
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            connection.close()

    @property
    def database(self) -> str:
        """The name of the database read."""
        return str(self.connection.info.dbname)

    def discover_streams(self) -> list[TableStream]:
        """One stream per table and view (of `filter_schemas`, if given)."""
        options = TypeOptions(
            dates_as_string=bool(self.config.get("dates_as_string")),
            json_as_object=bool(self.config.get("json_as_object")),
        )
        tables = discover(self.connection, self._schemas(), options)
        streams = [TableStream(self, table) for table in tables]
        self._check_catalog({stream.name for stream in streams})
        return streams

    def _schemas(self) -> list[str] | None:
        """`filter_schemas`; else, with a catalog given, the schemas its streams come from."""
        if schemas := self.config.get("filter_schemas"):
            return list(schemas)
        if self.input_catalog is not None:
            found = {entry.metadata.root.schema_name for entry in self.input_catalog.streams}
            if None not in found:
                return sorted(str(name) for name in found)
        return None

    def _check_catalog(self, found: set[str]) -> None:
        """A selected stream of the catalog passed in must be a table or view of the database."""
        if self.input_catalog is None:
            return
        for entry in self.input_catalog.streams:
            root = entry.metadata.root
            selected = root.selected if root.selected is not None else root.selected_by_default
            if selected and entry.tap_stream_id not in found:
                schemas = self.config.get("filter_schemas")
                where = f" in schemas {', '.join(schemas)}" if schemas else ""
                raise _invalid(
                    f"tap-postgres: stream '{entry.tap_stream_id}' of the catalog is not a table or view "
                    f"of database '{self.database}'{where}; refresh the catalog or deselect the stream"
                )


def with_replication_methods(catalog: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `catalog` in which singer-sdk sees the Singer `replication-method` metadata.

    singer-sdk reads a stream's method from `forced-replication-method` or the entry's
    `replication_method` only; Meltano's catalogs and `metadata` overrides write `replication-method`,
    which then wins over the entry's (discovered) method. LOG_BASED entries get the properties that
    method adds (`_sdc_lsn`, `_sdc_deleted_at`), so that the SCHEMA message declares them.
    """
    result = copy.deepcopy(dict(catalog))
    for entry in result.get("streams") or []:
        forced = None
        for item in entry.get("metadata") or []:
            metadata = item.get("metadata") or {}
            if item.get("breadcrumb") == [] and (method := metadata.get("replication-method")):
                metadata.setdefault("forced-replication-method", method)
                entry["replication_method"] = metadata["forced-replication-method"]
            if item.get("breadcrumb") == []:
                forced = metadata.get("forced-replication-method")
        if (entry.get("replication_method") or forced) == "LOG_BASED":
            log_based_entry(entry)
    return result


def _invalid(message: str) -> ConfigValidationError:
    return ConfigValidationError(message, errors=[message])
