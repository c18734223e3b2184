"""`elt worker`: a Celery worker that runs the steps an orchestrator using the `celery` executor sends.

A task is one attempt of one step. The worker runs it as a local run does, as a process of its own
(`python -m elt.orchestrator.attempt`) in its own process group, so a step behaves the same on a worker
as on the orchestrator's machine. Tasks are acknowledged late: a worker that dies mid-step (kill -9, a
lost node) leaves the task to the broker, which gives it to another worker; each start of a task
reports a fresh delivery id, which is how the orchestrator records the attempt that died. The worker's
threads only wait on those processes, hence the `threads` pool.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.orchestrator.executors import ExecutorSettings, kill_group, read_outcome, spawn_attempt

if TYPE_CHECKING:
    from celery import Celery, Task

    from elt.project import Project

TASK_NAME = "elt.attempt"
_LOG_TAIL_BYTES = 1 << 20  # a log sent back with the result (no shared folder), at most this much
_POLL_SECONDS = 0.1
_own_project: Path | None = None  # the worker's project, for requests naming a folder it does not have


@cache
def celery_app(settings: ExecutorSettings) -> Celery:
    """The Celery application of `settings`' broker, with the task that runs an attempt."""
    from celery import Celery

    app = Celery("elt", broker=settings.broker_url, backend=settings.result_backend)
    app.conf.update(
        task_acks_late=True,  # a task leaves the broker only when its attempt has ended
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,  # a busy worker holds no step another one could start
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Redis: look for tasks of dead workers about ten times per visibility timeout (at most
            # every 10 s), not kombu's default of every 100 s
            "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_timeout / 10)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    app.task(name=TASK_NAME, bind=True)(run_attempt_task)
    return app


def run_attempt_task(task: Task, message: dict[str, Any]) -> dict[str, Any]:
    """Run one attempt the orchestrator sent; its outcome, with the worker and the delivery."""
    from celery.worker import state as worker_state

    delivery, worker = uuid.uuid4().hex, str(task.request.hostname or socket.gethostname())
    task.update_state(state="STARTED", meta={"worker": worker, "delivery": delivery, "pid": os.getpid()})
    project_dir = _project_dir(message)
    shared_log = Path(message["log_file"])
    with tempfile.TemporaryDirectory(prefix="elt-attempt-") as tmp:
        work = Path(tmp)
        request_file, result_file = work / "request.json", work / "result.json"
        request = {**message, "project_dir": str(project_dir), "result": str(result_file)}
        request_file.write_text(json.dumps(request, default=str), encoding="utf-8")
        log_path = shared_log if shared_log.parent.is_dir() else work / "attempt.log"
        with log_path.open("ab") as log:
            if log.tell():
                log.write(f"\n--- the step again, on worker {worker} (the last one was lost) ---\n".encode())
                log.flush()
            proc = spawn_attempt(request_file, project_dir, log)
            given = message.get("timeout_seconds")
            limit = float(given) if given is not None else None
            deadline = time.monotonic() + limit if limit is not None else None
            while proc.poll() is None:
                if task.request.id in worker_state.revoked:
                    kill_group(proc)
                    error = "stopped by the orchestrator (timeout, or the run was interrupted)"
                    return {"ok": False, "error": error, "worker": worker, "delivery": delivery}
                if limit is not None and deadline is not None and time.monotonic() > deadline:
                    kill_group(proc)
                    error = f"timed out after {limit:g}s"
                    return {
                        "ok": False,
                        "error": error,
                        "retryable": True,
                        "worker": worker,
                        "delivery": delivery,
                    }
                time.sleep(_POLL_SECONDS)
        outcome = read_outcome(result_file, proc.returncode, shared_log)
        if log_path != shared_log:
            with log_path.open("rb") as log:
                log.seek(max(0, log_path.stat().st_size - _LOG_TAIL_BYTES))
                outcome["log"] = log.read().decode("utf-8", "replace")
    return {**outcome, "worker": worker, "delivery": delivery}


def _project_dir(message: dict[str, Any]) -> Path:
    """The project folder named by the request when this machine has it (a shared volume, one machine),
    else the worker's own project (the project baked into the worker's image)."""
    named = Path(str(message.get("project_dir") or ""))
    if named.is_absolute() and any((named / name).is_file() for name in ("elt.yml", "meltano.yml")):
        return named
    if _own_project is None:
        from elt.errors import EltError

        raise EltError(f"worker: the project folder {named} is not on this machine, and the worker has none")
    return _own_project


def run_worker(
    project: Project, settings: ExecutorSettings, *, queues: list[str], concurrency: int, name: str | None
) -> None:
    """Serve `queues` until stopped (SIGTERM: finish the running steps, then exit)."""
    global _own_project
    _own_project = project.root
    hostname = name or f"elt-{os.getpid()}@{socket.gethostname()}"
    argv = [
        "worker", "--pool", "threads", "--concurrency", str(concurrency), "--queues", ",".join(queues),
        "--hostname", hostname, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    celery_app(settings).worker_main(argv)
