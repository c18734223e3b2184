"""A run started in a process of its own: `python -m elt.schedule.launch REQUEST_JSON`.

The scheduler (and the API, through `fire_trigger`) starts each run this way, so that it stays
responsive while the run goes on and knows the run's id at once: it chooses the id. The child loads the
project, runs the pipeline (or job, or blocks) with the given variables, typed (a file trigger's list of
paths stays a list), under that id, and records what started it in the run's request (`trigger`). It
exits 0 when the run succeeded, 1 when it failed, 130 when interrupted (SIGINT: the executor stops the
steps and records them as failed). Its JSON-lines output goes to `.elt/logs/RUN/run.log`. An error
before the run could start (an unknown variable, an invalid elt.yml) is recorded as a failed run under
the same id, so that every fired run shows in `elt runs`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.runs import new_run_id

if TYPE_CHECKING:
    from elt.project import Project
    from elt.systemdb import Location

INTERRUPTED = 130
LOG_NAME = "run.log"


@dataclass(frozen=True)
class RunRequest:
    """What to start: blocks as `elt run` takes them, variables, and what started it."""

    blocks: tuple[str, ...]
    variables: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)  # {"schedule": …, "slot": …} | {"trigger": …}
    env: dict[str, str] = field(default_factory=dict)  # added to the run's process environment
    run_id: str = field(default_factory=new_run_id)


def start_run(project: Project, request: RunRequest) -> subprocess.Popen[bytes]:
    """Start the run in a new process (and session, so a Ctrl-C of the starter does not reach it)."""
    log_dir = project.system_dir / "logs" / request.run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "project_dir": str(project.root),
        "environment": project.environment,
        "blocks": list(request.blocks),
        "variables": request.variables,
        "trigger": request.trigger,
        "run_id": request.run_id,
    }
    env = {**os.environ, **request.env, "PYTHONUNBUFFERED": "1"}
    with (log_dir / LOG_NAME).open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "elt.schedule.launch", json.dumps(payload, default=str)],
            cwd=project.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def outcome(returncode: int) -> str:
    """What a launched run's exit code says: success, failed, interrupted or killed."""
    if returncode == 0:
        return "success"
    if returncode in (INTERRUPTED, -signal.SIGINT):
        return "interrupted"
    if returncode < 0:
        return "killed"
    return "failed"


def main(argv: list[str]) -> int:
    from elt.errors import EltError
    from elt.logs import Reporter
    from elt.orchestrator.executor import run_request
    from elt.project import load_project

    payload: dict[str, Any] = json.loads(argv[0])
    db: Location = Path(payload["project_dir"]) / ".elt" / "elt.db"
    try:
        project = load_project(Path(payload["project_dir"]), payload.get("environment"))
        db = project.system_db
        result = run_request(
            project,
            list(payload["blocks"]),
            variables=payload.get("variables") or {},
            run_id=payload["run_id"],
            trigger=payload.get("trigger") or None,
            reporter=Reporter(tty=False),
        )
    except KeyboardInterrupt:
        _record_failure(db, payload, "interrupted before the run started")
        return INTERRUPTED
    except EltError as error:
        print(f"error: {error}", file=sys.stderr)
        _record_failure(db, payload, str(error))
        return error.exit_code
    return 0 if result.status == "success" else 1


def _record_failure(db: Location, payload: dict[str, Any], error: str) -> None:
    """A failed run under the request's id, unless the run was recorded already."""
    from contextlib import closing

    from elt.runs import RunLog
    from elt.systemdb import connect

    with closing(connect(db)) as conn:
        found = conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (payload["run_id"],)).fetchone()
    if found:
        return
    request = {
        "blocks": payload["blocks"],
        "variables": payload.get("variables") or {},
        "trigger": payload.get("trigger"),
    }
    log = RunLog(db)
    record = log.start(
        "run", " ".join(payload["blocks"]), payload.get("environment"), request, payload["run_id"]
    )
    log.finish(record, "failed", 0.0, {}, error)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
