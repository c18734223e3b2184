"""Large PostgreSQL source tables built in the server with generate_series (200k rows in ~0.5 s, 1M in
~2 s), for partitioned syncs and benchmarks. Plain functions: any test or bench script can call them.

    orders(id bigint primary key, customer_id int, amount numeric(12,2), status text, created_at timestamptz)

`id` runs from `first` to `first + rows - 1`; `created_at` starts at `start` and steps by `every`, so the
rows cover `rows * every` of time (date partitions); `amount` is `id % 1000 + 0.25` (sums are known).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

START = datetime(2024, 3, 1, tzinfo=UTC)


def create_orders(
    dsn: str,
    schema: str,
    rows: int,
    *,
    table: str = "orders",
    first: int = 1,
    start: datetime = START,
    every: timedelta = timedelta(seconds=10),
) -> None:
    """Create `schema.table` (and the schema) with `rows` orders whose ids start at `first`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            f'CREATE TABLE "{schema}"."{table}" (id bigint PRIMARY KEY, customer_id int NOT NULL, '
            "amount numeric(12,2) NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL)"
        )
    append_orders(dsn, schema, first, rows, table=table, start=start, every=every)


def append_orders(
    dsn: str,
    schema: str,
    first: int,
    rows: int,
    *,
    table: str = "orders",
    start: datetime = START,
    every: timedelta = timedelta(seconds=10),
) -> None:
    """Insert orders `first` … `first + rows - 1` (created at `start + (id - 1) * every`)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}"."{table}" SELECT g, g %% 997, (g %% 1000) + 0.25, '
            "(ARRAY['new', 'paid', 'shipped'])[g %% 3 + 1], %s + (g - 1) * %s "
            "FROM generate_series(%s::bigint, %s::bigint) AS g",
            [start, every, first, first + rows - 1],
        )
        conn.execute(f'ANALYZE "{schema}"."{table}"')


def orders_digest(dsn: str, schema: str, table: str = "orders") -> tuple[int, int, int]:
    """(rows, sum of ids, distinct ids) of a table of orders: the same at the source and in a target
    that loaded each row once."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f'SELECT count(*), coalesce(sum(id), 0), count(DISTINCT id) FROM "{schema}"."{table}"'
        )
        found = row.fetchone()
    assert found is not None
    return int(found[0]), int(found[1]), int(found[2])
