"""The celery executor with real workers (`elt worker` subprocesses) on the local RabbitMQ and Redis:
the sample pipeline gives the results of a local run, steps go to the queues they name, and a worker
killed with SIGKILL mid-step is survived with the step done once, the run history showing the attempt
that died. (tests/test_orchestrator.py runs the whole orchestrator suite on workers as well.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import BIN, run_elt
from tests.pg_sources import create_orders, orders_digest
from tests.test_partitions import DSN, project_file
from tests.workers import cluster


def run_json(project: Path, pipeline: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = run_elt("run", pipeline, "--format", "json", cwd=project, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def history(project: Path, run_id: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(
        run_elt("runs", "show", run_id, "--format", "json", cwd=project, env=env).stdout
    )
    return shown


LOAD_TIMES = ("_sdc", "_elt", "synced_at", "dbt_invocation_id")


def _rounded(value: Any) -> Any:
    return float(f"{value:.9g}") if isinstance(value, float) else value


def warehouse_tables(project: Path) -> dict[str, tuple[int, str]]:
    """Every table of the sample's warehouse: its rows and a digest of their sorted values, without the
    times and ids of the load (`_sdc_*`, `_elt_synced_at`, `synced_at`, `dbt_invocation_id`)."""
    tables = {}
    with duckdb.connect(str(project / ".elt" / "warehouse.duckdb"), read_only=True) as con:
        names = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema not in ('information_schema', 'pg_catalog') order by 1, 2"
        ).fetchall()
        for schema, table in names:
            result = con.execute(f'select * from "{schema}"."{table}"')
            keep = [i for i, d in enumerate(result.description) if not d[0].startswith(LOAD_TIMES)]
            # DuckDB's parallel sums of doubles may differ in their last bits from one run to the next
            rows = sorted(repr(tuple(_rounded(r[i]) for i in keep)) for r in result.fetchall())
            tables[f"{schema}.{table}"] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return tables


def test_the_sample_pipeline_on_two_workers_gives_the_local_results(
    sample_project: Path, tmp_path: Path
) -> None:
    local = sample_project
    distributed = tmp_path / "shop-on-workers"
    shutil.copytree(local, distributed)
    alone = run_json(local, "daily")
    with cluster("rabbitmq", tmp_path / "workers") as workers:
        # the sync goes to a queue only one worker serves; the rest to the default queue
        config = yaml.safe_load((distributed / "elt.yml").read_text())
        config["pipelines"]["daily"]["steps"][0]["queue"] = workers.queue("heavy")
        (distributed / "elt.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        syncs = workers.start("syncs", queues="heavy", concurrency=1)
        workers.start("models", concurrency=2)
        spread = run_json(distributed, "daily", env=workers.env)
        shown = history(distributed, spread["run_id"])
    # not on a terminal, a worker writes JSON lines only (no banner): its start, and each step it ran
    lines = [json.loads(line) for line in syncs.log.read_text().splitlines()]
    assert lines[0]["event"] == "worker_started" and lines[0]["worker"] == "syncs@test"
    ran = [(e["event"], e["step"], e.get("status")) for e in lines if e.get("run_id") == spread["run_id"]]
    assert ran == [("step_started", "load", None), ("step_ended", "load", "success")]

    assert alone["status"] == spread["status"] == "success"
    assert [(s["name"], s["status"], s["rows"]) for s in spread["steps"]] == [
        (s["name"], s["status"], s["rows"]) for s in alone["steps"]
    ]
    ran_on = {s["name"]: [a["worker"] for a in s["attempt_records"]] for s in shown["steps"]}
    assert ran_on == {"load": ["syncs@test"], "models": ["models@test"], "revenue": ["models@test"]}
    assert warehouse_tables(distributed) == warehouse_tables(local)
    export = Path("exports") / "daily_revenue.parquet"
    assert pq.read_table(distributed / export).equals(pq.read_table(local / export))
    # the logs of steps run on workers are where a local run puts them
    logs = run_elt("runs", "logs", spread["run_id"], "--step", "load", cwd=distributed).stdout
    assert "syncing tap-files" in logs


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_a_worker_killed_mid_step_is_survived_with_the_step_done_once(
    broker: str, write_project, tmp_path: Path
) -> None:
    project = write_project(
        """
        version: 1
        pipelines:
          once:
            steps:
              - name: slow
                # a side effect at the end only: the killed attempt never gets there
                shell: echo "$PPID" >> started.txt; sleep 2; echo done >> effects.txt
              - {name: after, shell: "echo after >> effects.txt", needs: [slow]}
        """
    )
    # Redis gives a dead worker's task to another one after the visibility timeout; RabbitMQ at once
    with cluster(broker, tmp_path / "workers", ELT_VISIBILITY_TIMEOUT="5") as workers:
        first = workers.start("first", concurrency=1)
        run = subprocess.Popen(
            [str(BIN / "elt"), "run", "once", "--format", "json"], cwd=project,
            env={**os.environ, **workers.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (project / "started.txt").is_file():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.1)
        first.kill()  # the worker and the step's process with it
        workers.start("second", concurrency=1)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out[-3000:] + err[-3000:]
    result = json.loads(out)
    assert (project / "effects.txt").read_text().splitlines() == ["done", "after"]
    assert len((project / "started.txt").read_text().splitlines()) == 2
    slow = next(s for s in history(project, result["run_id"])["steps"] if s["name"] == "slow")
    attempts = [(a["attempt"], a["status"], a["worker"]) for a in slow["attempt_records"]]
    assert attempts == [(1, "died", "first@test"), (2, "success", "second@test")]
    assert "first@test was lost" in slow["attempt_records"][0]["error"]
    assert slow["status"] == "success" and slow["attempts"] == 2


def test_a_celery_environment_without_a_broker_is_refused_with_the_key(write_project) -> None:
    project = write_project(
        """
        version: 1
        environments:
          - {name: cluster, executor: {kind: celery}}
        pipelines:
          p: {steps: [{name: a, shell: "true"}]}
        """
    )
    for args in (("--environment", "cluster", "run", "p"), ("--environment", "cluster", "worker")):
        proc = run_elt(*args, cwd=project, check=False)
        assert proc.returncode != 0
        assert "executor" in proc.stderr and "needs 'broker_url'" in proc.stderr
    proc = run_elt("validate", cwd=project, check=False)
    assert proc.returncode != 0
    assert "elt.yml:3: key 'environments[0].executor': the celery executor needs 'broker_url'" in proc.stderr
    (project / "elt.yml").write_text("version: 1\n")
    proc = run_elt("worker", cwd=project, check=False)
    assert proc.returncode != 0 and "has no celery executor" in proc.stderr
    # RabbitMQ keeps no results: the run needs a place to follow its steps
    rabbit = {"ELT_EXECUTOR": "celery", "ELT_BROKER_URL": "amqp://guest:secret@127.0.0.1:5672//"}
    proc = run_elt("worker", cwd=project, env=rabbit, check=False)
    assert proc.returncode != 0 and "needs 'result_backend' (redis://HOST:6379/1)" in proc.stderr
    assert "secret" not in proc.stderr


def test_a_million_rows_in_partitions_on_two_workers_load_once_though_a_worker_is_killed_mid_load(
    write_project, db, pg_schema: str, tmp_path: Path
) -> None:
    create_orders(DSN, pg_schema, 1_000_000)
    project = write_project(project_file(pg_schema, "by: id, count: 8", parallel=8))
    with cluster("rabbitmq", tmp_path / "workers") as workers:
        doomed = workers.start("one", concurrency=1)
        workers.start("two", concurrency=1)
        run = subprocess.Popen(
            [str(BIN / "elt"), "run", "load", "--format", "json"], cwd=project,
            env={**os.environ, **workers.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # a partition load on worker one, well under way (its rows are being written), is killed
        deadline = time.monotonic() + 120
        while not running_partition_on(project, "one@test"):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.2)
        time.sleep(1.0)
        doomed.kill()
        workers.start("three", concurrency=1)
        out, err = run.communicate(timeout=600)
    assert run.returncode == 0, out[-3000:] + err[-3000:]

    assert orders_digest(DSN, pg_schema, f"{pg_schema}_orders") == orders_digest(DSN, pg_schema)
    assert db("SELECT count(*), sum(rows) FROM {schema}._elt_partitions") == [(8, 1_000_000)]
    steps = {s["name"]: s for s in history(project, json.loads(out)["run_id"])["steps"]}
    attempts = [a for name, s in steps.items() if name.startswith("orders[") for a in s["attempt_records"]]
    died = [a for a in attempts if a["status"] == "died"]
    assert len(died) == 1 and died[0]["worker"] == "one@test" and "was lost" in died[0]["error"]
    assert {a["worker"] for a in attempts if a["status"] == "success"} <= {
        "one@test",
        "two@test",
        "three@test",
    }
    assert steps["orders:commit"]["status"] == "success" and steps["after"]["status"] == "success"


def running_partition_on(project: Path, worker: str) -> bool:
    """Whether the run history shows a partition of `orders` running on `worker`."""
    database = project / ".elt" / "elt.db"
    if not database.is_file():
        return False
    with closing(sqlite3.connect(database, timeout=5)) as conn:
        try:
            found = conn.execute(
                "SELECT count(*) FROM attempts "
                "WHERE step LIKE 'orders[%' AND status = 'running' AND worker = ?",
                (worker,),
            ).fetchone()
        except sqlite3.OperationalError:  # the run has made the file, not yet its tables
            return False
    return bool(found and found[0])
