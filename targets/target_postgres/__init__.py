"""target-postgres, elt's built-in PostgreSQL loader: Singer messages on stdin -> one table per stream.

`target-postgres --config C.json` reads Singer messages and loads every batch with a binary COPY into a
TEMP staging table and one INSERT (or upsert) from it, in one PostgreSQL transaction; Parquet files of
BATCH messages are copied straight from Arrow. It writes a STATE message to stdout only after every
row before it is committed. The raw-table contract it implements is in docs/connectors.md; its config
is a drop-in for MeltanoLabs' target-postgres (`target-postgres --about` describes each key).
"""
