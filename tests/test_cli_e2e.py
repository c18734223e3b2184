"""End to end through the `elt` executable: real connectors, real DuckDB, real dbt."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest

from elt.sample import append_orders
from tests.conftest import run_elt

RAW_TABLES = {
    "customers": ("customers.csv", "customer_id"),
    "products": ("products.csv", "product_id"),
    "orders": ("orders.csv", "order_id"),
    "order_items": ("order_items.csv", "order_item_id"),
    "payments": ("payments.jsonl", "payment_id"),
}


def file_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if path.suffix == ".csv" else lines


def warehouse(project: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True)


def assert_raw_tables_match_files(project: Path) -> None:
    with warehouse(project) as db:
        for table, (file, key) in RAW_TABLES.items():
            expected = file_rows(project / "data" / file)
            rows, keys = db.execute(
                f"select count(*), count(distinct {key}) from tap_files.{table}"
            ).fetchone()
            assert (rows, keys) == (expected, expected), table


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    from elt.scaffold import create_project

    project = tmp_path_factory.mktemp("demo") / "shop"
    create_project(project)
    return project, run_elt("run", "demo", cwd=project)


def test_demo_pipeline_loads_every_row_and_builds_the_models(demo) -> None:
    project, proc = demo
    assert "tap-files → target-duckdb:" in proc.stdout
    assert "✔ demo: 2 step(s) succeeded" in proc.stdout
    assert_raw_tables_match_files(project)
    with warehouse(project) as db:
        types = dict(
            db.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'tap_files' and table_name = 'orders'"
            ).fetchall()
        )
        orders = db.execute("select count(*) from analytics.fct_orders").fetchone()
    assert types["order_id"] == "BIGINT"
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["_elt_loaded_at"] == types["_elt_synced_at"] == "TIMESTAMP WITH TIME ZONE"
    assert orders == (file_rows(project / "data" / "orders.csv"),)


def test_second_sync_loads_zero_rows(demo) -> None:
    project, _ = demo
    proc = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=project)
    result = json.loads(proc.stdout)
    assert result["state_id"] == "dev:tap-files-to-target-duckdb"
    assert result["rows"] == 0
    assert set(result["streams"]) == set(RAW_TABLES)
    assert all(s == {"rows": 0} for s in result["streams"].values())
    text = run_elt("sync", "tap-files", "target-duckdb", cwd=project).stdout
    assert "0 new rows, every stream is up to date" in text


def test_appended_rows_are_the_only_ones_loaded(demo) -> None:
    project, _ = demo
    items_before = file_rows(project / "data" / "order_items.csv")
    payments_before = file_rows(project / "data" / "payments.jsonl")
    append_orders(project / "data", 25)
    proc = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=project)
    streams = json.loads(proc.stdout)["streams"]
    assert streams["orders"] == {"rows": 25}
    assert streams["order_items"]["rows"] == file_rows(project / "data" / "order_items.csv") - items_before
    assert streams["payments"]["rows"] == file_rows(project / "data" / "payments.jsonl") - payments_before
    assert streams["customers"] == streams["products"] == {"rows": 0}
    assert_raw_tables_match_files(project)


def test_full_refresh_reads_everything_without_duplicates(demo) -> None:
    project, _ = demo
    proc = run_elt("sync", "tap-files", "target-duckdb", "--full-refresh", "--format", "json", cwd=project)
    result = json.loads(proc.stdout)
    assert result["rows"] == sum(file_rows(project / "data" / f) for f, _ in RAW_TABLES.values())
    assert_raw_tables_match_files(project)
    one = run_elt(
        "sync", "tap-files", "target-duckdb", "--full-refresh", "--select", "products",
        "--format", "json", cwd=project,
    )  # fmt: skip
    assert json.loads(one.stdout)["streams"] == {
        "products": {"rows": file_rows(project / "data" / "products.csv")}
    }
    again = run_elt("sync", "tap-files", "target-duckdb", "--format", "json", cwd=project)
    assert json.loads(again.stdout)["rows"] == 0


def test_state_commands(demo) -> None:
    project, _ = demo
    listed = json.loads(run_elt("state", "list", "--format", "json", cwd=project).stdout)
    assert [s["state_id"] for s in listed] == ["dev:tap-files-to-target-duckdb"]
    state = json.loads(
        run_elt("state", "get", "dev:tap-files-to-target-duckdb", "--format", "json", cwd=project).stdout
    )
    assert set(state["bookmarks"]) == set(RAW_TABLES)
    run_elt("state", "set", "dev:copy", json.dumps(state), cwd=project)
    run_elt("state", "clear", "dev:copy", "--stream", "orders", cwd=project)
    copy = json.loads(run_elt("state", "get", "dev:copy", "--format", "json", cwd=project).stdout)
    assert set(copy["bookmarks"]) == set(RAW_TABLES) - {"orders"}
    run_elt("state", "clear", "dev:copy", cwd=project)
    missing = run_elt("state", "get", "dev:copy", cwd=project, check=False)
    assert missing.returncode == 2
    assert "no state for state id 'dev:copy'" in missing.stderr


def test_run_blocks_in_meltano_style(demo) -> None:
    """A sync after a dbt step in the same run can open the warehouse dbt used."""
    project, _ = demo
    proc = run_elt(
        "run", "tap-files", "target-duckdb", "dbt:run", "tap-files", "target-duckdb",
        "--format", "json", cwd=project,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert [(s["kind"], s["status"]) for s in result["steps"]] == [
        ("sync", "success"),
        ("dbt", "success"),
        ("sync", "success"),
    ]
    history = json.loads(run_elt("runs", "--format", "json", "--limit", "1", cwd=project).stdout)
    assert history[0]["run_id"] == result["run_id"]
    assert [s["status"] for s in history[0]["steps"]] == ["success", "success", "success"]


def test_failing_dbt_model_names_the_model_and_exits_1(demo) -> None:
    project, _ = demo
    broken = project / "models" / "models" / "broken_model.sql"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("select no_such_column from {{ ref('fct_orders') }}\n")
    try:
        proc = run_elt("build", "--select", "broken_model", cwd=project, check=False)
    finally:
        broken.unlink()
    assert proc.returncode == 1
    assert "model 'broken_model' error" in proc.stderr
    assert "broken_model.sql" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "elt.yml").write_text("version: 1\nplugins:\n  extractors:\n    - nmae: tap-files\n")
    proc = run_elt("sync", "tap-files", "target-duckdb", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "elt.yml:4: key 'plugins.extractors[0].nmae': unknown key" in proc.stderr
    assert "did you mean 'name'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    (tmp_path / "elt.yml").write_text("version: 1\n")
    proc = run_elt("sync", "tap-filez", "target-duckdb", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "unknown plugin 'tap-filez'" in proc.stderr and "did you mean 'tap-files'?" in proc.stderr


def test_missing_data_file_fails_the_run_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "elt.yml").write_text(
        "version: 1\nplugins:\n  extractors:\n    - name: tap-files\n      config:\n"
        "        files: [{entity: orders, path: nowhere/orders.csv}]\n"
    )
    proc = run_elt("sync", "tap-files", "target-duckdb", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "tap-files" in proc.stderr and "nowhere/orders.csv" in proc.stderr
    assert "Traceback" not in proc.stderr.split("Last lines")[0]


def test_elt_init_scaffolds_a_valid_project(tmp_path: Path) -> None:
    proc = run_elt("init", "new", cwd=tmp_path)
    assert "Created an elt project in new/" in proc.stdout
    for name in ("elt.yml", ".gitignore", ".env.example", "models/dbt_project.yml",
                 "profiles/profiles.yml", "data/orders.csv"):  # fmt: skip
        assert (tmp_path / "new" / name).is_file(), name
    assert "is valid" in run_elt("validate", cwd=tmp_path / "new").stdout
    again = run_elt("init", "new", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_dbt_steps_follow_the_syncs_their_sources_come_from(demo) -> None:
    """With a manifest (the demo built the models), a dbt step depends on the sync that loads its
    sources, wherever it is declared; one whose models read no synced schema does not; an export
    follows the dbt steps before it."""
    from elt.orchestrator.dag import build_graph, manifest_path
    from elt.orchestrator.model import load_pipeline
    from elt.project import load_project

    project_dir, _ = demo
    assert manifest_path(load_project(project_dir)) is not None
    text = (project_dir / "elt.yml").read_text()
    (project_dir / "elt.yml").write_text(
        text + "\n  ordered:\n    steps:\n"
        "      - {name: models, dbt: build --select marts}\n"
        "      - {name: other, sync: tap-files target-duckdb, full_refresh: true}\n"
        "      - {name: revenue, export: daily_revenue, to: csv, path: exports/r.csv}\n"
    )
    try:
        project = load_project(project_dir)
        graph = build_graph(project, load_pipeline(project, "ordered"))
    finally:
        (project_dir / "elt.yml").write_text(text)
    assert set(graph.edges) == {("other", "models"), ("models", "revenue")}
