"""dbt through elt's CLI on the scaffolded sample project: generated sources, shorthands, --changed,
per-node results in run history, failures named."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import run_elt

RAW_TABLES = {"customers", "products", "orders", "order_items", "payments"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The sample project, synced and built once with `elt build --changed` (no saved build: everything)."""
    from elt.scaffold import create_project

    project = tmp_path_factory.mktemp("dbt") / "shop"
    create_project(project)
    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    return project, run_elt("build", "--changed", cwd=project)


def query(project: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


def sources_file(project: Path) -> Path:
    return project / "models" / "models" / "_elt_sources.yml"


def last_run(project: Path) -> dict:
    [run] = json.loads(run_elt("runs", "list", "--limit", "1", "--format", "json", cwd=project).stdout)
    return json.loads(run_elt("runs", "show", run["run_id"], "--format", "json", cwd=project).stdout)


def nodes_run(proc: subprocess.CompletedProcess[str], kind: str) -> set[str]:
    """Names of the nodes of one kind (`model`, `test`) that `elt build` printed."""
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == kind:
            names.add(parts[2])
    return names


def test_generated_sources_declare_every_synced_table_and_models_build_from_them(shop) -> None:
    project, build = shop
    generated = yaml.safe_load(sources_file(project).read_text())

    [source] = generated["sources"]
    assert (source["name"], source["schema"]) == ("tap_files", "tap_files")
    assert source["config"]["loaded_at_field"] == "_elt_synced_at"
    assert source["config"]["freshness"] == {"warn_after": {"count": 24, "period": "hour"}}
    tables = {t["name"]: [c["name"] for c in t["columns"]] for t in source["tables"]}
    assert set(tables) == RAW_TABLES
    assert tables["orders"] == [
        "order_id", "customer_id", "status", "ordered_at", "updated_at", "_elt_loaded_at", "_elt_synced_at",
    ]  # fmt: skip
    assert not (project / "models" / "models" / "staging" / "_sources.yml").exists()
    assert {"stg_orders", "fct_orders", "dim_customers", "daily_revenue"} <= nodes_run(build, "model")
    orders = sum(1 for _ in (project / "data" / "orders.csv").open()) - 1
    assert query(project, "select count(*) from analytics.fct_orders") == [(orders,)]


def test_sources_file_is_rewritten_only_when_its_content_changes(shop) -> None:
    project, _ = shop
    before = sources_file(project).stat().st_mtime_ns

    run_elt("dbt", "parse", cwd=project)

    assert sources_file(project).stat().st_mtime_ns == before


def test_a_hand_written_source_of_the_same_name_wins(shop) -> None:
    project, _ = shop
    own = project / "models" / "models" / "staging" / "_own_sources.yml"
    tables = "".join(f"      - name: {t}\n" for t in sorted(RAW_TABLES))
    own.write_text(f"version: 2\nsources:\n  - name: tap_files\n    schema: tap_files\n    tables:\n{tables}")
    try:
        run_elt("dbt", "parse", cwd=project)
        assert not sources_file(project).exists()
    finally:
        own.unlink()
    run_elt("dbt", "parse", cwd=project)
    assert sources_file(project).exists()


def test_build_records_rows_affected_of_a_table_model(shop) -> None:
    project, _ = shop
    runs = json.loads(run_elt("runs", "list", "--limit", "50", "--format", "json", cwd=project).stdout)
    [first_build] = [r for r in runs if r["name"] == "dbt build"][-1:]
    step = first_build["steps"][0]
    nodes = {n["name"]: n for n in step["summary"]["nodes"].values()}

    [(customers,)] = query(project, "select count(*) from analytics.dim_customers")
    assert nodes["dim_customers"]["rows_affected"] == customers > 0
    assert nodes["dim_customers"]["status"] == "success"
    assert nodes["dim_customers"]["seconds"] > 0
    assert nodes["order_statuses"]["rows_affected"] == 5  # the seed, as dbt's adapter reports it
    assert nodes["stg_orders"]["rows_affected"] is None  # a view
    assert nodes["unique_fct_orders_order_id"]["rows_affected"] is None  # a test
    assert step["rows"] >= customers + 5


def test_seed_snapshot_and_test_shorthands(shop) -> None:
    project, _ = shop
    seeded = run_elt("seed", cwd=project)
    assert "order_statuses" in seeded.stdout
    assert query(project, "select count(*) from analytics.order_statuses") == [(5,)]

    path = project / "data" / "customers.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["email"] = "moved@example.com"
    rows[0]["updated_at"] = "2030-01-01T00:00:00+00:00"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    run_elt("sync", "tap-files", "target-duckdb", cwd=project)
    run_elt("snapshot", cwd=project)
    run_elt("snapshot", cwd=project)  # nothing changed since: no third version

    versions = query(
        project,
        "select email, dbt_valid_to is null from analytics.customers_snapshot "
        f"where customer_id = {rows[0]['customer_id']} order by dbt_valid_from",
    )
    assert [v[1] for v in versions] == [False, True]
    assert versions[1][0] == "moved@example.com"

    tested = run_elt("test", "--select", "stg_customers", cwd=project)
    assert "unique_stg_customers_customer_id" in tested.stdout
    assert nodes_run(tested, "model") == set()


def test_build_changed_rebuilds_only_the_modified_model_and_its_children(shop) -> None:
    project, build = shop
    assert "no successful build saved" in build.stdout  # the fixture's first build built everything
    assert "dbt build: 65 node(s)" in build.stdout
    assert (project / ".elt" / "dbt-state" / "dev" / "manifest.json").is_file()
    model = project / "models" / "models" / "marts" / "dim_customers.sql"
    model.write_text(model.read_text() + "\n-- touched\n")

    changed = run_elt("build", "--changed", cwd=project)

    assert "--changed: building what changed" in changed.stdout
    assert nodes_run(changed, "model") == {"dim_customers"}
    assert nodes_run(changed, "test") == {
        "not_null_dim_customers_customer_id", "not_null_dim_customers_lifetime_value",
        "not_null_dim_customers_order_count", "unique_dim_customers_customer_id",
        "unique_dim_customers_email",
        "relationships_fct_orders_customer_id__customer_id__ref_dim_customers_",
    }  # fmt: skip
    again = run_elt("build", "--changed", cwd=project)
    assert nodes_run(again, "model") == set()


def test_a_failing_dbt_test_fails_the_run_naming_the_test(shop) -> None:
    project, _ = shop
    singular = project / "models" / "tests" / "assert_no_customer_is_named_zz.sql"
    singular.write_text("select customer_id from {{ ref('stg_customers') }} where customer_id is not null\n")
    try:
        proc = run_elt("test", "--select", "assert_no_customer_is_named_zz", cwd=project, check=False)
    finally:
        singular.unlink()

    assert proc.returncode == 1
    assert "test 'assert_no_customer_is_named_zz' fail" in proc.stderr
    assert "compiled SQL: " in proc.stderr
    assert "target/compiled/elt_demo/tests/assert_no_customer_is_named_zz.sql" in proc.stderr
    assert "Got " in proc.stderr and "results, configured to fail if != 0" in proc.stderr
    failed = last_run(project)["steps"][0]
    assert failed["status"] == "failed"
    assert "assert_no_customer_is_named_zz" in failed["error"]
