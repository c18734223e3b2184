"""Deployments served from this file: an hourly and a nightly sync, and a weekly report (rrule)."""

import csv
import json
from datetime import timedelta
from pathlib import Path

from prefect import flow, serve, task


@task
def snapshot(folder: str, full: bool) -> dict:
    with open(Path(folder) / "orders.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"rows": len(rows) if full else len([r for r in rows if r["status"] == "paid"]), "full": full}


@task
def write_snapshot(snap: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "snapshot.json").write_text(json.dumps(snap, sort_keys=True))


@flow(name="order-snapshot")
def order_snapshot(folder: str = "inputs", full: bool = False) -> None:
    snap = snapshot(folder, full)
    write_snapshot(snap, folder)


@task
def weekly_numbers(folder: str) -> dict:
    customers = json.loads((Path(folder) / "customers.json").read_text())
    return {"customers": len(customers)}


@task
def write_numbers(numbers: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "weekly.json").write_text(json.dumps(numbers))


@flow(name="weekly-report")
def weekly_report(folder: str = "inputs") -> None:
    write_numbers(weekly_numbers(folder), folder)


if __name__ == "__main__":
    hourly = order_snapshot.to_deployment(name="hourly", interval=timedelta(hours=1))
    nightly = order_snapshot.to_deployment(
        name="nightly-full", cron="30 2 * * *", parameters={"full": True, "folder": "/srv/data"}
    )
    weekly = weekly_report.to_deployment(name="weekly", rrule="FREQ=WEEKLY;BYDAY=MO,TH;BYHOUR=7;BYMINUTE=15")
    serve(hourly, nightly, weekly)
