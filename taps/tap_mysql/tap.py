"""`tap-mysql`: a Singer tap for MySQL and MariaDB, one stream per table and view (`<db>-<table>`).

Its config is a drop-in for pipelinewise-tap-mysql (`host`, `port`, `user`, `password`, `database`,
`filter_dbs`, `ssl`, `ssl_ca`/`ssl_cert`/`ssl_key`, `session_sqls`) and for MeltanoLabs' tap-mysql
(`filter_schemas`, `sqlalchemy_url`). FULL_TABLE and INCREMENTAL replication; with singer-sdk's
`batch_config`, Parquet files with exact Arrow types (docs/connectors.md, "The fast path").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.singerlib import Catalog

from taps import batch_limits
from taps.tap_mysql.connection import DEFAULT_PORT, DEFAULT_SESSION_SQLS, connect
from taps.tap_mysql.discovery import SYSTEM_DATABASES, discover_tables
from taps.tap_mysql.streams import TableStream


class TapMySQL(Tap):
    """Reads the tables and views of a MySQL or MariaDB server."""

    name = "tap-mysql"
    package_name = "elt"  # the distribution the tap ships in, for --version and --about
    dynamic_catalog = True  # streams come from the server: discovery needs a valid config
    config_jsonschema = th.PropertiesList(
        batch_limits.SETTING,
        th.Property("host", th.StringType, default="localhost", description="Server host name or address"),
        th.Property(
            "port",
            th.CustomType({"type": ["integer", "string"]}),
            default=DEFAULT_PORT,
            description="Server port",
        ),
        th.Property("user", th.StringType, description="User name"),
        th.Property("password", th.StringType, secret=True, description="Password"),
        th.Property(
            "database",
            th.StringType,
            description="Default database of the connection; it does not limit discovery (see filter_dbs)",
        ),
        th.Property(
            "filter_dbs",
            th.CustomType({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
            description=(
                "Databases to read, comma-separated (pipelinewise) or a list; default every database but "
                f"{', '.join(SYSTEM_DATABASES)}"
            ),
        ),
        th.Property(
            "filter_schemas",
            th.ArrayType(th.StringType),
            description="Databases to read (MeltanoLabs' name; joined with filter_dbs when both are set)",
        ),
        th.Property(
            "ssl",
            th.CustomType({"type": ["boolean", "string"]}),
            description=(
                'true (or "true"): require TLS, verified against ssl_ca when given; false: no TLS; '
                "unset: TLS when the server offers it, unverified"
            ),
        ),
        th.Property("ssl_ca", th.StringType, description="CA certificate: a file path or the PEM text"),
        th.Property("ssl_cert", th.StringType, description="Client certificate: a file path or the PEM text"),
        th.Property(
            "ssl_key", th.StringType, secret=True, description="Client key: a file path or the PEM text"
        ),
        th.Property(
            "session_sqls",
            th.ArrayType(th.StringType),
            default=list(DEFAULT_SESSION_SQLS),
            description=(
                "Statements run at the start of every session, after SET time_zone = '+00:00' (always run, "
                "so that TIMESTAMP values are read in UTC); a failing one is logged and skipped"
            ),
        ),
        th.Property(
            "sqlalchemy_url",
            th.StringType,
            secret=True,
            description="mysql://user:password@host:port/database; when set, it names the server instead",
        ),
    ).to_dict()

    def __init__(
        self, *, catalog: PurePath | str | dict[str, Any] | Catalog | None = None, **kwargs: Any
    ) -> None:
        if isinstance(catalog, Mapping):
            catalog = with_replication_methods(catalog)
        super().__init__(catalog=catalog, **kwargs)

    def discover_streams(self) -> list[TableStream]:
        """One stream per table and view of the databases the config selects."""
        connection = connect(self.config)
        try:
            tables = discover_tables(connection, selected_databases(self.config))
        finally:
            connection.close()
        return [TableStream(self, table) for table in tables]


def selected_databases(config: Mapping[str, Any]) -> list[str]:
    """The databases of `filter_dbs` and `filter_schemas` (none: every non-system database)."""
    found = config.get("filter_dbs") or []
    if isinstance(found, str):
        found = found.split(",")
    names = [*found, *(config.get("filter_schemas") or [])]
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def with_replication_methods(catalog: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `catalog` in which singer-sdk sees the Singer `replication-method` metadata.

    singer-sdk reads a stream's method from `forced-replication-method` (or the entry's
    `replication_method`) only; the Singer MySQL taps, Meltano and elt's `metadata` overrides write
    `replication-method`. An explicit `forced-replication-method` still wins.
    """
    result = copy.deepcopy(dict(catalog))
    for entry in result.get("streams") or []:
        for item in entry.get("metadata") or []:
            if item.get("breadcrumb") == [] and (
                method := item.get("metadata", {}).get("replication-method")
            ):
                item["metadata"].setdefault("forced-replication-method", method)
                entry.pop("replication_method", None)
    return result
