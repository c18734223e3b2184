"""Load the RECORD messages of a Singer file into a DuckDB table with `read_ndjson`.

The columns are declared, not sniffed: a loader never guesses a file's format.

    python duckdb_ndjson.py --singer FILE --duckdb OUT
"""

from __future__ import annotations

import argparse

import duckdb

RECORD = (
    "STRUCT(id BIGINT, user_id INTEGER, event_type VARCHAR, amount DECIMAL(12,2), payload VARCHAR, "
    "created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--singer", required=True)
    parser.add_argument("--duckdb", required=True)
    args = parser.parse_args()
    con = duckdb.connect(args.duckdb)
    con.execute(
        "CREATE TABLE events AS SELECT unnest(record) FROM read_ndjson(?, columns = {type: 'VARCHAR', "
        f"record: '{RECORD}'}}) WHERE type = 'RECORD'",
        [args.singer],
    )
    con.close()


if __name__ == "__main__":
    main()
