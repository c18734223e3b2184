"""A Meltano project — only a meltano.yml, with PyPI connectors, environments, a job and a schedule —
runs unchanged with elt, and its Meltano state, imported, makes the first elt run resume incrementally."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PIP_URLS, run_elt

START = datetime(2024, 1, 1, tzinfo=UTC)


def meltano_yml(schema: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        default_environment: dev
        project_id: 6c1f9e2a-3d0b-4b8e-9f7e-2f3a1c0d5e4b
        send_anonymous_usage_stats: false
        plugins:
          extractors:
          - name: tap-postgres
            variant: meltanolabs
            pip_url: {PIP_URLS["tap-postgres"]}
            config:
              host: 127.0.0.1
              port: 5432
              user: postgres
              database: test
              filter_schemas: [{schema}]
            select:
            - {schema}-orders.*
            - '!{schema}-orders.internal_note'
            metadata:
              {schema}-orders:
                replication-method: INCREMENTAL
                replication-key: updated_at
          loaders:
          - name: target-postgres
            variant: meltanolabs
            pip_url: {PIP_URLS["target-postgres"]}
            config:
              host: 127.0.0.1
              port: 5432
              user: postgres
              database: test
              default_target_schema: {schema}_raw
          - name: target-jsonl
            variant: andyh1203
            pip_url: {PIP_URLS["target-jsonl"]}
            config:
              destination_path: output
              do_timestamp_file: false
        environments:
        - name: dev
        - name: prod
          config:
            plugins:
              loaders:
              - name: target-postgres
                config:
                  default_target_schema: {schema}_prod
        jobs:
        - name: load-orders
          tasks:
          - tap-postgres target-postgres
        schedules:
        - name: daily-orders
          interval: '@daily'
          job: load-orders
        """
    )


def insert_orders(conn: psycopg.Connection, schema: str, ids: range) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            f"insert into {schema}.orders values (%s, %s, %s, %s)",
            [(i, START + timedelta(minutes=i), round(i * 2.5, 2), f"secret note {i}") for i in ids],
        )


@pytest.fixture
def meltano_project(tmp_path: Path, installed: Path, postgres_dsn: str, pg_schema: str) -> Path:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"create schema {pg_schema}")
        conn.execute(
            f"create table {pg_schema}.orders (id integer primary key, updated_at timestamptz not null, "
            "amount numeric(12, 2), internal_note text)"
        )
        insert_orders(conn, pg_schema, range(1, 1001))
    (tmp_path / "meltano.yml").write_text(meltano_yml(pg_schema))
    # Meltano's way of keeping secrets out of meltano.yml: settings as <PLUGIN>_<SETTING> in .env
    (tmp_path / ".env").write_text("TAP_POSTGRES_PASSWORD=unused-with-trust\nTARGET_POSTGRES_PASSWORD=x\n")
    (tmp_path / ".elt").mkdir()
    (tmp_path / ".elt" / "plugins").symlink_to(installed)
    yield tmp_path
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for suffix in ("_raw", "_prod"):
            conn.execute(f"drop schema if exists {pg_schema}{suffix} cascade")


def loaded(postgres_dsn: str, schema: str) -> tuple[int, int, int, int]:
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute(
            f"select count(*), count(distinct id), min(id), max(id) from {schema}.orders"
        ).fetchone()
    assert row is not None
    return tuple(row)  # type: ignore[return-value]


def test_meltano_project_runs_unchanged_and_resumes_from_meltano_state(
    meltano_project: Path, postgres_dsn: str, pg_schema: str
) -> None:
    project = meltano_project
    assert "meltano.yml is valid" in run_elt("validate", cwd=project).stdout
    installed = json.loads(run_elt("install", "--format", "json", cwd=project).stdout)
    assert {p["name"]: p["status"] for p in installed["plugins"]} == dict.fromkeys(PIP_URLS, "unchanged")

    listing = run_elt("select", "tap-postgres", "--list", cwd=project).stdout
    assert f"[selected ] {pg_schema}-orders.amount" in listing
    assert f"{pg_schema}-orders.internal_note" not in listing

    # What `meltano state get dev:tap-postgres-to-target-postgres` printed after Meltano loaded ids 1-600
    bookmark = (START + timedelta(minutes=600)).isoformat()
    meltano_state = {
        "singer_state": {
            "bookmarks": {
                f"{pg_schema}-orders": {"replication_key": "updated_at", "replication_key_value": bookmark}
            }
        }
    }
    (project / "state.json").write_text(json.dumps(meltano_state))
    run_elt(
        "state", "import", "--from-meltano", "state.json",
        "--state-id", "dev:tap-postgres-to-target-postgres", cwd=project,
    )  # fmt: skip

    first = json.loads(run_elt("run", "load-orders", "--format", "json", cwd=project).stdout)
    assert first["steps"][0]["summary"]["streams"] == {f"{pg_schema}-orders": {"rows": 401}}  # 600..1000
    assert loaded(postgres_dsn, f"{pg_schema}_raw") == (401, 401, 600, 1000)

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        insert_orders(conn, pg_schema, range(1001, 1051))
    second = json.loads(run_elt("run", "load-orders", "--format", "json", cwd=project).stdout)
    assert second["steps"][0]["summary"]["streams"] == {f"{pg_schema}-orders": {"rows": 51}}
    assert loaded(postgres_dsn, f"{pg_schema}_raw") == (451, 451, 600, 1050)
    with psycopg.connect(postgres_dsn) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s",
                (f"{pg_schema}_raw",),
            ).fetchall()
        }
    assert "internal_note" not in columns and "amount" in columns

    # The prod environment writes elsewhere, with a state of its own (a full first run).
    prod = json.loads(run_elt("-e", "prod", "run", "load-orders", "--format", "json", cwd=project).stdout)
    assert prod["steps"][0]["summary"]["state_id"] == "prod:tap-postgres-to-target-postgres"
    assert loaded(postgres_dsn, f"{pg_schema}_prod") == (1050, 1050, 1, 1050)

    # Blocks work as with `meltano run`.
    run_elt("run", "tap-postgres", "target-jsonl", cwd=project)
    lines = (project / "output" / f"{pg_schema}-orders.jsonl").read_text().splitlines()
    assert len(lines) == 1050 and len({json.loads(line)["id"] for line in lines}) == 1050
