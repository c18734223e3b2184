"""pandas between tasks: DataFrames go from task to task and end up in a CSV file."""

from pathlib import Path

import pandas as pd
from prefect import flow, task


@task
def orders_frame(folder: str) -> pd.DataFrame:
    return pd.read_csv(Path(folder) / "orders.csv")


@task
def customers_frame(folder: str) -> pd.DataFrame:
    return pd.read_json(Path(folder) / "customers.json")


@task
def revenue_by_segment(orders: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    paid = orders[orders["status"] == "paid"].merge(customers, on="customer_id")
    return paid.groupby("segment", as_index=False)["amount"].sum().round(2).sort_values("segment")


@task
def to_csv(frame: pd.DataFrame, folder: str) -> None:
    (Path(folder) / "out").mkdir(exist_ok=True)
    frame.to_csv(Path(folder) / "out" / "segments.csv", index=False)


@flow(name="segment-revenue")
def segment_revenue(folder: str = "inputs") -> None:
    orders = orders_frame(folder)
    customers = customers_frame(folder)
    to_csv(revenue_by_segment(orders, customers), folder)
