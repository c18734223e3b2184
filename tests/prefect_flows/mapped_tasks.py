"""Mapped tasks: one task run per regional file, then a report over all of them."""

import csv
import json
from pathlib import Path

from prefect import flow, task, unmapped


@task
def list_regions(folder: str) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / "regions").glob("*.csv"))


@task(retries=1)
def region_revenue(region: str, folder: str) -> dict:
    with open(Path(folder) / "regions" / f"{region}.csv", newline="") as f:
        stores = list(csv.DictReader(f))
    return {"region": region, "stores": len(stores), "revenue": sum(int(s["revenue"]) for s in stores)}


@task
def square(n: int) -> int:
    return n * n


@task
def write_report(regions: list[dict], squares: list[int], folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    report = {"regions": regions, "total": sum(r["revenue"] for r in regions), "squares": squares}
    (out / "regions.json").write_text(json.dumps(report, indent=2))


@flow
def regional_revenue(folder: str = "inputs") -> None:
    regions = list_regions(folder)
    revenues = region_revenue.map(regions, folder=unmapped(folder))
    squares = square.map([1, 2, 3])
    write_report(revenues, squares, folder)
