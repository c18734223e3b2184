"""Retries: a flaky source fails once before it answers; backoff, jitter and timeouts on the way."""

import csv
import json
from pathlib import Path

from prefect import flow, task
from prefect.tasks import exponential_backoff


@task(retries=3, retry_delay_seconds=[0.1, 0.2, 0.4], retry_jitter_factor=0.5)
def flaky_extract(folder: str) -> list[dict]:
    marker = Path(folder) / "out" / "attempts.txt"
    marker.parent.mkdir(exist_ok=True)
    attempts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempts))
    if attempts < 2:
        raise ConnectionError("the source is not ready yet")
    with open(Path(folder) / "orders.csv", newline="") as f:
        return list(csv.DictReader(f))


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=0.1), timeout_seconds=60)
def enrich(rows: list[dict], folder: str) -> list[dict]:
    customers = {c["customer_id"]: c for c in json.loads((Path(folder) / "customers.json").read_text())}
    return [{**r, "segment": customers[int(r["customer_id"])]["segment"]} for r in rows]


@task(retries=1, retry_delay_seconds=1)
def save(rows: list[dict], folder: str) -> None:
    with open(Path(folder) / "out" / "enriched.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@flow(retries=1, retry_delay_seconds=5, timeout_seconds=600)
def resilient_orders(folder: str = "inputs") -> None:
    rows = flaky_extract(folder)
    enriched = enrich(rows, folder)
    save(enriched, folder)
