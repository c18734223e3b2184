"""Tasks shared by several flows (imported by library_flow.py)."""

import csv
import json
from pathlib import Path

from prefect import task


@task
def read_rows(folder: str, name: str) -> list[dict]:
    with open(Path(folder) / name, newline="") as f:
        return list(csv.DictReader(f))


@task
def write_json(payload: object, folder: str, name: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(payload, indent=1, sort_keys=True))


@task
def never_called(x: int) -> int:
    return x + 1
