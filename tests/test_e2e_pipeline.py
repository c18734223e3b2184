"""One pipeline through every kind of step, as issue 7 describes it: sync → dbt staging → Python
transformer → dbt mart → incremental exports to Parquet and to PostgreSQL; run, new orders arrive, run
again, and only the new rows move."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import yaml

from tests.conftest import BIN, run_elt


def run(project: Path) -> dict[str, dict[str, Any]]:
    proc = run_elt("run", "shop", "--format", "json", cwd=project, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {s["name"]: s for s in json.loads(proc.stdout)["steps"]}


def warehouse(project: Path, sql: str) -> Any:
    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_sync_dbt_python_dbt_and_exports_run_twice_incrementally(sample_project: Path, db, pg_schema) -> None:
    project = sample_project
    (project / "blocks").mkdir()
    (project / "blocks" / "scores.py").write_text(textwrap.dedent("""
        from elt.blocks import ref, transformer

        @transformer(table="customer_orders")
        def orders_per_customer():
            orders = ref("stg_orders")
            return orders.groupby("customer_id", as_index=False).agg(orders=("order_id", "count"))
        """))  # fmt: skip
    (project / "models" / "models" / "marts" / "busy_customers.sql").write_text(
        "select customer_id, orders from {{ source('blocks', 'customer_orders') }} where orders >= 3\n"
    )
    config = yaml.safe_load((project / "elt.yml").read_text())
    config["plugins"]["loaders"].append({
        "name": "app_db", "inherit_from": "target-postgres",
        "config": {"host": "127.0.0.1", "user": "postgres", "database": "test"},
    })  # fmt: skip
    incremental = {"mode": "incremental", "watermark": "updated_at", "needs": ["staging"]}
    config["pipelines"]["shop"] = {"steps": [
        {"name": "load", "sync": "tap-files target-duckdb"},
        {"name": "staging", "dbt": "run --select staging"},
        {"name": "count", "python": "blocks/scores.py:orders_per_customer", "needs": ["staging"]},
        {"name": "mart", "dbt": "run --select busy_customers", "needs": ["count"]},
        {"name": "lake", "export": "stg_orders", "to": "parquet", "path": "exports/orders/", **incremental},
        {"name": "app", "export": "stg_orders", "to": "postgres", "target": "app_db",
         "table": f"{pg_schema}.orders", **incremental},
    ]}  # fmt: skip
    (project / "elt.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    first = run(project)
    orders = warehouse(project, "select count(*) from analytics.stg_orders")
    assert first["load"]["rows"] > orders > 0
    assert first["lake"]["rows"] == first["app"]["rows"] == orders
    assert warehouse(project, "select count(*) from blocks.customer_orders") == first["count"]["rows"]
    assert warehouse(project, "select count(*) from analytics.busy_customers") > 0

    subprocess.run([str(BIN / "python"), "-m", "elt.sample", "data", "--append-orders", "50"],
                   cwd=project, check=True, capture_output=True)  # fmt: skip
    second = run(project)

    # only what is new moves: 50 orders (with their items and payments), 50 exported rows each way
    assert 50 <= second["load"]["rows"] < first["load"]["rows"]
    assert second["lake"]["rows"] == second["app"]["rows"] == 50
    assert warehouse(project, "select count(*) from analytics.stg_orders") == orders + 50
    files = sorted((project / "exports" / "orders").glob("*.parquet"))
    assert len(files) == 2 and sum(pq.read_metadata(f).num_rows for f in files) == orders + 50
    assert db("SELECT count(*), count(DISTINCT order_id) FROM {schema}.orders") == [(orders + 50,) * 2]


def test_the_same_pipeline_runs_in_the_postgres_environment(sample_project: Path, postgres_dsn: str) -> None:
    """A `warehouse` loader is target-duckdb in dev and target-postgres in the postgres environment
    (`inherit_from` per environment), so one pipeline (sync → dbt → export) runs in both."""
    import uuid

    import psycopg

    project = sample_project
    models_schema = f"elt_e2e_{uuid.uuid4().hex[:8]}"
    config = yaml.safe_load((project / "elt.yml").read_text())
    config["plugins"]["loaders"].append({"name": "warehouse", "inherit_from": "target-duckdb"})
    for environment in config["environments"]:
        plugins = environment.setdefault("config", {}).setdefault("plugins", {})
        if environment["name"] == "dev":
            plugins["loaders"] = [{"name": "warehouse", "config": {"path": ".elt/warehouse.duckdb"}}]
        else:
            plugins["loaders"] = [{
                "name": "warehouse", "inherit_from": "target-postgres",
                "config": {"host": "127.0.0.1", "user": "postgres", "database": "test"},
            }]  # fmt: skip
            plugins["utilities"][0]["config"]["schema"] = models_schema
    config["pipelines"]["any"] = {"steps": [
        {"name": "load", "sync": "tap-files warehouse"},
        {"name": "staging", "dbt": "run --select staging"},
        {"name": "lake", "export": "stg_orders", "to": "parquet", "path": "exports/orders.parquet",
         "needs": ["staging"]},
    ]}  # fmt: skip
    (project / "elt.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    try:
        results = {}
        for environment in ("dev", "postgres"):
            proc = run_elt("-e", environment, "run", "any", "--format", "json", cwd=project, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            results[environment] = {s["name"]: s for s in json.loads(proc.stdout)["steps"]}
            shutil.move(project / "exports" / "orders.parquet", project / f"{environment}.parquet")
        assert results["dev"]["load"]["rows"] == results["postgres"]["load"]["rows"] > 0
        orders = warehouse(project, "select count(*) from analytics.stg_orders")
        assert results["postgres"]["lake"]["rows"] == results["dev"]["lake"]["rows"] == orders
        with psycopg.connect(postgres_dsn) as conn:
            assert conn.execute(f"select count(*) from {models_schema}.stg_orders").fetchone() == (orders,)
        dev, pg = (pq.read_table(project / f"{env}.parquet") for env in ("dev", "postgres"))
        assert sorted(dev.column("order_id").to_pylist()) == sorted(pg.column("order_id").to_pylist())

        # lineage in the postgres environment: PostgreSQL's SQL and information_schema, the raw table
        # target-postgres wrote, back to the stream
        proc = run_elt("-e", "postgres", "lineage", "column", "stg_orders.order_status", "--format", "json",
                       cwd=project)  # fmt: skip
        upstream = {(u["node"], u["column"], u["kind"]) for u in json.loads(proc.stdout)["upstream"]}
        assert upstream == {
            ("source.elt_demo.tap_files.orders", "status", "transform"),
            ("table:warehouse.tap_files.orders", "status", "copy"),
            ("stream:tap-files.orders", "status", "copy"),
        }
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"drop schema if exists {models_schema} cascade")
            conn.execute("drop schema if exists tap_files cascade")
