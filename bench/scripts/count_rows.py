"""Count what arrived in a DuckDB table: rows, distinct ids and rows whose updated_at was changed.

Runs with the Python of the tool that wrote the file (its DuckDB reads its own storage version).
Prints one JSON object; {"error": ...} naming the tables there are when TABLE is not one of them.

    python count_rows.py FILE SCHEMA.TABLE
"""

from __future__ import annotations

import json
import sys

import duckdb


def main() -> None:
    path, table = sys.argv[1], sys.argv[2]
    schema, _, name = table.rpartition(".")
    con = duckdb.connect(path, read_only=True)
    tables = con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
    ).fetchall()
    if f"{schema}.{name}" not in {found for (found,) in tables}:
        print(json.dumps({"error": f"no table {table}; tables: {', '.join(t for (t,) in tables) or 'none'}"}))
        return
    counts = con.execute(
        "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE updated_at <> created_at) "
        f'FROM "{schema}"."{name}"'
    ).fetchone()
    rows, distinct, updated = counts if counts else (0, 0, 0)
    print(json.dumps({"rows": rows, "distinct_ids": distinct, "updated": updated}))


if __name__ == "__main__":
    main()
