"""A simple ETL: orders.csv is read, cleaned, summed per country and written as JSON."""

import csv
import json
from pathlib import Path

from prefect import flow, get_run_logger, task


@task
def extract(folder: str) -> list[dict]:
    with open(Path(folder) / "orders.csv", newline="") as f:
        return list(csv.DictReader(f))


@task
def transform(rows: list[dict], min_amount: float) -> list[dict]:
    logger = get_run_logger()
    kept = [
        {
            "order_id": int(r["order_id"]),
            "country": r["country"].upper(),
            "amount": round(float(r["amount"]), 2),
        }
        for r in rows
        if r["status"] == "paid" and float(r["amount"]) >= min_amount
    ]
    logger.info("kept %d of %d orders", len(kept), len(rows))
    return kept


@task
def summarize(orders: list[dict]) -> dict:
    totals: dict[str, float] = {}
    for order in orders:
        totals[order["country"]] = round(totals.get(order["country"], 0.0) + order["amount"], 2)
    return {"countries": totals, "orders": len(orders)}


@task
def load(summary: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))


@flow(name="simple-etl", log_prints=True)
def simple_etl(folder: str = "inputs", min_amount: float = 10.0) -> None:
    rows = extract(folder)
    orders = transform(rows, min_amount=min_amount)
    summary = summarize(orders)
    load(summary, folder)


if __name__ == "__main__":
    simple_etl()
