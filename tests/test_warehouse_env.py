"""Steps against the warehouse of the environment in force: DuckDB in `dev`, PostgreSQL in `postgres`.

The project's `postgres` environment points the `dbt` utility at the local PostgreSQL (db `test`, a
schema of the test's own, dropped after), as the sample project's does. sql steps then run there, exports
read their source there, and `write_table`/`read_table` move Arrow tables in and out of either warehouse
with exact types.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from elt.errors import RunError
from elt.project import load_project
from elt.steps import StepContext
from elt.steps import export as export_step
from elt.steps.export import run_export
from elt.steps.sql import run_sql
from elt.steps.warehouse import environment_warehouse, read_table, write_table
from tests.conftest import run_elt

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

PROJECT = """
version: 1
default_environment: dev
plugins:
  loaders:
    - name: target-duckdb
      config: {{path: .elt/warehouse.duckdb}}
  utilities:
    - name: dbt
      config: {{project_dir: models, profiles_dir: profiles}}
environments:
  - name: dev
  - name: postgres
    config:
      plugins:
        utilities:
          - name: dbt
            config: {{target: postgres, host: 127.0.0.1, port: 5432, user: postgres, dbname: test,
                      schema: {schema}}}
"""

TYPED = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "amount": pa.array([Decimal("10.50"), Decimal("-0.01"), None], pa.decimal128(12, 2)),
        "paid_at": pa.array(
            [dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC), None, dt.datetime(2024, 2, 29, tzinfo=dt.UTC)],
            pa.timestamp("us", tz="UTC"),
        ),
        "note": pa.array(["a", None, "ünï"], pa.string()),
    }
)


@pytest.fixture
def other_schema(postgres_dsn: str) -> Iterator[str]:
    """A second unique PostgreSQL schema (an export's destination), dropped after the test."""
    name = f"elt_test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def project_dir(tmp_path: Path, pg_schema: str) -> Path:
    (tmp_path / "elt.yml").write_text(textwrap.dedent(PROJECT.format(schema=pg_schema)).lstrip())
    return tmp_path


def context(folder: Path, environment: str, run_id: str = "run-0001") -> StepContext:
    return StepContext(
        project=load_project(folder, environment),
        run_id=run_id,
        pipeline="daily",
        step="step",
        variables={},
        upstream={},
        log=lambda line: None,
    )


def seed_pg_orders(schema: str, ids: range) -> None:
    """`SCHEMA.orders` in PostgreSQL, as a dbt model built there, with one row per id."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.orders "
            "(order_id integer, amount numeric(10,2), updated_at timestamptz, note text)"
        )
        conn.execute(
            f"INSERT INTO {schema}.orders SELECT i, i * 1.5, "
            "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour', 'order ' || i "
            "FROM generate_series(%s::int, %s::int) i",
            [ids.start, ids.stop - 1],
        )


def pg(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(DSN) as conn:
        return conn.execute(sql, params).fetchall()


def column_types(schema: str, table: str) -> list[tuple[str, str]]:
    return pg(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    )


def test_the_environment_warehouse_is_where_dbt_builds(project_dir: Path, pg_schema: str) -> None:
    dev = environment_warehouse(load_project(project_dir, "dev"))
    postgres = environment_warehouse(load_project(project_dir, "postgres"))

    assert (dev.kind, dev.address, dev.schema) == (
        "duckdb",
        str(project_dir / ".elt" / "warehouse.duckdb"),
        "analytics",
    )
    assert (postgres.kind, postgres.schema) == ("postgres", pg_schema)
    assert postgres.describe() == "postgres://127.0.0.1:5432/test"


@pytest.mark.postgres
def test_sql_step_runs_in_the_postgres_warehouse_of_the_environment(
    project_dir: Path, pg_schema: str
) -> None:
    seed_pg_orders(pg_schema, range(1, 11))
    sql = (
        f"CREATE TABLE {pg_schema}.big AS SELECT * FROM {pg_schema}.orders WHERE amount > 9; "
        f"SELECT order_id FROM {pg_schema}.big ORDER BY order_id"
    )

    output = run_sql(sql, {}, context(project_dir, "postgres"))

    assert output.summary["database"] == "postgres"
    assert output.rows == 4 and output.value == [{"order_id": i} for i in (7, 8, 9, 10)]
    assert pg(f"SELECT count(*) FROM {pg_schema}.big") == [(4,)]
    assert not (project_dir / ".elt" / "warehouse.duckdb").exists(), "DuckDB is not touched"


@pytest.mark.postgres
def test_export_of_a_postgres_model_to_parquet_and_to_another_schema(
    project_dir: Path, pg_schema: str, other_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_step, "BATCH_ROWS", 30)  # several batches from the server-side cursor
    seed_pg_orders(pg_schema, range(1, 101))
    full = {"to": "postgres", "dsn": DSN, "table": f"{other_schema}.orders_full"}
    incremental = {
        "to": "postgres",
        "dsn": DSN,
        "table": f"{other_schema}.orders_new",
        "mode": "incremental",
        "watermark": "updated_at",
    }

    parquet = run_export("orders", {"to": "parquet", "path": "exports/"}, context(project_dir, "postgres"))
    copied = run_export("orders", full, context(project_dir, "postgres"))
    first = run_export("orders", incremental, context(project_dir, "postgres", "run-0001"))
    seed_pg_orders(pg_schema, range(101, 121))
    second = run_export("orders", incremental, context(project_dir, "postgres", "run-0002"))
    third = run_export("orders", incremental, context(project_dir, "postgres", "run-0003"))

    table = pq.read_table(project_dir / "exports" / "orders.parquet")
    assert parquet.rows == 100 and parquet.summary["source"] == f"{pg_schema}.orders"
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert table.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert sorted(table["order_id"].to_pylist()) == list(range(1, 101))
    assert table.filter(pa.compute.equal(table["order_id"], 3))["amount"].to_pylist() == [Decimal("4.50")]
    assert copied.rows == 100
    assert pg(f"SELECT count(*), sum(amount) FROM {other_schema}.orders_full") == [(100, Decimal("7575.00"))]
    assert (first.rows, second.rows, third.rows) == (100, 20, 0)
    assert second.summary["since"] == "2024-01-05 04:00:00+00:00"
    assert pg(f"SELECT count(*), count(DISTINCT order_id), max(order_id) FROM {other_schema}.orders_new") == [
        (120, 120, 120)
    ]
    assert column_types(other_schema, "orders_new") == [
        ("order_id", "integer"),
        ("amount", "numeric"),
        ("updated_at", "timestamp with time zone"),
        ("note", "text"),
    ]
    assert pg(
        "SELECT numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'orders_new' AND column_name = 'amount'",
        [other_schema],
    ) == [(10, 2)]


@pytest.mark.postgres
def test_export_names_close_matches_when_the_model_is_not_in_postgres(
    project_dir: Path, pg_schema: str
) -> None:
    seed_pg_orders(pg_schema, range(1, 3))

    with pytest.raises(RunError, match="no table or model 'order' in the warehouse") as raised:
        run_export("order", {"to": "parquet", "path": "x/"}, context(project_dir, "postgres"))

    assert f"{pg_schema}.orders" in str(raised.value)


@pytest.mark.parametrize("environment", ["dev", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_write_table_then_read_table_round_trips_exact_types(
    project_dir: Path, pg_schema: str, environment: str
) -> None:
    project = load_project(project_dir, environment)

    written = write_table(project, pg_schema, "payments", TYPED)
    back = read_table(project, pg_schema, "payments")
    by_model_name = read_table(project, None, "payments", limit=2)  # dbt's schema, as ref() reads
    query = read_table(project, None, f"SELECT id, note FROM {pg_schema}.payments WHERE id > 1 ORDER BY id")

    assert written == 3
    assert back.schema.equals(TYPED.schema), back.schema
    assert back.sort_by("id").to_pylist() == TYPED.to_pylist()
    assert by_model_name.num_rows == 2
    assert query.to_pylist() == [{"id": 2, "note": None}, {"id": 3, "note": "ünï"}]


@pytest.mark.postgres
def test_write_table_in_postgres_creates_exact_types_and_replaces_in_place(
    project_dir: Path, pg_schema: str
) -> None:
    project = load_project(project_dir, "postgres")
    write_table(project, pg_schema, "payments", TYPED)
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE VIEW {pg_schema}.big_payments AS SELECT * FROM {pg_schema}.payments")

    again = write_table(project, pg_schema, "payments", TYPED.slice(0, 1))
    frame = pd.DataFrame({"id": [7], "when": [pd.Timestamp("2024-03-01 10:00:00.123456789", tz="UTC")]})
    write_table(project, pg_schema, "frame", frame)

    assert again == 1
    assert pg(f"SELECT id FROM {pg_schema}.big_payments") == [(1,)], "the view over it survives"
    assert column_types(pg_schema, "payments") == [
        ("id", "bigint"),
        ("amount", "numeric"),
        ("paid_at", "timestamp with time zone"),
        ("note", "text"),
    ]
    assert pg(
        f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = '{pg_schema}.payments'::regclass AND attname = 'amount'"
    ) == [("numeric(12,2)",)]
    assert pg(f'SELECT id, "when" FROM {pg_schema}.frame') == [
        (7, dt.datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=dt.UTC))
    ]


PIPELINE = """
pipelines:
  daily:
    steps:
      - name: seed
        sql: >-
          CREATE SCHEMA IF NOT EXISTS {schema};
          CREATE TABLE IF NOT EXISTS {schema}.orders (order_id integer, amount numeric(10,2));
          INSERT INTO {schema}.orders SELECT n, n * 1.5
          FROM (SELECT coalesce(max(order_id), 0) AS m FROM {schema}.orders) t,
          generate_series(t.m + 1, t.m + 10) n
      - {{name: to_lake, needs: [seed], export: orders, to: parquet, path: exports/orders/,
         mode: incremental, watermark: order_id}}
      - {{name: to_app, needs: [seed], export: orders, to: postgres, dsn: "{dsn}",
         table: {other}.orders, mode: incremental, watermark: order_id}}
"""


@pytest.mark.postgres
def test_the_same_pipeline_runs_in_the_postgres_environment_through_the_cli(
    project_dir: Path, pg_schema: str, other_schema: str
) -> None:
    with (project_dir / "elt.yml").open("a") as file:
        file.write(textwrap.dedent(PIPELINE).format(schema=pg_schema, dsn=DSN, other=other_schema))

    runs = []
    for _ in range(2):
        proc = run_elt("-e", "postgres", "run", "daily", "--format", "json", cwd=project_dir)
        runs.append({s["name"]: (s["status"], s["rows"]) for s in json.loads(proc.stdout)["steps"]})

    assert runs[0] == {"seed": ("success", 10), "to_lake": ("success", 10), "to_app": ("success", 10)}
    assert runs[1] == runs[0], "the second run exports only the 10 new rows"
    files = sorted((project_dir / "exports" / "orders").glob("*.parquet"))
    assert sorted(i for f in files for i in pq.read_table(f)["order_id"].to_pylist()) == list(range(1, 21))
    assert pg(f"SELECT count(*), max(order_id) FROM {other_schema}.orders") == [(20, 20)]
    assert not (project_dir / ".elt" / "warehouse.duckdb").exists(), "DuckDB is not touched"
