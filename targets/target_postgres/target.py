"""target-postgres: a Singer target that loads each stream into a PostgreSQL table by binary COPY.

STATE comes out only after the rows before it are committed: see targets/committing.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psycopg
from singer_sdk import Target
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities

from targets.committing import CommittingTarget
from targets.target_postgres.batches import BatchSource
from targets.target_postgres.settings import CONFIG_JSONSCHEMA, LoaderSettings, normalize_config
from targets.target_postgres.sinks import PostgresSink
from targets.target_postgres.warehouse import BatchResult, TableSpec, connect, empty_table, load_batch


class TargetPostgres(CommittingTarget):
    """Loads Singer streams into PostgreSQL tables, per docs/connectors.md."""

    name = "target-postgres"
    config_jsonschema = CONFIG_JSONSCHEMA
    default_sink_class = PostgresSink
    capabilities = [
        *Target.capabilities,
        PluginCapabilities.BATCH,
        TargetCapabilities.TARGET_SCHEMA,
        TargetCapabilities.HARD_DELETE,
    ]
    normalize = staticmethod(normalize_config)
    settings_class = LoaderSettings

    def open_connection(self) -> psycopg.Connection:
        return connect(self.settings)

    def empty_table(self, table: TableSpec) -> None:
        empty_table(self.connection, table)

    def load(self, table: TableSpec, sources: Iterable[BatchSource]) -> BatchResult:
        """Load one batch of a stream in one committed transaction."""
        return self.commit(
            table, lambda empty: load_batch(self.connection, table, sources, truncate_first=empty)
        )

    def load_in_background(
        self, table: TableSpec, sources: Iterable[BatchSource], loaded: Callable[[BatchResult], None]
    ) -> None:
        """Load one batch of a stream in one committed transaction, while the input is read on."""
        self.commit_in_background(
            table, lambda empty: load_batch(self.connection, table, sources, truncate_first=empty), loaded
        )
