"""A partitioned sync of `elt_bench.events` on Celery workers: 1 worker against 2, side by side.

    .venv/bin/python bench/workers_bench.py [--rows 1000000] [--partitions 8] [--broker redis|rabbitmq]

The table is BASELINE.md's (bench/events_table.py builds it if missing). One elt project syncs it with
the built-in tap-postgres into the built-in target-postgres (schema `elt_bench_partitioned`), split into
`--partitions` key ranges of `id`; for each setting the target schema and the state are dropped, the
workers started (`elt worker --concurrency 1` each, on a queue of their own) and `elt run` timed under
bench/measure.py, then the rows and distinct ids that arrived are counted. A `local` row (the same
pipeline with the local executor and `max_parallel` 2) and the unpartitioned sync are there to compare.

`make bench` runs this as the case `partitioned_workers` (bench/run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cases import PROJECT_BIN, failure_reason
from events_table import Postgres, ensure_events
from measure import run_measured

CASE = "partitioned_workers"
TITLE = "partitioned sync PostgreSQL → PostgreSQL on 1 and 2 Celery workers"
TARGET_SCHEMA = "elt_bench_partitioned"
BROKERS = {
    "redis": ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/1"),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "redis://127.0.0.1:6379/1"),
}


@dataclass(frozen=True)
class Setting:
    """One way of running the sync: `name` in the report, how many workers (0: the local executor)."""

    name: str
    workers: int
    partitioned: bool = True


SETTINGS = (
    Setting("unpartitioned", 0, partitioned=False),
    Setting("local, max_parallel 2", 0),
    Setting("1 worker", 1),
    Setting("2 workers", 2),
)


@dataclass
class Row:
    setting: str
    workers: int
    status: str = "failed"
    reason: str = ""
    seconds: float | None = None
    rows_per_s: float | None = None
    peak_rss_mb: float | None = None  # of `elt run` (the orchestrator), workers not included
    arrived: int | None = None
    distinct_ids: int | None = None
    partitions_by_worker: dict[str, int] = field(default_factory=dict)


def run_workers_bench(folder: Path, pg: Postgres, rows: int, partitions: int, broker: str) -> dict[str, Any]:
    """Run every setting once; the report's section (settings, speed-ups, what was checked)."""
    table = ensure_events(pg, rows)
    expected = table.rows
    results = []
    for setting in SETTINGS:
        project = write_project(
            folder / setting.name.split(",")[0].replace(" ", "-"), pg, setting, partitions
        )
        results.append(run_setting(project, pg, setting, expected, broker))
    by_name = {r.setting: r for r in results}
    one, two = by_name["1 worker"], by_name["2 workers"]
    speedup = one.seconds / two.seconds if one.seconds and two.seconds and two.status == "ok" else None
    return {
        "case": CASE,
        "title": TITLE,
        "rows": expected,
        "partitions": partitions,
        "broker": broker,
        "cores": os.cpu_count(),
        "settings": [asdict(r) for r in results],
        "speedup_2_over_1": round(speedup, 2) if speedup else None,
    }


def write_project(folder: Path, pg: Postgres, setting: Setting, partitions: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    step: dict[str, Any] = {"name": "events", "sync": "tap-postgres target-postgres"}
    if setting.partitioned:
        step["partition"] = {"stream": pg.stream, "by": "id", "count": partitions}
    target = {"host": pg.host, "port": pg.port, "user": pg.user, "password": pg.password,
              "database": pg.database, "default_target_schema": TARGET_SCHEMA}  # fmt: skip
    project = {
        "version": 1,
        "plugins": {
            "extractors": [{"name": "tap-postgres", "config": pg.tap_config()}],
            "loaders": [{"name": "target-postgres", "config": target}],
        },
        "pipelines": {
            "load": {"max_parallel": max(2, partitions) if setting.workers else 2, "steps": [step]}
        },
    }
    (folder / "elt.yml").write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return folder


def run_setting(project: Path, pg: Postgres, setting: Setting, expected: int, broker: str) -> Row:
    row = Row(setting.name, setting.workers)
    with pg.connect() as con:
        con.execute(f"DROP SCHEMA IF EXISTS {TARGET_SCHEMA} CASCADE")
    subprocess.run(["rm", "-rf", str(project / ".elt")], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELT_")}
    workers: list[subprocess.Popen[bytes]] = []
    if setting.workers:
        url, backend = BROKERS[broker]
        env |= {"ELT_EXECUTOR": "celery", "ELT_BROKER_URL": url, "ELT_RESULT_BACKEND": backend,
                "ELT_QUEUE": f"bench-{uuid.uuid4().hex[:8]}"}  # fmt: skip
        try:
            workers = [start_worker(project, env, f"w{i + 1}") for i in range(setting.workers)]
        except RuntimeError as exc:
            stop(workers)
            row.reason = str(exc)
            return row
    try:
        log = project / "run.log"
        m = run_measured([str(PROJECT_BIN / "elt"), "run", "load", "--format", "json"], log=log,
                         stdout=project / "run.json", env=env, cwd=project, timeout=1800)  # fmt: skip
    finally:
        stop(workers)
    row.seconds, row.peak_rss_mb = round(m.seconds, 2), m.peak_rss_mb
    if m.returncode != 0:
        row.reason = f"exit {m.returncode}: {failure_reason(log)}"
        return row
    with pg.connect() as con:
        found = con.execute(
            f"SELECT count(*), count(DISTINCT id) FROM {TARGET_SCHEMA}.{pg.schema}_events"
        ).fetchone()
    assert found is not None
    row.arrived, row.distinct_ids = int(found[0]), int(found[1])
    row.rows_per_s = round(row.arrived / m.seconds)
    row.partitions_by_worker = partitions_by_worker(project, env)
    exact = row.arrived == row.distinct_ids == expected
    row.status = "ok" if exact else "wrong rows"
    row.reason = "" if exact else f"{row.arrived:,} rows, {row.distinct_ids:,} distinct ids of {expected:,}"
    return row


def start_worker(project: Path, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = project / f"worker-{name}.log"
    args = [str(PROJECT_BIN / "elt"), "worker", "--concurrency", "1", "--name", f"{name}@bench"]
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while b" ready." not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start (see {log})")
        time.sleep(0.2)
    return process


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def partitions_by_worker(project: Path, env: dict[str, str]) -> dict[str, int]:
    """How many partition loads each worker ran (from the run history)."""
    run = json.loads((project / "run.json").read_text(encoding="utf-8"))
    shown = subprocess.run([str(PROJECT_BIN / "elt"), "runs", "show", run["run_id"], "--format", "json"],
                           cwd=project, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    counts: dict[str, int] = {}
    for step in json.loads(shown.stdout)["steps"]:
        if step["name"].startswith("events["):
            for attempt in step.get("attempt_records") or []:
                if attempt["status"] == "success":
                    key = attempt.get("worker") or "local"
                    counts[key] = counts.get(key, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/workers_bench.py", description=TITLE)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of elt_bench.events (default 1M)")
    parser.add_argument("--partitions", type=int, default=8, help="key ranges of id (default 8)")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="redis")
    parser.add_argument(
        "--work", type=Path, help="folder for the projects and logs (default: a temporary one)"
    )
    args = parser.parse_args(argv)
    folder = (args.work or Path(tempfile.mkdtemp(prefix="elt-workers-bench-"))).resolve()
    result = run_workers_bench(folder, Postgres.from_env(), args.rows, args.partitions, args.broker)
    print(json.dumps(result, indent=2))
    return 0 if all(s["status"] == "ok" for s in result["settings"]) else 1


if __name__ == "__main__":
    sys.exit(main())
