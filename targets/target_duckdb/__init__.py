"""target-duckdb, elt's built-in loader: Singer messages on stdin -> one DuckDB table per stream.

`target-duckdb --config C.json` reads Singer messages and loads every batch as an Arrow table in one
DuckDB transaction; it writes a STATE message to stdout only after every row before it is committed.
The raw-table contract it implements is in docs/connectors.md.
"""
