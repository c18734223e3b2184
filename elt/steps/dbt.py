"""The `dbt` step: a dbt command and its arguments (`build --select marts+`), run with dbtRunner.

Only one dbt command runs on a dbt project at a time, across runs: the step holds the lock
`dbt:<environment>:<project dir>` in the state backend, as syncs hold their state id's.
"""

from __future__ import annotations

import shlex
from typing import Any

from elt.errors import RunError
from elt.steps import StepContext, StepOutput


def dbt_lock_id(ctx_project: Any) -> str:
    """The lock name of the project's dbt project in the environment in force."""
    from elt.dbt import dbt_dirs

    project_dir, _ = dbt_dirs(ctx_project)
    return f"dbt:{ctx_project.environment or 'default'}:{project_dir}"


def run_dbt_step(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Run `dbt SPEC`; the summary lists each node with its status and seconds. Rows: rows dbt reported."""
    from elt.dbt import NodeResult, run_dbt
    from elt.state import open_state_store

    def on_node(node: NodeResult) -> None:
        ctx.log(f"{node.status:<7} {node.resource_type:<9} {node.name} {node.seconds:.2f}s")

    def waiting(holder: Any) -> None:
        ctx.log(f"waiting for run {holder.run_id} (pid {holder.pid} on {holder.host}) to release {lock_id}")

    lock_id = dbt_lock_id(ctx.project)
    with (
        open_state_store(ctx.project) as store,
        store.lock(lock_id, run_id=ctx.run_id, wait=bool(options.get("wait")), on_wait=waiting),
    ):
        result = run_dbt(ctx.project, shlex.split(spec), on_node, quiet=options.get("quiet", True))
    for note in result.notes:
        ctx.log(note)
    if not result.success:
        raise RunError(f"dbt {spec}: {result.error}")
    nodes = node_summaries(result.nodes)
    rows = [n.rows_affected for n in result.nodes if n.rows_affected is not None]
    return StepOutput(
        rows=sum(rows) if rows else None,
        value={"nodes": len(nodes)},
        summary={"nodes": nodes, "seconds": round(result.seconds, 3)},
    )


def node_summaries(nodes: list[Any]) -> dict[str, dict[str, Any]]:
    """What run history keeps of each dbt node: name, type, status, seconds, rows affected, and for a
    failed node dbt's message and the compiled SQL's path."""
    summaries: dict[str, dict[str, Any]] = {}
    for n in nodes:
        entry: dict[str, Any] = {
            "name": n.name,
            "resource_type": n.resource_type,
            "status": n.status,
            "seconds": round(n.seconds, 3),
            "rows_affected": n.rows_affected,
        }
        if n.status in ("error", "fail", "runtime error", "warn"):
            entry["message"] = n.message
            entry["compiled_path"] = n.compiled_path
        summaries[n.unique_id] = entry
    return summaries


def run_dbt_command(
    project: Any, args: list[str], on_node: Any = None, *, quiet: bool = True, wait: bool = False
) -> tuple[str, Any]:
    """`elt build` / `elt dbt`: one dbt command in elt's process, locked and recorded as a run.

    Returns (run id, DbtResult); raises RunError (after recording) when dbt or a node failed.
    """
    import time

    from elt.dbt import run_dbt
    from elt.runs import RunLog, StepRecord, now
    from elt.state import open_state_store

    runs = RunLog(project.system_db)
    kind = "build" if args[0] == "build" else "dbt"
    record = runs.start(kind, f"dbt {args[0]}", project.environment)
    step = StepRecord(0, f"dbt-{args[0]}", "dbt", "running", now())
    runs.step(record, step)
    started = time.monotonic()
    error: str | None = None
    result = None
    try:
        with (
            open_state_store(project) as store,
            store.lock(dbt_lock_id(project), run_id=record.run_id, wait=wait),
        ):
            result = run_dbt(project, args, on_node, quiet=quiet)
        if not result.success:
            error = f"dbt {' '.join(args)}: {result.error}"
    except Exception as exc:
        error = str(exc)
        raise
    finally:
        seconds = time.monotonic() - started
        nodes = node_summaries(result.nodes if result else [])
        step.status, step.ended_at, step.seconds = ("failed" if error else "success"), now(), seconds
        step.summary, step.error = {"nodes": nodes}, error
        affected = [n["rows_affected"] for n in nodes.values() if n["rows_affected"] is not None]
        step.rows = sum(affected) if affected else None
        runs.step(record, step)
        runs.finish(record, step.status, seconds, {"nodes": nodes}, error)
    if error is not None:
        raise RunError(f"step 'dbt-{args[0]}' failed: {error}")
    return record.run_id, result
