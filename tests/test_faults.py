"""kill -9 in the middle of a sync — of the tap, of the target, of elt itself — then a rerun: the
destination holds exactly the source rows, and the run history shows the run that died."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import BIN, run_elt

TOTAL = 200_000


def write_events(path: Path, count: int) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "updated_at", "amount", "note"])
        for i in range(1, count + 1):
            writer.writerow([i, (base + timedelta(seconds=i)).isoformat(), i * 1.5, f"event {i}"])


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "events.csv"
    write_events(path, TOTAL)
    return path


def partial_state(db: Path) -> dict | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        try:
            row = conn.execute("select partial from state").fetchone()
        except sqlite3.OperationalError:  # the run has not created its tables yet
            return None
    return json.loads(row[0]) if row and row[0] else None


def start_sync(
    project: Path, env: dict[str, str], tap: str, target: str
) -> tuple[subprocess.Popen[str], Path]:
    """Start `elt sync TAP TARGET` and return once its state holds a durable point (or it ended);
    the process and the path of its system database."""
    sync = subprocess.Popen(
        [str(BIN / "elt"), "sync", tap, target, "--format", "json"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = project / ".elt" / "elt.db"
    deadline = time.monotonic() + 120
    while partial_state(db) is None and sync.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return sync, db


def pids_of(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


@pytest.mark.parametrize(
    ("victim", "fast_path"),
    [("target", "parquet"), ("target", "0"), ("tap", "0"), ("elt", "parquet"), ("elt", "1")],
    ids=[
        "target-parquet-path",
        "target-record-path",
        "tap-record-path",
        "elt-parquet-path",
        "elt-in-process-path",
    ],
)
def test_kill_9_mid_sync_then_rerun_loads_every_row_exactly_once(
    victim: str, fast_path: str, events_file: Path, tmp_path: Path
) -> None:
    """On the Parquet path the tap writes all its files in a moment, so a tap killed mid-stream is
    only possible (and tested) on the record path. On the in-process path (the default for built-in
    pairs) tap and target run inside elt: killing elt kills both mid-batch."""
    batch = 2000 if fast_path == "1" else 10000  # smaller commits: the kill lands mid-sync
    (tmp_path / "events.csv").symlink_to(events_file)
    (tmp_path / "elt.yml").write_text(
        "version: 1\n"
        "state_backend: {lock_timeout_seconds: 3}\n"
        "plugins:\n  extractors:\n    - name: tap-files\n      config:\n"
        "        files: [{entity: events, path: events.csv, keys: [id], replication_key: id}]\n"
        "  loaders:\n    - name: target-duckdb\n"
        f"      config: {{path: .elt/warehouse.duckdb, batch_size_rows: {batch}, load_method: upsert}}\n"
    )
    env = {**os.environ, "ELT_FAST_PATH": fast_path}
    env.pop("ELT_ENVIRONMENT", None)
    sync, db = start_sync(tmp_path, env, "tap-files", "target-duckdb")
    assert partial_state(db) is not None, "the target never reported a durable point"

    if victim == "elt":
        os.kill(sync.pid, signal.SIGKILL)
    else:
        pids = pids_of(f"{tmp_path}/.elt/run/.*{victim}.config.json")
        assert pids, f"{victim} process not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    _, stderr = sync.communicate(timeout=90)
    if victim == "elt":
        assert sync.returncode == -signal.SIGKILL
        # the connectors die with elt instead of running on unattended
        deadline = time.monotonic() + 30
        while pids_of(f"{tmp_path}/.elt/run/") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pids_of(f"{tmp_path}/.elt/run/")
        history = json.loads(run_elt("runs", "--format", "json", cwd=tmp_path).stdout)
        assert history[0]["status"] == "died"
        assert "ended without finishing the run" in history[0]["error"]
    else:
        assert sync.returncode == 1
        assert "tap-files failed" in stderr or "target-duckdb failed" in stderr
        assert "killed by SIGKILL" in stderr

    kept = partial_state(db)
    assert kept is not None
    bookmark = kept["bookmarks"]["events"]["replication_key_value"]
    with duckdb.connect(str(tmp_path / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        loaded_max = con.execute("select max(id) from tap_files.events").fetchone()[0]
    assert bookmark <= loaded_max < TOTAL  # state never claims more than what is durable

    rerun = run_elt(
        "sync", "tap-files", "target-duckdb", "--wait", "--format", "json", cwd=tmp_path, env=env
    )  # fmt: skip
    resumed = json.loads(rerun.stdout)["rows"]
    assert 0 < resumed < TOTAL  # it resumed instead of starting over
    with duckdb.connect(str(tmp_path / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        rows, keys, low, high = con.execute(
            "select count(*), count(distinct id), min(id), max(id) from tap_files.events"
        ).fetchone()
    assert (rows, keys, low, high) == (TOTAL, TOTAL, 1, TOTAL)


def test_kill_9_of_an_in_process_postgres_sync_then_rerun_loads_every_row_exactly_once(
    db: Any, pg_schema: str, tmp_path: Path
) -> None:
    """tap-postgres → target-postgres in elt's process (the default fast path), killed mid-sync."""
    total = 300_000
    db(
        "CREATE TABLE {schema}.events (id bigint PRIMARY KEY, amount numeric(12,2), at timestamptz)",
        f"INSERT INTO {{schema}}.events SELECT g, g / 100.0, timestamptz '2024-01-01' + g * interval '1 s' "
        f"FROM generate_series(1, {total}) g",
    )
    stream = f"{pg_schema}-events"
    target_schema = f"{pg_schema}_out"
    (tmp_path / "elt.yml").write_text(
        "version: 1\n"
        "state_backend: {lock_timeout_seconds: 3}\n"
        "plugins:\n  extractors:\n    - name: tap-postgres\n"
        f"      config: {{host: 127.0.0.1, user: postgres, database: test, filter_schemas: [{pg_schema}]}}\n"
        f"      select: ['{stream}.*']\n"
        f"      metadata: {{'{stream}': {{replication-method: INCREMENTAL, replication-key: id}}}}\n"
        "  loaders:\n    - name: target-postgres\n"
        "      config: {host: 127.0.0.1, user: postgres, database: test, batch_size_rows: 5000,"
        f" default_target_schema: {target_schema}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ELT_ENVIRONMENT", "ELT_FAST_PATH")}
    sync, state_db = start_sync(tmp_path, env, "tap-postgres", "target-postgres")
    try:
        assert sync.poll() is None, "the sync ended before it could be killed"
        os.kill(sync.pid, signal.SIGKILL)
        _, stderr = sync.communicate(timeout=60)
        assert "in one process" in stderr
        kept = partial_state(state_db)
        assert kept is not None
        bookmark = kept["bookmarks"][stream]["replication_key_value"]
        loaded = db(f"SELECT count(*), max(id) FROM {target_schema}.{pg_schema}_events")[0]
        assert bookmark <= loaded[1] < total  # the state claims no more than what was committed

        rerun = run_elt("sync", "tap-postgres", "target-postgres", "--wait", "--format", "json", cwd=tmp_path)
        assert 0 < json.loads(rerun.stdout)["rows"] < total  # resumed from the bookmark
        assert db(
            f"SELECT count(*), count(DISTINCT id), min(id), max(id), sum(amount) "
            f"FROM {target_schema}.{pg_schema}_events"
        ) == [(total, total, 1, total, sum(range(1, total + 1)) / Decimal(100))]
    finally:
        if sync.poll() is None:
            sync.kill()
        db(f"DROP SCHEMA IF EXISTS {target_schema} CASCADE")
