"""A flow that serves itself: `python flow_serve.py` schedules it every 15 minutes in Berlin time."""

import json
from pathlib import Path

from prefect import flow, task
from prefect.schedules import Cron


@task
def heartbeat(folder: str, source: str) -> dict:
    files = sorted(p.name for p in Path(folder).iterdir() if p.is_file())
    return {"source": source, "files": files}


@task
def record(beat: dict, folder: str) -> None:
    out = Path(folder) / "out"
    out.mkdir(exist_ok=True)
    (out / "heartbeat.json").write_text(json.dumps(beat))


@flow
def folder_heartbeat(folder: str = "inputs", source: str = "local") -> None:
    record(heartbeat(folder, source), folder)


if __name__ == "__main__":
    folder_heartbeat.serve(
        name="every-quarter-hour",
        schedules=[Cron("*/15 * * * *", timezone="Europe/Berlin", parameters={"source": "cron"})],
        parameters={"folder": "/srv/inputs"},
    )
