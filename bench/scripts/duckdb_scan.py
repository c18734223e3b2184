"""Copy <schema>.events into a DuckDB file with DuckDB's postgres scanner.

Runs inside the duckdb venv, whose postgres extension was placed under EXTENSION_DIR by the harness, so
`LOAD postgres` reads it from there and never downloads.

    python duckdb_scan.py --dsn DSN --schema SCHEMA --extension-dir DIR --duckdb OUT
"""

from __future__ import annotations

import argparse

import duckdb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--extension-dir", required=True)
    parser.add_argument("--duckdb", required=True)
    args = parser.parse_args()
    config = {
        "extension_directory": args.extension_dir,
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    }
    con = duckdb.connect(args.duckdb, config=config)
    con.execute("LOAD postgres")
    con.execute("CREATE TABLE events AS SELECT * FROM postgres_scan(?, ?, 'events')", [args.dsn, args.schema])
    con.close()


if __name__ == "__main__":
    main()
