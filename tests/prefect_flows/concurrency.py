"""Concurrency: tables are read in parallel on a thread pool, merged, written under a concurrency limit."""

import json
from pathlib import Path

from prefect import flow, task
from prefect.concurrency.sync import concurrency
from prefect.task_runners import ThreadPoolTaskRunner


@task(tags=["files"])
def read_table(name: str, folder: str) -> list:
    return json.loads((Path(folder) / f"{name}.json").read_text())


@task
def count(rows: list) -> int:
    return len(rows)


@task
def merge(customers: list, rates: dict) -> dict:
    return {"customers": len(customers), "currencies": sorted(rates)}


@task(tags=["warehouse"])
def write_table(name: str, payload: object, folder: str) -> str:
    with concurrency("warehouse-writes", occupy=1):
        out = Path(folder) / "out"
        out.mkdir(exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(payload, sort_keys=True))
    return name


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def parallel_tables(folder: str = "inputs", names: tuple[str, ...] = ("customers", "rates")) -> None:
    tables = [read_table.submit(n, folder) for n in names]
    customers = read_table.submit("customers", folder)
    rates = read_table.submit("rates", folder)
    merged = merge.submit(customers, rates)
    counted = count.submit(customers)
    first = write_table.submit("merged", merged, folder)
    write_table.submit("count", counted, folder, wait_for=[first]).wait()
    write_table("tables", tables, folder)
