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
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elt.orchestrator.executors import ExecutorSettings, kill_group, read_outcome, spawn_attempt
from elt.systemdb import Location, is_postgres

if TYPE_CHECKING:
    from celery import Celery, Task

    from elt.project import Project

TASK_NAME = "elt.attempt"
_LOG_TAIL_BYTES = 1 << 20  # a log sent back with the result (no shared folder), at most this much
_POLL_SECONDS = 0.1
_RUN_CHECK_SECONDS = 2.0  # how often a running step's run is looked up in the run history
_own_project: Path | None = None  # the worker's project, for requests naming a folder it does not have
_log = logging.getLogger("elt.worker")


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
    delivery, worker = uuid.uuid4().hex, str(task.request.hostname or socket.gethostname())
    task.update_state(state="STARTED", meta={"worker": worker, "delivery": delivery, "pid": os.getpid()})
    where = {"run_id": message.get("run_id"), "step": message.get("step"), "task_id": task.request.id}
    _log.info("▶ %s of run %s", where["step"], where["run_id"], extra={"event": "step_started", **where})
    started = time.monotonic()
    outcome = _run_attempt(task, message, worker, delivery)
    ok, seconds = bool(outcome.get("ok")), round(time.monotonic() - started, 3)
    error = "" if ok else ": " + (str(outcome.get("error") or "").splitlines() or [""])[0]
    _log.log(
        logging.INFO if ok else logging.WARNING,
        "%s %s of run %s in %.1fs%s", "✓" if ok else "✗", where["step"], where["run_id"], seconds, error,
        extra={"event": "step_ended", **where, "status": "success" if ok else "failed", "seconds": seconds},
    )  # fmt: skip
    return outcome


def _run_attempt(task: Task, message: dict[str, Any], worker: str, delivery: str) -> dict[str, Any]:
    from celery.worker import state as worker_state

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
            # the run history, when the worker can read it, tells when the run has ended without the
            # step (its elt process killed, its pod gone): the step stops then, as it would locally
            history = _history(project_dir, message)
            looked = time.monotonic()
            while proc.poll() is None:
                if task.request.id in worker_state.revoked:
                    kill_group(proc)
                    error = "stopped by the orchestrator (timeout, or the run was interrupted)"
                    return {"ok": False, "error": error, "worker": worker, "delivery": delivery}
                if history is not None and time.monotonic() - looked >= _RUN_CHECK_SECONDS:
                    looked = time.monotonic()
                    ended = _run_ended(history, str(message.get("run_id")))
                    if ended is not None:
                        kill_group(proc)
                        return {"ok": False, "error": ended, "worker": worker, "delivery": delivery}
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


def _history(project_dir: Path, message: dict[str, Any]) -> Location | None:
    """Where the step's run is recorded, if this worker can read it: the project's PostgreSQL system
    database, or the orchestrator's `.elt/elt.db` when its project folder is on this machine."""
    from elt.project import load_project

    try:
        location = load_project(project_dir, message.get("environment")).system_db
    except Exception:  # the step's own process reports a broken project; nothing to watch here
        return None
    if is_postgres(location) or str(project_dir) == message.get("project_dir"):
        return location
    return None


def _run_ended(history: Location, run_id: str) -> str | None:
    """Why the step of `run_id` should stop: its run is no longer running (it died, was cancelled or
    interrupted). None while it runs, or when the history cannot be read."""
    from elt.runs import RunLog

    try:
        status = RunLog(history).get(run_id).status
    except Exception:  # the history being written or moved: look again later
        return None
    return None if status == "running" else f"stopped: the run is no longer running (its status: {status})"


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
    from celery import signals

    global _own_project
    _own_project = project.root
    hostname = name or f"elt-{os.getpid()}@{socket.gethostname()}"
    tty = sys.stderr.isatty()
    # our logging from the first line on (Celery warns of root before it sets up logging); a receiver of
    # setup_logging keeps Celery from setting up its own
    _setup_logging(tty)
    signals.setup_logging.connect(lambda **_: None, weak=False)
    # what Celery says on a signal (warm or cold shutdown) it writes straight to the stdout descriptor
    import celery.apps.worker

    celery.apps.worker.safe_say = _say
    about = f"elt worker {hostname} of {project.root}: {settings.describe()}, queues {', '.join(queues)}"
    _log.info(about, extra={"event": "worker_started", "worker": hostname, "queues": queues})
    argv = [
        *([] if tty else ["--quiet"]),  # no banner when not on a terminal: only JSON lines
        "worker", "--pool", "threads", "--concurrency", str(concurrency), "--queues", ",".join(queues),
        "--hostname", hostname, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    celery_app(settings).worker_main(argv)


class _JsonLines(logging.Formatter):
    """A log record as one JSON object (ts, event, level, logger, message and the record's fields)."""

    _FIELDS = ("worker", "queues", "run_id", "step", "task_id", "status", "seconds")

    def format(self, record: logging.LogRecord) -> str:
        from datetime import UTC, datetime

        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "event": getattr(record, "event", "worker_log"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        line.update({k: getattr(record, k) for k in self._FIELDS if hasattr(record, k)})
        line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Masked(logging.Filter):
    """Secret values registered with the process never reach the worker's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        from elt.logs import mask

        record.msg, record.args = mask(record.getMessage()), None
        return True


def _say(message: str, *_: Any) -> None:
    _log.warning(message.strip(), extra={"event": "worker_signal"})


def _setup_logging(tty: bool) -> None:
    """The worker's logs on stderr: readable lines on a terminal, else one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Masked())
    if tty:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(_JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # Python's warnings too, as lines of the same form
    # Celery's own lines per task repeat ours (its last one with the whole outcome in it)
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)
