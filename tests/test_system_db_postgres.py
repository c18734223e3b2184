"""The system database on PostgreSQL (`system_db: postgresql://…`): two project folders standing for two
machines share one run history, one state, one set of API tokens; a run started in one is cancelled from
the other; a run whose machine vanished shows as died; no SQLite file is written. Each test has a
database of its own on the local PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import BIN, run_elt

ELT_YML = """
version: 1
system_db: ${SHOP_SYSTEM_DB}
plugins:
  extractors:
    - name: tap-files
      config:
        files: [{entity: items, path: items.csv, keys: [id]}]
  loaders:
    - name: target-duckdb
      config: {path: warehouse.duckdb}
pipelines:
  load:
    steps:
      - {name: items, sync: tap-files target-duckdb}
      - {name: flaky, shell: "echo try >> tries.txt; [ $(wc -l < tries.txt) -ge 2 ]", needs: [items],
         retries: {count: 1, delay: 0.1}}
  long:
    steps:
      - {name: wait, shell: "echo waiting; sleep 59"}
      - {name: after, shell: echo after, needs: [wait]}
"""


@pytest.fixture
def machines(tmp_path: Path, system_db: str) -> tuple[Path, Path, dict[str, str]]:
    """Two folders with the same project, as on two machines, and the variables both run with."""
    first, second = tmp_path / "orchestrator", tmp_path / "elsewhere"
    first.mkdir()
    (first / "elt.yml").write_text(textwrap.dedent(ELT_YML).lstrip(), encoding="utf-8")
    (first / "items.csv").write_text("id,name\n" + "".join(f"{i},item {i}\n" for i in range(1, 43)))
    shutil.copytree(first, second)
    return first, second, {"SHOP_SYSTEM_DB": system_db}


def elt_json(*args: str, cwd: Path, env: dict[str, str]) -> object:
    return json.loads(run_elt(*args, "--format", "json", cwd=cwd, env=env).stdout)


def test_two_machines_share_one_history_state_and_tokens(
    machines: tuple[Path, Path, dict[str, str]], system_db: str
) -> None:
    first, second, env = machines
    run = run_elt("run", "load", "--format", "json", cwd=first, env=env)
    run_id = json.loads(run.stdout)["run_id"]

    listed = elt_json("runs", "list", cwd=second, env=env)
    assert isinstance(listed, list) and [r["run_id"] for r in listed] == [run_id]
    shown = elt_json("runs", "show", run_id[:15], cwd=second, env=env)
    assert isinstance(shown, dict) and shown["status"] == "success"
    steps = {s["name"]: s for s in shown["steps"]}
    assert steps["items"]["rows"] == 42 and steps["items"]["summary"]["streams"] == {"items": {"rows": 42}}
    assert [a["status"] for a in steps["flaky"]["attempt_records"]] == ["failed", "success"]
    logs = run_elt("runs", "logs", run_id, "--step", "flaky", cwd=first, env=env).stdout
    assert "flaky · attempt 2 · success" in logs
    # the sync's bookmark is in the same database, so the other machine resumes from it
    states = elt_json("state", "list", cwd=second, env=env)
    assert isinstance(states, list)
    assert [s["state_id"] for s in states] == ["default:tap-files-to-target-duckdb"]
    with psycopg.connect(system_db) as conn:
        assert conn.execute("SELECT count(*) FROM elt_system.elt_state").fetchone() == (1,)
    token = run_elt("tokens", "create", "--role", "viewer", "--name", "ci", cwd=first, env=env).stdout.strip()
    tokens = run_elt("tokens", "list", cwd=second, env=env).stdout
    assert token.split("_")[1] in tokens and "ci" in tokens
    # nothing of it in SQLite, on either machine
    assert not (first / ".elt" / "elt.db").exists() and not (second / ".elt" / "elt.db").exists()
    with psycopg.connect(system_db) as conn:
        listed = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'elt_system'"
        tables = {r[0] for r in conn.execute(listed)}
    assert {"runs", "steps", "attempts", "api_tokens", "schedule_slots", "api_audit", "elt_state"} <= tables
    assert "state" not in tables  # SQLite's state table: the state is the PostgreSQL backend's here


def test_a_run_is_cancelled_from_another_machine_and_a_vanished_one_shows_died(
    machines: tuple[Path, Path, dict[str, str]], system_db: str
) -> None:
    first, second, env = machines
    elt = subprocess.Popen([str(BIN / "elt"), "run", "long", "--format", "json"], cwd=first,
                           env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        listed = elt_json("runs", "list", cwd=second, env=env)
        assert isinstance(listed, list)
        running = [r for r in listed if r["status"] == "running"]
        if running and any(s["name"] == "wait" and s["status"] == "running" for s in running[0]["steps"]):
            break
        assert elt.poll() is None and time.monotonic() < deadline, elt.communicate()
        time.sleep(0.2)
    run_id = running[0]["run_id"]
    cancelled = run_elt("runs", "cancel", run_id, cwd=second, env=env)
    assert f"run {run_id}: cancelled (cancelled by " in cancelled.stdout
    out, _ = elt.communicate(timeout=30)
    assert elt.returncode == 1 and json.loads(out)["status"] == "cancelled"

    # a run whose machine vanished mid-run: still `running`, its heartbeat old, its host gone
    with psycopg.connect(system_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE elt_system.runs SET status = 'running', host = 'pod-that-is-gone', pid = 1, "
            "heartbeat_at = '2026-01-01T00:00:00.000+00:00', ended_at = NULL WHERE run_id = %s",
            (run_id,),
        )
    shown = elt_json("runs", "show", run_id, cwd=second, env=env)
    assert isinstance(shown, dict) and shown["status"] == "died"
    assert "no heartbeat from the elt process (pid 1 on pod-that-is-gone)" in shown["error"]


def test_a_system_db_that_is_not_postgres_or_cannot_be_reached_is_a_clear_error(
    machines: tuple[Path, Path, dict[str, str]], system_db: str, postgres_dsn: str
) -> None:
    first, _, _ = machines
    wrong = run_elt("runs", cwd=first, env={"SHOP_SYSTEM_DB": "mysql://root@127.0.0.1/elt"}, check=False)
    assert wrong.returncode == 2
    assert "elt.yml:2: system_db: expected a postgresql:// URL" in wrong.stderr
    gone = "postgresql://postgres:hunter2-secret@127.0.0.1:1/nowhere"
    unreachable = run_elt("runs", cwd=first, env={"SHOP_SYSTEM_DB": gone}, check=False)
    assert unreachable.returncode != 0
    assert "the system database postgresql://postgres:****@127.0.0.1:1/nowhere could not be opened" in (
        unreachable.stderr
    )
    assert "hunter2-secret" not in unreachable.stderr + unreachable.stdout
    # a user that may not create the schema elt_system: told so, with what to do
    role = f"elt_reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        as_reader = system_db.replace("postgresql://postgres@", f"postgresql://{role}@")
        refused = run_elt("runs", cwd=first, env={"SHOP_SYSTEM_DB": as_reader}, check=False)
        assert refused.returncode == 2
        assert "the schema elt_system could not be made ready: permission denied" in refused.stderr
        assert "the user needs CREATE on the database" in refused.stderr
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
