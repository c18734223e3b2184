"""One attempt of one step, in a process of its own: `python -m elt.orchestrator.attempt REQUEST.json`.

Syncs run built-in connectors inside the process (a process-wide lock and working directory) and dbt's
runner is not thread-safe, so the executor never runs two steps in one process. The request names the
project, the step and its inputs; the attempt writes `{"ok", "output", "error", "exit_code"}` as JSON to
the request's `result` path. Its stdout is the step's log file. The process leads its own process group,
which the executor kills on a timeout; it is sent SIGTERM if elt dies, and takes its children with it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from elt.logs import MaskedStream, mask, mask_json
from elt.steps import StepContext, StepOutput
from elt.systemdb import Location

# kind → (module, function) of its runner: run(spec, options, ctx) -> StepOutput
RUNNERS = {
    "sync": ("elt.steps.sync", "run_sync_step"),
    "dbt": ("elt.steps.dbt", "run_dbt_step"),
    "shell": ("elt.steps.shell", "run_shell"),
    "python": ("elt.steps.python", "run_python"),
    "sql": ("elt.steps.sql", "run_sql"),
    "export": ("elt.steps.export", "run_export"),
    # a partitioned sync's three steps (elt/partitions.py)
    "partition-plan": ("elt.steps.partition", "run_partition_plan"),
    "partition": ("elt.steps.partition", "run_partition"),
    "partition-commit": ("elt.steps.partition", "run_partition_commit"),
}
CACHEABLE = ("python", "sql")


def output_from_json(value: dict[str, Any] | None) -> StepOutput:
    """A StepOutput from its stored JSON."""
    value = value or {}
    return StepOutput(
        rows=value.get("rows"), bytes=value.get("bytes"), value=value.get("value"),
        summary=value.get("summary") or {}, cached=bool(value.get("cached")),
    )  # fmt: skip


def run_attempt(request: dict[str, Any]) -> dict[str, Any]:
    """Run the step the request describes; never raises (an error is a result)."""
    from elt.errors import EltError
    from elt.project import load_project
    from elt.secrets import resolve_secrets

    def log(line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        sys.stdout.write(f"{stamp} {line}\n")
        sys.stdout.flush()

    try:
        project = load_project(Path(request["project_dir"]), request["environment"])
        ctx = StepContext(
            project=project,
            run_id=request["run_id"],
            pipeline=request["pipeline"],
            step=request["step"],
            variables=request["variables"],
            upstream={k: output_from_json(v) for k, v in request["upstream"].items()},
            earlier={k: output_from_json(v) for k, v in (request.get("earlier") or {}).items()},
            log=log,
            item=request.get("item"),
        )
        kind, spec, options = request["kind"], request["spec"], request["options"]
        # `${secret:…}` in a step resolve here, in the attempt: the request file keeps the references
        where = f"pipelines.{request['pipeline']}"
        spec, options = resolve_secrets(project, spec, where), resolve_secrets(project, options, where)
        fingerprint = None
        if kind in CACHEABLE and request.get("cache_expire") is not None:
            fingerprint, cached = _cached(project.system_db, kind, spec, options, ctx, request)
            if cached is not None:
                log("unchanged since the cached run: output reused")
                return {"ok": True, "output": {**cached, "cached": True}}
        module, function = RUNNERS[kind]
        runner = getattr(import_module(module), function)
        output: StepOutput = runner(spec, options, ctx)
        result = asdict(output)
        if fingerprint is not None:
            from elt.runs import store_cache

            store_cache(project.system_db, request["pipeline"], request["step"], fingerprint, result)
        return {"ok": True, "output": result}
    except EltError as exc:
        return {"ok": False, "error": str(exc), "exit_code": exc.exit_code,
                "retryable": type(exc).__name__ != "LockedError"}  # fmt: skip
    except ModuleNotFoundError as exc:
        return {"ok": False, "error": f"no runner for this step kind yet: {exc}", "exit_code": 2,
                "retryable": False}  # fmt: skip
    except Exception as exc:
        traceback.print_exc(file=sys.stdout)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "exit_code": 1, "retryable": True}


def _cached(
    db: Location, kind: str, spec: str, options: dict[str, Any], ctx: StepContext, request: dict[str, Any]
) -> tuple[str | None, dict[str, Any] | None]:
    try:
        from elt.steps.cache import fingerprint as compute
    except ImportError:
        return None, None
    from elt.runs import cached_output

    fingerprint: str = compute(kind, spec, options, ctx)
    if request.get("no_cache"):
        return fingerprint, None
    return fingerprint, cached_output(db, request["pipeline"], request["step"], fingerprint,
                                      float(request["cache_expire"]))  # fmt: skip


def _die_with_group(*_: Any) -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def main(argv: list[str]) -> int:
    request_path = Path(argv[0])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    # SIGTERM (elt died, or the run was interrupted) ends the whole group: a shell step's children too.
    signal.signal(signal.SIGTERM, _die_with_group)
    # The log file and the result never hold a secret's value: whatever the step prints, its error and
    # its output are masked with the secrets resolved in this process.
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    try:
        result = mask_json(run_attempt(request))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    tmp = Path(request["result"] + ".tmp")
    tmp.write_text(json.dumps(result, default=lambda value: mask(str(value))), encoding="utf-8")
    tmp.replace(request["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
