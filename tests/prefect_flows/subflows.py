"""Subflows: a parent flow runs a preparation flow and publishes what it returns."""

import csv
import json
from pathlib import Path

from prefect import flow, task


@task
def read_orders(folder: str) -> list[dict]:
    with open(Path(folder) / "orders.csv", newline="") as f:
        return list(csv.DictReader(f))


@task
def convert(rows: list[dict], currency: str, folder: str) -> list[dict]:
    rates = json.loads((Path(folder) / "rates.json").read_text())
    rate = rates[currency]
    return [
        {"order_id": r["order_id"], "amount": round(float(r["amount"]) * rate, 2), "currency": currency}
        for r in rows
    ]


@flow(name="prepare-orders")
def prepare_orders(folder: str, currency: str = "EUR") -> list[dict]:
    rows = read_orders(folder)
    return convert(rows, currency, folder)


@task
def publish(orders: list[dict], folder: str, name: str) -> int:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(orders, indent=1))
    return len(orders)


@flow(name="nightly-orders")
def nightly_orders(folder: str = "inputs") -> None:
    in_usd = prepare_orders(folder, currency="USD")
    publish(in_usd, folder, "orders_usd")
    in_gbp = prepare_orders(folder=folder, currency="GBP")
    publish(in_gbp, folder, name="orders_gbp")
