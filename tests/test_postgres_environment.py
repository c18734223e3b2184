"""The `postgres` environment renders a PostgreSQL profile and dbt builds there for real."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg

from tests.conftest import REPO, run_elt


def test_build_in_postgres_environment_creates_tables_in_postgres(tmp_path: Path, postgres_dsn: str) -> None:
    schema = f"elt_test_{uuid.uuid4().hex[:8]}"
    (tmp_path / "models" / "models").mkdir(parents=True)
    (tmp_path / "models" / "dbt_project.yml").write_text(
        "name: tiny\nversion: '1.0'\nprofile: elt\nmodel-paths: [models]\n"
        "models:\n  tiny:\n    +materialized: table\n"
    )
    (tmp_path / "models" / "models" / "answer.sql").write_text(
        "select 42 as answer, current_database() as db\n"
    )
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "elt.yml").write_text(
        "version: 1\ndefault_environment: dev\nplugins:\n  utilities:\n    - name: dbt\n"
        "      config: {project_dir: models, profiles_dir: profiles}\n"
        "environments:\n  - name: dev\n  - name: postgres\n    config:\n      plugins:\n"
        "        utilities:\n          - name: dbt\n"
        f"            config: {{target: postgres, host: 127.0.0.1, user: postgres, dbname: test, "
        f"schema: {schema}}}\n"
    )
    try:
        proc = run_elt("-e", "postgres", "build", cwd=tmp_path)
        assert "OK    model     answer" in proc.stdout
        with psycopg.connect(postgres_dsn) as conn:
            row = conn.execute(f"select answer, db from {schema}.answer").fetchone()
        assert row == (42, "test")
        assert not (tmp_path / ".elt" / "warehouse.duckdb").exists()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"drop schema if exists {schema} cascade")
