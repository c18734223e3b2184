"""Where a step's attempts run: `local` (a process of this machine) or `celery` (a task on a worker).

The DAG, retries, skips and run history stay in the orchestrator's loop (executor.py) whatever the
executor; an executor only starts one attempt of one step and says when it ended and how. The attempt
itself is the same program everywhere (`python -m elt.orchestrator.attempt REQUEST`), so a step behaves
alike on both.

    environments:
      - name: prod
        executor: {kind: celery, broker_url: redis://broker:6379/0, result_backend: redis://broker:6379/1}

`ELT_EXECUTOR`, `ELT_BROKER_URL`, `ELT_RESULT_BACKEND`, `ELT_QUEUE` and `ELT_VISIBILITY_TIMEOUT`
override the environment's entry (CI, tests, a one-off run on the cluster).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from elt.errors import ProjectError

if TYPE_CHECKING:
    from elt.project import Project

KINDS = ("local", "celery")
DEFAULT_QUEUE = "elt"
# Redis gives an unacknowledged task to another worker after this long (RabbitMQ does as soon as the
# worker's connection drops): above the longest step, or a step still running is started twice.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0


@dataclass(frozen=True)
class ExecutorSettings:
    """The `executor:` of the environment in force."""

    kind: str = "local"
    broker_url: str | None = None
    result_backend: str | None = None
    queue: str = DEFAULT_QUEUE  # where steps without `queue:` go
    visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT

    def describe(self) -> str:
        """For messages: the kind and the broker, without credentials."""
        if self.kind == "local":
            return "local"
        return f"celery on {_without_password(self.broker_url or '')}"


def executor_settings(project: Project) -> ExecutorSettings:
    """The executor of the project's environment, with the ELT_* variables over it."""
    entry = project.environment_entry()
    raw = dict(entry.get("executor") or {})
    where = f"environments[{project.environment}].executor" if entry else "ELT_EXECUTOR"
    overrides = {
        "kind": os.environ.get("ELT_EXECUTOR"),
        "broker_url": os.environ.get("ELT_BROKER_URL"),
        "result_backend": os.environ.get("ELT_RESULT_BACKEND"),
        "queue": os.environ.get("ELT_QUEUE"),
        "visibility_timeout": os.environ.get("ELT_VISIBILITY_TIMEOUT"),
    }
    raw.update({k: v for k, v in overrides.items() if v})
    kind = str(raw.get("kind") or "local")
    if kind not in KINDS:
        raise ProjectError(f"{where}: key 'kind': expected one of {', '.join(KINDS)}, got '{kind}'")
    broker = raw.get("broker_url")
    if kind == "celery" and not broker:
        raise ProjectError(
            f"{where}: the celery executor needs 'broker_url' (redis://HOST:6379/0 or amqp://USER:PASS@HOST//)"
        )
    backend = raw.get("result_backend") or (
        str(broker) if str(broker).startswith(("redis://", "rediss://")) else None
    )
    if kind == "celery" and not backend:
        # the run follows each step there: which worker started it, a redelivery, the outcome
        raise ProjectError(
            f"{where}: a celery executor on {_without_password(str(broker))} needs 'result_backend' "
            "(redis://HOST:6379/1): only a Redis broker doubles as one"
        )
    from elt.orchestrator.model import parse_duration

    visibility = parse_duration(
        raw.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT), f"{where}: key 'visibility_timeout'"
    )
    return ExecutorSettings(kind, broker, backend, str(raw.get("queue") or DEFAULT_QUEUE), visibility)


def _without_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class Polled:
    """What an attempt has come to: still running (outcome None), or ended with the attempt's outcome
    (`ok`, `output`, `error`, `retryable`). `lost` names a delivery that died on its worker: the broker
    gave the step to another worker, which runs it again under the same attempt's request."""

    outcome: dict[str, Any] | None = None
    lost: str | None = None
    worker: str | None = None


class AttemptHandle(Protocol):
    """One attempt started somewhere."""

    where: str  # "local", or the worker running it
    running_since: float | None  # time.monotonic() when it began to run (not while queued)

    def poll(self) -> Polled: ...

    def cancel(self) -> None:
        """Stop it now (timeout, interrupted run); poll() is not called again."""


def start_attempt(
    settings: ExecutorSettings, project: Project, request: dict[str, Any], work_dir: Path, log_file: Path,
    *, queue: str | None = None, task_id: str,
) -> AttemptHandle:  # fmt: skip
    """Start one attempt of a step as `settings` say: its request, where its log goes."""
    if settings.kind == "celery":
        return CeleryAttempt.start(settings, request, log_file, queue or settings.queue, task_id)
    return LocalAttempt.start(project, request, work_dir, log_file, task_id)


# -- local --------------------------------------------------------------------------------------------


class LocalAttempt:
    """An attempt in a process of this machine, in its own process group (killed whole)."""

    where = "local"

    def __init__(self, proc: subprocess.Popen[bytes], result_file: Path, log_file: Path) -> None:
        self.proc, self.result_file, self.log_file = proc, result_file, log_file
        self.running_since: float | None = time.monotonic()

    @classmethod
    def start(
        cls, project: Project, request: dict[str, Any], work_dir: Path, log_file: Path, name: str
    ) -> LocalAttempt:
        result_file = work_dir / f"{name}.result.json"
        request_file = work_dir / f"{name}.request.json"
        request_file.write_text(json.dumps({**request, "result": str(result_file)}, default=str), "utf-8")
        with log_file.open("wb") as log:
            proc = spawn_attempt(request_file, project.root, log)
        return cls(proc, result_file, log_file)

    def poll(self) -> Polled:
        if self.proc.poll() is None:
            return Polled()
        return Polled(read_outcome(self.result_file, self.proc.returncode, self.log_file))

    def cancel(self) -> None:
        kill_group(self.proc)


def spawn_attempt(request_file: Path, cwd: Path, log: Any) -> subprocess.Popen[bytes]:
    """`python -m elt.orchestrator.attempt REQUEST` in a new session, its output into `log`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "elt.orchestrator.attempt", str(request_file)],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def read_outcome(result_file: Path, returncode: int | None, log_file: Path | str) -> dict[str, Any]:
    """The outcome an ended attempt wrote, or a retryable failure saying it wrote none."""
    if result_file.is_file():
        outcome: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        return outcome
    error = f"the attempt's process ended with code {returncode} without a result (see {log_file})"
    return {"ok": False, "retryable": True, "error": error}


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process and everything it started, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# -- celery -------------------------------------------------------------------------------------------


class CeleryAttempt:
    """An attempt sent as a task to a worker of `elt worker`; it reports which worker runs it."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.where = "celery (queued)"
        self.delivery: str | None = None  # each time a worker starts the task, a new one
        self.running_since: float | None = None

    @classmethod
    def start(
        cls, settings: ExecutorSettings, request: dict[str, Any], log_file: Path, queue: str, task_id: str
    ) -> CeleryAttempt:
        from elt.orchestrator.worker import TASK_NAME, celery_app

        message = {**request, "log_file": str(log_file)}
        return cls(celery_app(settings).send_task(TASK_NAME, args=[message], queue=queue, task_id=task_id))

    def poll(self) -> Polled:
        state, info = self.result.state, self.result.info
        if state == "STARTED" and isinstance(info, dict):
            return Polled(lost=self._delivered(info), worker=self.where)
        if state == "SUCCESS" and isinstance(info, dict):
            outcome = dict(info)
            lost = self._delivered(
                {"delivery": outcome.pop("delivery", None), "worker": outcome.pop("worker", None)}
            )
            self.result.forget()
            return Polled(outcome, lost=lost, worker=self.where)
        if state == "FAILURE":
            return Polled({"ok": False, "retryable": True, "error": f"the worker failed the task: {info!r}"})
        return Polled()

    def _delivered(self, info: dict[str, Any]) -> str | None:
        """Note the delivery the worker reports; a message if it replaces one that was running."""
        delivery, worker = info.get("delivery"), str(info.get("worker") or "a worker")
        if delivery is None or delivery == self.delivery:
            return None
        lost = None
        if self.delivery is not None:
            lost = f"worker {self.where} was lost during the step; the broker gave it to {worker}"
        self.delivery, self.where = str(delivery), worker
        self.running_since = time.monotonic()
        return lost

    def cancel(self) -> None:
        # The worker kills the attempt's process group when it sees the task revoked.
        self.result.revoke()


def revoke(settings: ExecutorSettings, task_ids: list[str]) -> None:
    """Tell every worker to stop these tasks: one running is killed, one queued never starts."""
    if task_ids:
        from elt.orchestrator.worker import celery_app

        celery_app(settings).control.revoke(task_ids)
