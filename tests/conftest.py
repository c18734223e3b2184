"""Shared fixtures: real project folders, the real CLI, the local PostgreSQL server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[[str], Path]:
    """Write an elt.yml (dedented) into a fresh folder and return the folder."""

    def write(text: str, name: str = "elt.yml") -> Path:
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return tmp_path

    return write


def run_elt(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `elt` executable as a user would; fail the test with its output if asked."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ELT_ENVIRONMENT", None)
    proc = subprocess.run(
        [str(BIN / "elt"), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"elt {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def sample_project(tmp_path: Path) -> Path:
    """A copy of the repository's sample project with small generated data."""
    from elt.scaffold import create_project

    project = tmp_path / "shop"
    create_project(project)
    return project


# Connectors from PyPI that the tests install once per session (tests/test_pypi_connectors.py and
# tests/test_meltano_project.py share them).
PIP_URLS = {
    "target-jsonl": "target-jsonl>=0.1.4",
    "target-postgres": "meltanolabs-target-postgres>=0.8",
    "tap-postgres": "meltanolabs-tap-postgres>=0.10",
}
PLUGIN_TYPES = {"target-jsonl": "loaders", "target-postgres": "loaders", "tap-postgres": "extractors"}
NETWORK_ERRORS = ("Failed to fetch", "error sending request", "dns error", "Connection refused", "timed out")


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose `.elt/plugins` holds the three PyPI connectors, installed once per session."""
    root = tmp_path_factory.mktemp("pypi-connectors")
    declared: dict[str, list[dict[str, str]]] = {"extractors": [], "loaders": []}
    for name, pip_url in PIP_URLS.items():
        declared[PLUGIN_TYPES[name]].append({"name": name, "pip_url": pip_url})
    (root / "elt.yml").write_text(yaml.safe_dump({"version": 1, "plugins": declared}))
    proc = run_elt("install", "--format", "json", *PIP_URLS, cwd=root, check=False, timeout=600)
    if proc.returncode != 0 and not IN_CI and any(e in proc.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"PyPI is not reachable:\n{proc.stderr[-2000:]}")
    assert proc.returncode == 0, f"elt install failed:\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(proc.stdout)["plugins"]
    assert {r["name"]: r["status"] for r in results} == dict.fromkeys(PIP_URLS, "installed")
    return root / ".elt" / "plugins"


@pytest.fixture
def pg_schema(postgres_dsn: str) -> Iterator[str]:
    """A unique PostgreSQL schema name, dropped (with everything in it) after the test."""
    name = f"elt_test_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {name} cascade")


@contextmanager
def fresh_database(postgres_dsn: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped (connections and all) at the end."""
    name = f"elt_sys_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def system_db(postgres_dsn: str) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for a project's `system_db`, dropped after the test."""
    with fresh_database(postgres_dsn) as url:
        yield url


@pytest.fixture
def db(postgres_dsn: str, pg_schema: str) -> Iterator[Callable[..., list[Any]]]:
    """Run SQL in the test's own schema (`{schema}` in a statement is its name); rows of the last one."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {pg_schema}")

        def execute(*statements: str, params: Any = None) -> list[Any]:
            rows: list[Any] = []
            for statement in statements:
                cursor = conn.execute(statement.format(schema=pg_schema), params)
                rows = cursor.fetchall() if cursor.description else []
            return rows

        yield execute


def _postgres_up() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return True
    except Exception:
        return False


def _pg_ctlcluster(action: str) -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action],
            capture_output=True, check=False,
        )  # fmt: skip


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The local PostgreSQL server; started if it is down, with wal_level logical (LOG_BASED syncs
    need it; setting it takes a restart). Skipped without it, except in CI."""
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    if not _postgres_up():
        _pg_ctlcluster("start")
    if _postgres_up():
        with psycopg.connect(dsn, autocommit=True) as conn:
            logical = conn.execute("SHOW wal_level").fetchone() == ("logical",)
            if not logical:
                conn.execute("ALTER SYSTEM SET wal_level = logical")
        if not logical:
            _pg_ctlcluster("restart")
            deadline = time.monotonic() + 60
            while not _postgres_up() and time.monotonic() < deadline:
                time.sleep(0.5)
    if not _postgres_up():
        if IN_CI:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not answering (CI must not skip)")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering")
    return dsn
