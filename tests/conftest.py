"""Shared fixtures: real project folders, the real CLI, the local PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

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


def _postgres_up() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The local PostgreSQL server; started if it is down. Skipped without it, except in CI."""
    if not _postgres_up() and shutil.which("pg_ctlcluster"):
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if versions:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                capture_output=True, check=False,
            )  # fmt: skip
    if not _postgres_up():
        if IN_CI:
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not answering (CI must not skip)")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not answering")
    return "host=127.0.0.1 port=5432 user=postgres dbname=test"
