"""target-postgres: a Singer target that loads each stream into a PostgreSQL table by binary COPY.

STATE comes out only after the rows before it are committed: see targets/committing.py. Given
`partition: {id, stream, loaded_by}` (elt's partitioned syncs), that stream's rows are loaded in one
transaction with the partition's row in the ledger, at most once per id: see ledger.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cached_property

import psycopg
from singer_sdk import Target
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities

from targets.committing import CommittingTarget
from targets.target_postgres.batches import BatchSource
from targets.target_postgres.ledger import PartitionLoad
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

    @cached_property
    def partition(self) -> PartitionLoad | None:
        """The partition this run loads (`partition` of the config), if any."""
        given = self.config.get("partition")
        if not given:
            return None
        by = given.get("loaded_by")
        return PartitionLoad(str(given["id"]), str(given["stream"]), str(by) if by else None)

    def empty_table(self, table: TableSpec) -> None:
        if self.partition is not None and table.stream == self.partition.stream:
            return  # a partition adds rows, whatever the load method says
        empty_table(self.connection, table)

    def load(self, table: TableSpec, sources: Iterable[BatchSource]) -> BatchResult:
        """Load one batch of a stream in one committed transaction."""
        return self.commit(table, lambda empty: self._load_batch(table, sources, empty))

    def load_in_background(
        self, table: TableSpec, sources: Iterable[BatchSource], loaded: Callable[[BatchResult], None]
    ) -> None:
        """Load one batch of a stream in one committed transaction, while the input is read on."""
        self.commit_in_background(table, lambda empty: self._load_batch(table, sources, empty), loaded)

    def _load_batch(self, table: TableSpec, sources: Iterable[BatchSource], empty: bool) -> BatchResult:
        partition = self.partition
        if partition is None or table.stream != partition.stream:
            return load_batch(self.connection, table, sources, truncate_first=empty)
        return partition.load(self.connection, table, sources)

    def spanning_transaction(self) -> bool:
        return self.partition is not None and self.partition.open

    def end_of_input(self) -> None:
        partition = self.partition
        if partition is None:
            return
        partition.finish(self.connection, self.settings)
        if partition.skipped:
            self.logger.info("Partition %s was loaded before: not loaded again", partition.partition_id)
        else:
            self.logger.info("Partition %s committed: %d rows", partition.partition_id, partition.rows)
