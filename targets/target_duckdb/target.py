"""target-duckdb: a Singer target that loads each stream into a DuckDB table through Arrow batches.

STATE comes out only after the rows before it are committed: see targets/committing.py.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa
from singer_sdk import Target
from singer_sdk.helpers.capabilities import TargetCapabilities

from targets.committing import CommittingTarget
from targets.target_duckdb.settings import (
    CONFIG_JSONSCHEMA,
    LoaderSettings,
    normalize_config,
)
from targets.target_duckdb.sinks import DuckDBSink
from targets.target_duckdb.warehouse import (
    BatchResult,
    TableSpec,
    empty_table,
    load_batch,
    load_file_batch,
    open_database,
)


class TargetDuckDB(CommittingTarget):
    """Loads Singer streams into DuckDB tables, per docs/connectors.md."""

    name = "target-duckdb"
    config_jsonschema = CONFIG_JSONSCHEMA
    default_sink_class = DuckDBSink
    capabilities = [*Target.capabilities, TargetCapabilities.HARD_DELETE]
    normalize = staticmethod(normalize_config)
    settings_class = LoaderSettings

    def open_connection(self) -> duckdb.DuckDBPyConnection:
        return open_database(self.settings)

    def empty_table(self, table: TableSpec) -> None:
        empty_table(self.connection, table)

    def load(self, table: TableSpec, batch: pa.Table) -> BatchResult:
        """Load one batch of a stream's records in one committed transaction."""
        return self.commit(
            table, lambda empty: load_batch(self.connection, table, batch, empty_table_first=empty)
        )

    def load_in_background(
        self, table: TableSpec, batch: pa.Table, loaded: Callable[[BatchResult], None]
    ) -> None:
        """Load one batch of a stream's records in one committed transaction, while the input is read on."""
        self.commit_in_background(
            table, lambda empty: load_batch(self.connection, table, batch, empty_table_first=empty), loaded
        )

    def load_file(self, table: TableSpec, data: pa.Table) -> BatchResult:
        """Load one BATCH file of a stream in one committed transaction."""
        return self.commit(
            table, lambda empty: load_file_batch(self.connection, table, data, empty_table_first=empty)
        )
