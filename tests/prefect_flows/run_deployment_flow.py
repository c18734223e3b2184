"""An ingest flow that hands over to a reporting deployment when it is done."""

import csv
import json
from pathlib import Path

from prefect import flow, task
from prefect.deployments import run_deployment


@task
def ingest_orders(folder: str) -> list[dict]:
    with open(Path(folder) / "orders.csv", newline="") as f:
        return list(csv.DictReader(f))


@task
def stage(rows: list[dict], folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "staged.json").write_text(json.dumps(rows))


def archive_when_done(flow, flow_run, state):
    run_deployment("daily-report/archive", parameters={"title": "archive"}, timeout=0)


@flow(name="ingest", on_completion=[archive_when_done])
def ingest(folder: str = "inputs") -> None:
    rows = ingest_orders(folder)
    stage(rows, folder)
    run_deployment(name="daily-report/report-daily", parameters={"title": "after ingest"}, timeout=0)


@task
def build_report(folder: str, title: str) -> dict:
    rows = json.loads((Path(folder) / "out" / "staged.json").read_text())
    return {"title": title, "orders": len(rows)}


@task
def save_report(report: dict, folder: str) -> None:
    (Path(folder) / "out" / "report.json").write_text(json.dumps(report))


@flow(name="daily-report")
def daily_report(folder: str = "inputs", title: str = "daily") -> None:
    save_report(build_report(folder, title), folder)
