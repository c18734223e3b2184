"""A flow built from tasks of another module, one of them with per-call options."""

from prefect import flow, task
from tasks_library import read_rows, write_json


@task
def by_status(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


@flow(name="status-counts")
def status_counts(folder: str = "inputs", file_name: str = "orders.csv") -> None:
    rows = read_rows(folder, file_name)
    counts = by_status(rows)
    write_json.with_options(retries=2, retry_delay_seconds=[1, 2])(counts, folder, f"{file_name}.status.json")
