"""Deployed to a work pool with several schedules; prefect.yaml in this folder deploys it too."""

import json
from pathlib import Path

from prefect import flow, task
from prefect.schedules import Cron, Interval, RRule


@task(retries=2, retry_delay_seconds=30)
def stock_levels(folder: str, warehouse: str) -> dict:
    customers = json.loads((Path(folder) / "customers.json").read_text())
    return {"warehouse": warehouse, "levels": {c["name"]: c["customer_id"] % 7 for c in customers}}


@task
def publish_levels(levels: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / f"stock-{levels['warehouse']}.json").write_text(json.dumps(levels, sort_keys=True))


@flow(name="inventory-sync")
def inventory_sync(folder: str = "inputs", warehouse: str = "main") -> None:
    levels = stock_levels(folder, warehouse)
    publish_levels(levels, folder)


if __name__ == "__main__":
    inventory_sync.deploy(
        name="inventory-prod",
        work_pool_name="k8s-pool",
        image="registry.example.com/inventory:latest",
        schedules=[
            Cron("0 6 * * 1-5", timezone="Europe/Berlin"),
            Interval(900, parameters={"warehouse": "backup"}),
            RRule("FREQ=MONTHLY;BYMONTHDAY=1;BYHOUR=3;BYMINUTE=0"),
        ],
        parameters={"warehouse": "prod"},
    )
