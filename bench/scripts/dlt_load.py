"""Load <schema>.events into a DuckDB file with dlt's `sql_table`, as a dlt user writes it.

Runs inside the dlt venv. Prints one JSON object: the rows dlt normalized per table.

    python dlt_load.py --backend B --schema S --credentials URL --duckdb OUT --pipelines-dir D [--incremental]
"""

from __future__ import annotations

import argparse
import json

import dlt
from dlt.sources.sql_database import sql_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--credentials", required=True)
    parser.add_argument("--duckdb", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--table", default="events")
    parser.add_argument("--incremental", action="store_true", help="by updated_at, merged on id")
    args = parser.parse_args()

    if args.incremental:
        resource = sql_table(
            args.credentials,
            table=args.table,
            schema=args.schema,
            backend=args.backend,
            incremental=dlt.sources.incremental("updated_at"),
            write_disposition="merge",
            primary_key="id",
        )
    else:
        resource = sql_table(args.credentials, table=args.table, schema=args.schema, backend=args.backend)
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{args.backend}",
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.duckdb(args.duckdb),
        dataset_name=args.schema,
    )
    pipeline.run(resource, write_disposition="merge" if args.incremental else "replace")
    counts = pipeline.last_trace.last_normalize_info.row_counts
    print(json.dumps({"rows_moved": counts.get(args.table, 0), "row_counts": dict(counts)}))


if __name__ == "__main__":
    main()
