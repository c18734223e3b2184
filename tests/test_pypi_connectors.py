"""Real connectors from PyPI, installed by `elt install`, syncing incrementally through the real CLI.

The three packages are installed once per test session into one `.elt/plugins` folder; each test's
project links to it, so its own `elt install` finds them already installed.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import yaml

from tests.conftest import PIP_URLS, PLUGIN_TYPES, run_elt

START = datetime(2024, 1, 1, tzinfo=UTC)
# The connectors insist on a password; the local server trusts 127.0.0.1 and ignores it.
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "ignored-by-trust-auth",
            "database": "test"}  # fmt: skip


def write_project(root: Path, plugins: dict[str, dict[str, Any]]) -> Path:
    """elt.yml declaring the PyPI connectors (with `plugins[name]` merged into each) and the built-ins."""
    declared: dict[str, list[dict[str, Any]]] = {"extractors": [{"name": "tap-files"}], "loaders": []}
    for name, pip_url in PIP_URLS.items():
        declared[PLUGIN_TYPES[name]].append({"name": name, "pip_url": pip_url, **plugins.get(name, {})})
    declared["loaders"].append({"name": "target-duckdb", **plugins.get("target-duckdb", {})})
    declared["extractors"][0].update(plugins.get("tap-files", {}))
    (root / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": declared}, sort_keys=False))
    return root


@pytest.fixture
def project(tmp_path: Path, installed: Path) -> Path:
    """A fresh project folder that uses the session's installed connectors."""
    (tmp_path / ".elt").mkdir()
    (tmp_path / ".elt" / "plugins").symlink_to(installed)
    return tmp_path


def sync(project: Path, tap: str, target: str) -> dict[str, Any]:
    proc = run_elt("sync", tap, target, "--format", "json", cwd=project)
    return dict(json.loads(proc.stdout))


def write_customers(file: Path, ids: range, *, append: bool = False) -> None:
    with file.open("a" if append else "w", newline="") as handle:
        writer = csv.writer(handle)
        if not append:
            writer.writerow(["id", "name", "updated_at"])
        for i in ids:
            writer.writerow([i, f"customer {i}", (START + timedelta(minutes=i)).isoformat()])


def tap_files_customers(project: Path) -> dict[str, Any]:
    (project / "data").mkdir(exist_ok=True)
    write_customers(project / "data" / "customers.csv", range(1, 501))
    entry = {
        "entity": "customers",
        "path": "data/customers.csv",
        "keys": ["id"],
        "replication_key": "updated_at",
    }
    return {"config": {"files": [entry]}}


def test_installed_connectors_are_unchanged_for_a_project_using_them(project: Path) -> None:
    write_project(project, {})

    proc = run_elt("install", "--format", "json", cwd=project)

    statuses = {r["name"]: r["status"] for r in json.loads(proc.stdout)["plugins"]}
    assert statuses == {
        **dict.fromkeys(PIP_URLS, "unchanged"),
        "tap-files": "builtin",
        "target-duckdb": "builtin",
    }


def test_tap_files_to_target_jsonl_writes_every_row_once(project: Path) -> None:
    write_project(
        project,
        {
            "tap-files": tap_files_customers(project),
            "target-jsonl": {"config": {"destination_path": "out", "do_timestamp_file": False}},
        },
    )

    first = sync(project, "tap-files", "target-jsonl")
    second = sync(project, "tap-files", "target-jsonl")

    assert first["streams"] == {"customers": {"rows": 500}}
    assert second["rows"] == 0
    records = [json.loads(line) for line in (project / "out" / "customers.jsonl").read_text().splitlines()]
    assert len(records) == 500
    assert {r["id"] for r in records} == set(range(1, 501))
    assert records[0]["name"] == "customer 1"
    # target-jsonl prints the bare state object at the end: elt saved it as the bookmark
    state = json.loads(run_elt("state", "get", first["state_id"], cwd=project).stdout)
    assert state["bookmarks"]["customers"]["replication_key_value"].startswith("2024-01-01T08:20")


@pytest.mark.postgres
def test_tap_files_to_target_postgres_loads_only_new_rows_on_each_run(
    project: Path, postgres_dsn: str, pg_schema: str
) -> None:
    write_project(
        project,
        {
            "tap-files": tap_files_customers(project),
            "target-postgres": {
                "config": {**POSTGRES, "default_target_schema": pg_schema, "load_method": "upsert"}
            },
        },
    )

    first = sync(project, "tap-files", "target-postgres")
    second = sync(project, "tap-files", "target-postgres")
    write_customers(project / "data" / "customers.csv", range(501, 621), append=True)
    third = sync(project, "tap-files", "target-postgres")

    assert first["streams"] == {"customers": {"rows": 500}}
    assert second["rows"] == 0
    assert third["streams"] == {"customers": {"rows": 120}}
    with psycopg.connect(postgres_dsn) as conn:
        count, distinct, low, high = conn.execute(
            f"select count(*), count(distinct id), min(id), max(id) from {pg_schema}.customers"
        ).fetchone()  # type: ignore[misc]
        # rows the third run wrote: exactly the appended ones (an upsert would restamp any old row sent again)
        touched = conn.execute(
            f"select min(id), max(id), count(*) from {pg_schema}.customers where _sdc_batched_at > "
            f"(select max(_sdc_batched_at) from {pg_schema}.customers where id <= 500)"
        ).fetchone()
    assert (count, distinct, low, high) == (620, 620, 1, 620)
    assert touched == (501, 620, 120)


@pytest.mark.postgres
def test_tap_postgres_to_duckdb_moves_only_rows_at_or_after_the_bookmark(
    project: Path, postgres_dsn: str, pg_schema: str
) -> None:
    stream = f"{pg_schema}-items"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"create schema {pg_schema}")
        conn.execute(
            f"create table {pg_schema}.items (id integer primary key, updated_at timestamptz not null, "
            "price numeric(12, 2), shipped_at timestamptz, note text)"
        )
        insert_items(conn, pg_schema, range(1, 5001))
    write_project(
        project,
        {
            "tap-postgres": {
                "config": {**POSTGRES, "filter_schemas": [pg_schema]},
                "select": [f"{stream}.*"],
                "metadata": {stream: {"replication-method": "INCREMENTAL", "replication-key": "updated_at"}},
            },
            "target-duckdb": {"config": {"path": "w.duckdb"}},
        },
    )  # fmt: skip

    first = sync(project, "tap-postgres", "target-duckdb")
    second = sync(project, "tap-postgres", "target-duckdb")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        insert_items(conn, pg_schema, range(5001, 5301))
    third = sync(project, "tap-postgres", "target-duckdb")

    assert first["streams"] == {stream: {"rows": 5000}}
    # The tap reads `updated_at >= bookmark` (singer-sdk's inclusive bookmark): the last row comes again.
    assert second["streams"] == {stream: {"rows": 1}}
    assert third["streams"] == {stream: {"rows": 301}}
    with psycopg.connect(postgres_dsn) as conn:
        source = conn.execute(
            f"select id, extract(epoch from updated_at)::float8, price::float8, "
            f"extract(epoch from shipped_at)::float8, note from {pg_schema}.items order by id"
        ).fetchall()
    table = f"tap_postgres.{pg_schema}_items"
    with duckdb.connect(str(project / "w.duckdb"), read_only=True) as db:
        loaded = db.execute(
            f"select id, epoch(updated_at), price, epoch(shipped_at), note from {table} order by id"
        ).fetchall()
        distinct = db.execute(f"select count(distinct id) from {table}").fetchone()
    assert len(source) == 5300 and distinct == (5300,)
    assert loaded == source


def insert_items(conn: psycopg.Connection[Any], schema: str, ids: range) -> None:
    rows = [
        (
            i,
            START + timedelta(seconds=i),
            round(i * 1.25, 2),
            None if i % 7 == 0 else START + timedelta(days=1, seconds=i),
            None if i % 11 == 0 else f"item {i} — ünïcode",
        )
        for i in ids
    ]
    with conn.cursor() as cursor:
        cursor.executemany(f"insert into {schema}.items values (%s, %s, %s, %s, %s)", rows)


def test_pypi_plugins_run_from_their_own_venvs(installed: Path) -> None:
    for name, ptype in PLUGIN_TYPES.items():
        executable = installed / ptype / name / "venv" / "bin" / name
        assert executable.is_file() and os.access(executable, os.X_OK)
        record = json.loads((installed / ptype / name / "install.json").read_text())
        assert record["pip_url"] == PIP_URLS[name]
