"""The runners of python, sql and export steps, and step fingerprints, on a real project folder.

Each test writes an elt.yml and its blocks into a folder, loads it with `load_project`, and calls a
runner as the orchestrator does in a step's process: real DuckDB files, the real local PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from elt.errors import RunError
from elt.project import load_project
from elt.steps import StepContext, StepOutput
from elt.steps.cache import fingerprint
from elt.steps.export import run_export
from elt.steps.python import run_python
from elt.steps.sql import run_sql
from tests.test_state_backends import _s3_client, moto_endpoint  # noqa: F401  (a session fixture)

PROJECT = """
version: 1
default_environment: dev
plugins:
  loaders:
    - name: target-duckdb
      config: {path: .elt/warehouse.duckdb}
    - name: pg
      inherit_from: target-postgres
      config: {host: 127.0.0.1, port: 5432, user: postgres, database: test}
environments:
  - name: dev
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "elt.yml").write_text(textwrap.dedent(PROJECT).lstrip())
    (tmp_path / "blocks").mkdir()
    return tmp_path


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def context(
    folder: Path,
    *,
    variables: dict[str, Any] | None = None,
    upstream: dict[str, StepOutput] | None = None,
    item: Any = None,
    run_id: str = "run-0001",
) -> StepContext:
    lines: list[str] = []
    return StepContext(
        project=load_project(folder),
        run_id=run_id,
        pipeline="daily",
        step="step",
        variables=variables or {},
        upstream=upstream or {},
        log=lines.append,
        item=item,
    )


def warehouse_rows(folder: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(folder / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def seed_orders(folder: Path, ids: range) -> None:
    """An `analytics.orders` table (where dbt builds models) with one row per id."""
    path = folder / ".elt" / "warehouse.duckdb"
    path.parent.mkdir(exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS analytics")
        con.execute(
            "CREATE TABLE IF NOT EXISTS analytics.orders "
            "(order_id INTEGER, amount DECIMAL(10,2), updated_at TIMESTAMP WITH TIME ZONE)"
        )
        con.execute(
            "INSERT INTO analytics.orders SELECT i, i * 1.5, TIMESTAMPTZ '2024-01-01 00:00:00+00' "
            "+ i * INTERVAL 1 HOUR FROM range(?, ?) t(i)",
            [ids.start, ids.stop],
        )


# python steps


def test_python_step_writes_a_returned_dataframe_into_the_warehouse(project_dir: Path) -> None:
    write(
        project_dir,
        "blocks/score.py",
        """
        import pandas as pd

        def score(variables, item, factor):
            return pd.DataFrame({"customer": ["a", "b", "c"], "score": [1 * factor, 2 * factor, 3 * factor]})
        """,
    )
    ctx = context(project_dir, variables={"factor": 10})

    output = run_python("blocks/score.py:score", {"table": "scores", "schema": "ml"}, ctx)

    assert output.rows == 3
    assert warehouse_rows(project_dir, "SELECT customer, score FROM ml.scores ORDER BY 1") == [
        ("a", 10),
        ("b", 20),
        ("c", 30),
    ]
    # A second run replaces the table, it does not append to it.
    run_python("blocks/score.py:score", {"table": "scores", "schema": "ml"}, ctx)
    assert warehouse_rows(project_dir, "SELECT count(*) FROM ml.scores") == [(3,)]


def test_python_step_returns_a_list_as_its_value_with_inputs_and_local_imports(project_dir: Path) -> None:
    write(project_dir, "blocks/helpers.py", "def double(x):\n    return 2 * x\n")
    write(
        project_dir,
        "blocks/regions.py",
        """
        import datetime
        from helpers import double

        def regions(inputs, context, item):
            base = inputs["load"]["rows"]
            return [{"region": item, "rows": double(base), "day": datetime.date(2024, 1, 2)}]
        """,
    )
    ctx = context(project_dir, upstream={"load": StepOutput(rows=7, value={"rows": 7})}, item="eu")

    output = run_python("blocks/regions.py:regions", {}, ctx)

    assert output.value == [{"region": "eu", "rows": 14, "day": "2024-01-02"}]
    assert output.rows == 1
    assert not any(name == "helpers" for name in sys.modules), "the block's modules must not stay imported"


def test_python_step_exception_becomes_a_run_error_naming_file_and_function(project_dir: Path) -> None:
    write(
        project_dir,
        "blocks/broken.py",
        """
        def explode():
            raise ValueError("no rows for 2024-01-01")
        """,
    )

    with pytest.raises(RunError) as caught:
        run_python("blocks/broken.py:explode", {}, context(project_dir))

    message = str(caught.value)
    assert "blocks/broken.py:explode" in message
    assert "ValueError: no rows for 2024-01-01" in message
    assert "broken.py:2" in message  # the line that raised
    assert "Traceback" not in message


def test_python_step_waits_for_a_warehouse_another_process_holds(project_dir: Path) -> None:
    write(
        project_dir,
        "blocks/rows.py",
        "import pyarrow as pa\n\ndef rows():\n    return pa.table({'a': [1]})\n",
    )
    warehouse = project_dir / ".elt" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAREHOUSE, str(warehouse)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    lines: list[str] = []
    ctx = context(project_dir)

    output = run_python("blocks/rows.py:rows", {"table": "one"}, replace(ctx, log=lines.append))

    assert holder.wait(timeout=10) == 0
    assert output.rows == 1
    assert any("waiting for the DuckDB warehouse" in line for line in lines)


HOLD_WAREHOUSE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(1)
con.close()
"""


def test_python_step_traceback_only_with_elt_debug(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project_dir, "blocks/broken.py", "def explode():\n    return 1 / 0\n")
    monkeypatch.setenv("ELT_DEBUG", "1")

    with pytest.raises(RunError, match="(?s)ZeroDivisionError.*Traceback"):
        run_python("blocks/broken.py:explode", {}, context(project_dir))


def test_python_step_error_on_import_names_the_file(project_dir: Path) -> None:
    write(project_dir, "blocks/bad.py", "import no_such_module_here\n")

    with pytest.raises(RunError, match="bad.py .on import. failed: ModuleNotFoundError"):
        run_python("blocks/bad.py:anything", {}, context(project_dir))


# sql steps


def test_sql_step_runs_statements_in_duckdb_and_returns_the_last_rows(project_dir: Path) -> None:
    write(
        project_dir,
        "sql/daily.sql",
        """
        CREATE TABLE daily AS SELECT range AS day, range * 2 AS revenue FROM range(5);
        SELECT day, revenue FROM daily WHERE revenue >= 4 ORDER BY day;
        """,
    )

    output = run_sql("sql/daily.sql", {}, context(project_dir))

    assert output.rows == 3
    assert output.value == [{"day": 2, "revenue": 4}, {"day": 3, "revenue": 6}, {"day": 4, "revenue": 8}]
    updated = run_sql("UPDATE daily SET revenue = 0 WHERE day < 2", {}, context(project_dir))
    assert (updated.rows, updated.value) == (2, None)


def test_sql_step_failure_names_the_statement_and_commits_nothing(project_dir: Path) -> None:
    sql = "CREATE TABLE kept (a INTEGER);\nSELECT * FROM missing_table;"

    with pytest.raises(RunError, match="statement 2 `SELECT \\* FROM missing_table;`"):
        run_sql(sql, {}, context(project_dir))

    assert warehouse_rows(project_dir, "SELECT count(*) FROM duckdb_tables() WHERE table_name='kept'") == [
        (0,)
    ]


@pytest.mark.postgres
def test_sql_step_runs_against_a_target_postgres_loader(
    project_dir: Path, db: Callable[..., list[Any]], pg_schema: str
) -> None:
    sql = (
        f"CREATE TABLE {pg_schema}.t (a int); INSERT INTO {pg_schema}.t SELECT generate_series(1, 1500); "
        f"SELECT a FROM {pg_schema}.t ORDER BY a"
    )

    output = run_sql(sql, {"target": "pg"}, context(project_dir))

    assert output.rows == 1500
    assert len(output.value) == 1000 and output.value[0] == {"a": 1}
    assert output.summary["truncated"] is True
    assert db("SELECT count(*) FROM {schema}.t") == [(1500,)]


# export steps


def test_export_to_parquet_and_csv_reads_back_the_model(project_dir: Path) -> None:
    seed_orders(project_dir, range(1, 51))
    ctx = context(project_dir)

    parquet = run_export("orders", {"to": "parquet", "path": "exports/"}, ctx)
    csv = run_export("analytics.orders", {"to": "csv", "path": "exports/orders.csv"}, ctx)

    expected = warehouse_rows(project_dir, "SELECT order_id, amount FROM analytics.orders ORDER BY 1")
    table = pq.read_table(project_dir / "exports" / "orders.parquet").sort_by("order_id")
    assert list(zip(table["order_id"].to_pylist(), table["amount"].to_pylist(), strict=True)) == expected
    assert parquet.rows == 50 and parquet.bytes == (project_dir / "exports" / "orders.parquet").stat().st_size
    from_csv = pacsv.read_csv(project_dir / "exports" / "orders.csv").sort_by("order_id")
    assert from_csv["order_id"].to_pylist() == [row[0] for row in expected]
    assert [str(v) for v in from_csv["amount"].to_pylist()] == [str(float(row[1])) for row in expected]
    assert csv.rows == 50
    assert not list((project_dir / "exports").glob(".*partial")), "no partial file is left behind"


def test_incremental_export_writes_only_rows_above_the_last_watermark(project_dir: Path) -> None:
    seed_orders(project_dir, range(1, 11))
    options = {"to": "parquet", "path": "exports/orders/", "mode": "incremental", "watermark": "updated_at"}

    first = run_export("orders", options, context(project_dir, run_id="run-0001"))
    seed_orders(project_dir, range(11, 14))
    second = run_export("orders", options, context(project_dir, run_id="run-0002"))
    third = run_export("orders", options, context(project_dir, run_id="run-0003"))

    assert (first.rows, second.rows, third.rows) == (10, 3, 0)
    files = sorted((project_dir / "exports" / "orders").glob("*.parquet"))
    assert len(files) == 2, "a run with no new rows writes no file"
    ids = sorted(i for f in files for i in pq.read_table(f)["order_id"].to_pylist())
    assert ids == list(range(1, 14))
    second_file = next(f for f in files if "run-0002"[:8] in f.name)
    assert pq.read_table(second_file)["order_id"].to_pylist() == [11, 12, 13]


def test_export_to_s3_uploads_the_parquet_file(project_dir: Path, moto_endpoint: str) -> None:  # noqa: F811
    seed_orders(project_dir, range(1, 21))
    bucket = f"elt-export-{uuid.uuid4().hex[:10]}"
    client = _s3_client(moto_endpoint)
    client.create_bucket(Bucket=bucket)
    s3 = {"endpoint_url": moto_endpoint, "aws_access_key_id": "test", "aws_secret_access_key": "test"}

    output = run_export(
        "orders",
        {"to": "parquet", "path": f"s3://{bucket}/shop/orders.parquet", "s3": s3},
        context(project_dir),
    )

    body = client.get_object(Bucket=bucket, Key="shop/orders.parquet")["Body"].read()
    assert output.rows == 20 and output.bytes == len(body)
    local = project_dir / "downloaded.parquet"
    local.write_bytes(body)
    assert pq.read_table(local).num_rows == 20


@pytest.mark.postgres
def test_export_to_postgres_full_then_incremental(
    project_dir: Path, db: Callable[..., list[Any]], pg_schema: str
) -> None:
    seed_orders(project_dir, range(1, 101))
    table = f"{pg_schema}.orders"

    full = run_export("orders", {"to": "postgres", "target": "pg", "table": table}, context(project_dir))
    again = run_export("orders", {"to": "postgres", "target": "pg", "table": table}, context(project_dir))
    incremental = {"to": "postgres", "target": "pg", "table": table, "mode": "incremental"}
    incremental["watermark"] = "order_id"
    run_export("orders", incremental, context(project_dir))  # the first incremental run: every row
    seed_orders(project_dir, range(101, 121))
    new_rows = run_export("orders", incremental, context(project_dir))

    assert (full.rows, again.rows, new_rows.rows) == (100, 100, 20)
    assert full.bytes and full.bytes > 0
    # 100 (full, replaced by the second full run) + 100 (first incremental) + 20 (second incremental)
    assert db("SELECT count(*), count(DISTINCT order_id) FROM {schema}.orders") == [(220, 120)]
    columns = db(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'orders' ORDER BY ordinal_position",
        params=[pg_schema],
    )
    assert columns == [
        ("order_id", "integer"),
        ("amount", "numeric"),
        ("updated_at", "timestamp with time zone"),
    ]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test") as conn:
        assert conn.execute(f"SELECT max(order_id) FROM {table}").fetchone() == (120,)


# fingerprints


def test_fingerprint_changes_with_code_options_variables_and_upstream_only(project_dir: Path) -> None:
    write(project_dir, "blocks/helpers.py", "RATE = 1\n")
    block = write(
        project_dir, "blocks/score.py", "from helpers import RATE\n\ndef score():\n    return RATE\n"
    )
    upstream = {"load": StepOutput(rows=5, value=[1, 2])}

    def of(options: dict[str, Any] | None = None, **changes: Any) -> str:
        ctx = context(project_dir, **{"variables": {"day": "2024-01-01"}, "upstream": upstream, **changes})
        return fingerprint("python", "blocks/score.py:score", options or {"table": "s"}, ctx)

    base = of()
    assert of() == base, "stable across calls (and runs: no run id, no time in it)"
    assert of(run_id="another-run") == base
    assert of({"table": "s", "cache": {"expire": "1h"}, "retries": {"count": 2}}) == base

    assert of({"table": "other"}) != base
    assert of(variables={"day": "2024-01-02"}) != base
    assert of(upstream={"load": StepOutput(rows=6, value=[1, 2])}) != base
    assert of(upstream={"load": StepOutput(rows=5, value=[1, 3])}) != base
    assert of(item="eu") != base
    block.write_text(block.read_text() + "# a comment counts: the code changed\n")
    changed_code = of()
    assert changed_code != base
    (project_dir / "blocks" / "helpers.py").write_text("RATE = 2\n")
    assert of() != changed_code, "a project module the block imports is part of its code"


def test_fingerprint_of_sql_follows_the_file_bytes(project_dir: Path) -> None:
    path = write(project_dir, "sql/q.sql", "SELECT 1;\n")
    ctx = context(project_dir)

    before = fingerprint("sql", "sql/q.sql", {}, ctx)
    path.write_text("SELECT 2;\n")

    assert fingerprint("sql", "sql/q.sql", {}, ctx) != before
    assert fingerprint("sql", "SELECT 1", {}, ctx) != fingerprint("sql", "SELECT 2", {}, ctx)
