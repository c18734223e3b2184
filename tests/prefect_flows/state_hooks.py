"""State hooks: a completion hook writes a status file, a failure hook calls a webhook, a task hook logs."""

import json
from pathlib import Path

import requests
from prefect import flow, task


def write_status(flow, flow_run, state):
    out = Path(flow_run.parameters["folder"]) / "out"
    out.mkdir(exist_ok=True)
    (out / "status.txt").write_text(f"{flow.name}: {state.name}\n")


def alert(flow, flow_run, state):
    requests.post("https://hooks.example.com/prefect", json={"flow": flow.name, "state": state.name})


def log_task_failure(task, task_run, state):
    print(f"task {task.name} failed: {state.message}")


@task(on_failure=[log_task_failure])
def tally(folder: str) -> dict:
    customers = json.loads((Path(folder) / "customers.json").read_text())
    return {"customers": len(customers), "retail": sum(c["segment"] == "retail" for c in customers)}


@task
def save_tally(numbers: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "tally.json").write_text(json.dumps(numbers, sort_keys=True))


@flow(on_completion=[write_status], on_failure=[alert])
def hooked(folder: str = "inputs") -> None:
    save_tally(tally(folder), folder)
