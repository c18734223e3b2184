"""Partitioned syncs (docs/partitions.md), through `elt run` and the attempt program on real PostgreSQL:
every row exactly once, bookmarks that advance only over loaded partitions, the ledger that refuses a
partition loaded before (a second run, a concurrent run, a redelivery after kill -9), date partitions,
and what `elt validate` says. Source tables come from tests/pg_sources.py (generate_series)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, run_elt
from tests.pg_sources import append_orders, create_orders, orders_digest

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
STATE_ID = "default:tap-postgres-to-target-postgres"


def project_file(
    schema: str, partition: str, *, loader: str = "", parallel: int = 4, after: bool = True
) -> str:
    """An elt.yml whose pipeline `load` syncs `<schema>-orders` in partitions into the same schema
    (table `<schema>_orders`), then (`after`) runs a step that needs it."""
    then = '- {name: after, shell: "echo done > after.txt", needs: [orders]}' if after else ""
    return textwrap.dedent(f"""
        version: 1
        plugins:
          extractors:
            - name: tap-postgres
              config: {{host: 127.0.0.1, user: postgres, database: test, filter_schemas: [{schema}]}}
          loaders:
            - name: target-postgres
              config: {{host: 127.0.0.1, user: postgres, database: test,
                        default_target_schema: {schema}{loader}}}
        pipelines:
          load:
            max_parallel: {parallel}
            steps:
              - name: orders
                sync: tap-postgres target-postgres
                partition: {{stream: {schema}-orders, {partition}}}
              {then}
        """).lstrip()  # fmt: skip


def run(project: Path, *args: str, code: int = 0) -> dict[str, dict[str, Any]]:
    proc = run_elt("run", "load", *args, "--format", "json", cwd=project, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return {step["name"]: step for step in json.loads(proc.stdout)["steps"]}


def shown(project: Path) -> dict[str, dict[str, Any]]:
    """The steps of the last run as `elt runs show` has them (outputs included)."""
    runs = json.loads(run_elt("runs", "list", "--format", "json", cwd=project).stdout)
    found = json.loads(run_elt("runs", "show", runs[0]["run_id"], "--format", "json", cwd=project).stdout)
    return {step["name"]: step for step in found["steps"]}


def state(project: Path) -> dict[str, Any]:
    proc = run_elt("state", "get", STATE_ID, cwd=project)
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


def ledger(db: Any) -> dict[str, int]:
    return dict(db("SELECT partition_id, rows FROM {schema}._elt_partitions"))


def instances(steps: dict[str, dict[str, Any]], name: str = "orders") -> list[dict[str, Any]]:
    return [s for n, s in sorted(steps.items()) if n.startswith(f"{name}[")]


def test_key_ranges_load_every_row_exactly_once(write_project, db, pg_schema) -> None:
    create_orders(DSN, pg_schema, 200_000)
    project = write_project(project_file(pg_schema, "by: id, count: 2", parallel=2))

    steps = run(project)

    assert [s["status"] for s in instances(steps)] == ["success", "success"]
    assert steps["orders"]["rows"] == 200_000
    assert orders_digest(DSN, pg_schema, f"{pg_schema}_orders") == orders_digest(DSN, pg_schema)
    assert sorted(ledger(db).values()) == [100_000, 100_000]  # [1, 100001) and [100001, 200001)
    stream = state(project)["bookmarks"][f"{pg_schema}-orders"]
    assert (stream["replication_key"], stream["replication_key_value"]) == ("id", 200_001)
    assert stream["partitions"]["pending"] == []
    assert steps["after"]["status"] == "success"  # `needs: [orders]` waited for the commit


def test_a_failed_partition_holds_the_bookmark_and_the_next_run_loads_the_rest_and_new_rows_once(
    write_project, db, pg_schema
) -> None:
    create_orders(DSN, pg_schema, 30_000, first=0)  # ids 0 … 29,999: partitions of 10,000 ids
    # the target table refuses order 15000: the partition [10000, 20000) fails, the others load
    db(
        "CREATE TABLE {schema}.{schema}_orders (id bigint PRIMARY KEY, customer_id integer, "
        "amount numeric(12,2), status text, created_at timestamptz, CHECK (id <> 15000))"
    )
    project = write_project(project_file(pg_schema, "by: id, size: 10000"))

    first = run(project, code=1)

    assert [s["status"] for s in instances(first)] == ["success", "failed", "success"]
    assert first["orders:commit"]["status"] == "failed"
    assert "1 of 3 partition(s)" in first["orders:commit"]["error"]
    assert first["after"]["status"] == "skipped"
    assert db("SELECT count(*) FROM {schema}.{schema}_orders") == [(20_000,)]
    stream = state(project)["bookmarks"][f"{pg_schema}-orders"]
    assert stream["replication_key_value"] == 10_000  # below the failed partition, not past the 3rd
    pending = [(p["lower"], p["upper"]) for p in stream["partitions"]["pending"]]
    assert pending == [(10_000, 20_000), (20_000, 30_000)]

    db("ALTER TABLE {schema}.{schema}_orders DROP CONSTRAINT {schema}_orders_id_check")
    append_orders(DSN, pg_schema, 30_000, 5_000)
    second = run(project, "--only", "orders")

    # the same two partitions (same ids), of which the one loaded before is skipped by the ledger,
    # then the new rows: nothing else is read again
    assert [s["summary"]["status"] for s in instances(second)] == ["loaded", "skipped", "loaded"]
    assert second["orders"]["rows"] == 10_000 + 5_000
    assert orders_digest(DSN, pg_schema, f"{pg_schema}_orders") == orders_digest(DSN, pg_schema)
    assert len(ledger(db)) == 4 and sum(ledger(db).values()) == 35_000
    assert state(project)["bookmarks"][f"{pg_schema}-orders"]["replication_key_value"] == 35_000
    assert "after" not in second  # --only orders: its plan, partitions and commit


def test_date_partitions_cut_at_each_day(write_project, db, pg_schema) -> None:
    # 20,000 orders 8 s apart from 2024-03-01 00:00 UTC: two days, nearly
    create_orders(DSN, pg_schema, 20_000, every=timedelta(seconds=8))
    project = write_project(project_file(pg_schema, "by: created_at, every: day", after=False))

    steps = run(project)

    plan = shown(project)["orders:plan"]["output"]["value"]
    assert [p["lower"] for p in plan] == ["2024-03-01T00:00:00+00:00", "2024-03-02T00:00:00+00:00"]
    last = db("SELECT max(created_at) FROM {schema}.orders")[0][0]
    assert plan[-1]["upper"] == (last + timedelta(microseconds=1)).isoformat()
    assert [s["rows"] for s in instances(steps)] == [10_800, 9_200]  # 86,400 s / 8 s a day
    assert orders_digest(DSN, pg_schema, f"{pg_schema}_orders") == orders_digest(DSN, pg_schema)
    stream = state(project)["bookmarks"][f"{pg_schema}-orders"]
    assert (stream["replication_key"], stream["replication_key_value"]) == ("created_at", plan[-1]["upper"])


def attempt(project: Path, step: str, kind: str, schema: str, item: Any = None) -> subprocess.Popen[bytes]:
    """Start one attempt as the executor (or a worker) would: `python -m elt.orchestrator.attempt`."""
    request = {
        "project_dir": str(project), "environment": None, "run_id": "by-hand", "pipeline": "load",
        "step": step, "kind": kind, "spec": "tap-postgres target-postgres",
        "options": {"partition": {"stream": f"{schema}-orders", "by": "id", "count": 2}, "part_of": "orders"},
        "variables": {}, "upstream": {}, "earlier": {}, "item": item, "cache_expire": None, "no_cache": False,
        "result": str(project / f"{step}.result.json"),
    }  # fmt: skip
    path = project / f"{step}.request.json"
    path.write_text(json.dumps(request))
    log = (project / f"{step}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "elt.orchestrator.attempt", str(path)], cwd=project, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill a load still running (its process group), so that its open transaction ends."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def outcome(project: Path, step: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert proc.wait(timeout=120) == 0
    result: dict[str, Any] = json.loads((project / f"{step}.result.json").read_text())
    assert result["ok"], result.get("error", "") + (project / f"{step}.log").read_text()
    return result["output"]


def partition(schema: str, lower: int, upper: int) -> dict[str, Any]:
    """A partition of `<schema>-orders` as a plan would give it."""
    return {"id": f"orders/{schema}-orders/id/{lower}..{upper}@test", "stream": f"{schema}-orders",
            "column": "id", "lower": lower, "upper": upper}  # fmt: skip


def test_the_same_partition_run_twice_is_loaded_once(write_project, db, pg_schema) -> None:
    create_orders(DSN, pg_schema, 20_000)
    project = write_project(project_file(pg_schema, "by: id, count: 2"))
    first = partition(pg_schema, 1, 10_001)

    loaded = outcome(project, "orders[0]", attempt(project, "orders[0]", "partition", pg_schema, first))
    # delivered again (a retry, a worker's redelivery): the ledger answers before anything is read
    again = outcome(project, "orders[1]", attempt(project, "orders[1]", "partition", pg_schema, first))

    assert (loaded["value"]["status"], loaded["rows"]) == ("loaded", 10_000)
    assert (again["value"]["status"], again["rows"]) == ("skipped", 0)
    assert again["value"]["loaded_by"] == loaded["value"]["loaded_by"]
    assert db("SELECT count(*), count(DISTINCT id) FROM {schema}.{schema}_orders") == [(10_000, 10_000)]
    assert ledger(db) == {first["id"]: 10_000}


def test_a_partition_killed_mid_load_commits_nothing_and_its_redelivery_loads_it_whole(
    write_project, db, pg_schema, request: pytest.FixtureRequest
) -> None:
    create_orders(DSN, pg_schema, 60_000)
    # batches of 5,000 rows: the partition's transaction holds several before it commits
    project = write_project(project_file(pg_schema, "by: id, count: 1", loader=", batch_size_rows: 5000"))
    whole = partition(pg_schema, 1, 60_001)

    proc = attempt(project, "orders[0]", "partition", pg_schema, whole)
    request.addfinalizer(lambda: stop(proc))
    holding = (
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND l.mode = 'RowExclusiveLock' AND l.granted"
    )
    where = {"schema": pg_schema, "table": f"{pg_schema}_orders"}
    deadline = time.monotonic() + 60
    while db(holding, params=where) == [(0,)]:  # rows of the partition written, not committed
        assert proc.poll() is None and time.monotonic() < deadline, "the partition never started loading"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (project / "orders[0].result.json").exists()  # it died before it was done
    while db(holding, params=where) != [(0,)]:  # the server rolls the dead connection's work back
        time.sleep(0.05)

    assert db("SELECT count(*) FROM {schema}.{schema}_orders") == [(0,)]
    assert ledger(db) == {}

    redelivered = outcome(project, "orders[0]", attempt(project, "orders[0]", "partition", pg_schema, whole))
    assert redelivered["value"]["status"] == "loaded" and redelivered["rows"] == 60_000
    assert orders_digest(DSN, pg_schema, f"{pg_schema}_orders") == orders_digest(DSN, pg_schema)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{name: x, shell: 'true', partition: {stream: s, by: id, count: 2}}",
         "key 'pipelines.load.steps[2].partition': expected on a sync step only"),
        ("{name: x, sync: tap-postgres target-postgres, partition: {stream: s, by: id, size: 2, every: day}}",
         "expected exactly one of count, size or every, got size, every"),
        ("{name: x, sync: tap-postgres target-postgres, for_each: [1], partition: {stream: s, by: id}}",
         "expected no for_each on a partitioned sync"),
        ("{name: x, sync: tap-postgres target-postgres, partition: {stream: s, by: id, every: fortnight}}",
         "key 'pipelines.load.steps[2].partition.every': expected one of"),
    ],
)  # fmt: skip
def test_validate_explains_a_wrong_partition(write_project, step: str, message: str) -> None:
    text = project_file("s", "by: id, count: 2").replace("        \n", "")
    text = text.replace("needs: [orders]}\n", "needs: [orders]}\n      - " + step + "\n")
    project = write_project(text)
    proc = run_elt("validate", cwd=project, check=False)
    assert proc.returncode == 2 and message in proc.stderr + proc.stdout, proc.stderr


def test_partitions_need_a_built_in_postgres_tap_and_target(write_project, pg_schema) -> None:
    text = project_file(pg_schema, "by: id, count: 2").replace(
        "      - name: target-postgres\n", "      - name: target-duckdb\n        config: {path: w.duckdb}\n"
        "      - name: target-postgres\n",
    ).replace("sync: tap-postgres target-postgres", "sync: tap-postgres target-duckdb")  # fmt: skip
    project = write_project(text)
    steps = run(project, "--only", "orders:plan", code=1)
    assert steps["orders:plan"]["status"] == "failed"
    assert (
        "loader 'target-duckdb' cannot load partitions: DuckDB lets one process write"
        in (steps["orders:plan"]["error"])
    )


def test_ranges_are_half_open_cover_the_largest_value_and_cut_at_period_starts() -> None:
    from datetime import UTC, date, datetime

    from elt.partitions import PartitionSpec, split_range

    def spec(**cut: Any) -> PartitionSpec:
        return PartitionSpec("s", "c", **cut)

    assert split_range("integer", spec(count=3), None, 1, 10) == [(1, 5), (5, 9), (9, 11)]
    assert split_range("integer", spec(count=3), 100, 100, 100) == [(100, 101)]  # one new row
    assert split_range("integer", spec(size=10), 35, 35, 52) == [(35, 40), (40, 50), (50, 53)]
    assert split_range("integer", spec(count=4), None, None, None) == []  # no rows
    months = split_range("date", spec(every="month"), None, date(2024, 11, 20), date(2025, 1, 3))
    assert months == [(date(2024, 11, 1), date(2024, 12, 1)), (date(2024, 12, 1), date(2025, 1, 1)),
                      (date(2025, 1, 1), date(2025, 1, 4))]  # fmt: skip
    weeks = split_range("date", spec(every="week"), date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 12))
    assert weeks == [(date(2024, 3, 6), date(2024, 3, 11)), (date(2024, 3, 11), date(2024, 3, 13))]
    first, last = datetime(2024, 3, 1, 22, 30, tzinfo=UTC), datetime(2024, 3, 2, 0, 15, tzinfo=UTC)
    hours = split_range("timestamptz", spec(every="hour"), None, first, last)
    assert [lower.hour for lower, _ in hours] == [22, 23, 0]
    assert hours[-1][1] == last + timedelta(microseconds=1)


def test_two_loads_of_one_partition_at_once_cannot_both_commit(
    tmp_path: Path, db, pg_schema, request: pytest.FixtureRequest
) -> None:
    """target-postgres itself: the second load's ledger insert waits for the first one's transaction,
    then finds its row and drops its input; the first one's STATE waits for its commit."""
    config = {"host": "127.0.0.1", "user": "postgres", "database": "test", "default_target_schema": pg_schema,
              "batch_size_rows": 10, "partition": {"id": "p1", "stream": "orders"}}  # fmt: skip
    messages = [
        {"type": "SCHEMA", "stream": "orders", "schema": {"properties": {"id": {"type": "integer"}}},
         "key_properties": ["id"]},
        *({"type": "RECORD", "stream": "orders", "record": {"id": i}} for i in range(20)),
        {"type": "STATE", "value": {"done": True}},
    ]  # fmt: skip
    text = "".join(json.dumps(message) + "\n" for message in messages)

    def start(name: str) -> subprocess.Popen[str]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**config, "partition": {**config["partition"], "loaded_by": name}}))
        load = subprocess.Popen([str(BIN / "target-postgres"), "--config", str(path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        assert load.stdin is not None
        load.stdin.write(text)  # every message, but not the end of the input: it waits for more
        load.stdin.flush()
        return load

    def until(sql: str) -> None:
        deadline = time.monotonic() + 60
        while db(sql) == [(0,)]:
            assert time.monotonic() < deadline, sql
            time.sleep(0.02)

    first = start("first")
    request.addfinalizer(lambda: stop(first))  # a failed assertion must not leave its transaction open
    until("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n "
          "ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relname = 'orders' "
          "AND l.mode = 'RowExclusiveLock'")  # fmt: skip
    second = start("second")
    request.addfinalizer(lambda: stop(second))
    until("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
          "AND query LIKE 'INSERT INTO \"{schema}\".\"_elt_partitions\"%'")  # fmt: skip
    assert first.stdout is not None and first.stdin is not None and second.stdin is not None
    # both batches loaded, the STATE after them read: it waits for the partition's commit
    assert select.select([first.stdout], [], [], 0.5)[0] == []
    first.stdin.close()
    assert first.wait(timeout=60) == 0
    second.stdin.close()
    assert second.wait(timeout=60) == 0

    assert [json.loads(line) for line in first.stdout.read().splitlines()] == [{"done": True}]
    assert second.stderr is not None and "Partition p1 was loaded before" in second.stderr.read()
    assert db("SELECT count(*) FROM {schema}.orders") == [(20,)]
    assert db("SELECT partition_id, rows, loaded_by FROM {schema}._elt_partitions") == [("p1", 20, "first")]
