"""The three steps of a partitioned sync (elt/partitions.py): plan, one partition, commit.

Each runs from its request alone, on any worker: the spec is `TAP TARGET`, the options hold the step's
`partition:` mapping and `part_of` (the partitioned step's name, `orders`), and an instance of the
partition step gets its partition as its item, `{id, stream, column, lower, upper}`.

    orders:plan    kind partition-plan    value: the partitions, bottom first
    orders[i]      kind partition         value: {partition, status: loaded|skipped, rows, loaded_by}
    orders:commit  kind partition-commit  value: {stream, column, bookmark, committed, pending, missing, rows}
"""

from __future__ import annotations

import uuid
from typing import Any

from elt.errors import EltError, RunError
from elt.partitions import (
    Partition,
    PartitionSpec,
    commit_partitions,
    load_partition,
    plan_partitions,
)
from elt.steps import StepContext, StepOutput
from elt.steps.sync import step_reporter


def run_partition_plan(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Plan the partitions to load; its value is their list, which the partition step iterates over."""
    tap, target = _names(spec, ctx)
    partition = _spec(options, ctx)
    partitions = plan_partitions(
        ctx.project, tap, target, partition, _part_of(options, ctx),
        full_refresh=bool(options.get("full_refresh")), run_id=ctx.run_id,
    )  # fmt: skip
    shown = f": {partitions[0].lower} … {partitions[-1].upper}" if partitions else ": nothing new to load"
    ctx.log(f"{len(partitions)} partition(s) of {partition.stream} by {partition.by}{shown}")
    return StepOutput(
        value=[p.to_json() for p in partitions],
        summary={"stream": partition.stream, "column": partition.by, "partitions": len(partitions)},
    )


def run_partition(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Load the partition of the instance's item, unless the target's ledger has it (skipped)."""
    tap, target = _names(spec, ctx)
    if ctx.item is None:
        raise EltError(f"step '{ctx.step}': a partition step runs once per partition of its plan (for_each)")
    partition = Partition.from_json(ctx.item)
    # names this load in the ledger: the run, the instance and this attempt
    loaded_by = f"{ctx.run_id}/{ctx.step}/{uuid.uuid4().hex[:8]}"
    timeout = options.get("timeout")
    result = load_partition(
        ctx.project, tap, target, partition, loaded_by=loaded_by, reporter=step_reporter(ctx),
        timeout=float(timeout) if timeout is not None else None,
    )  # fmt: skip
    ctx.log(f"partition {partition.id}: {result.status}, {result.rows:,} rows")
    loaded = result.rows if result.status == "loaded" else 0
    return StepOutput(
        rows=loaded, value=result.to_json(), summary={**result.to_json(), "tap": tap, "target": target}
    )


def run_partition_commit(spec: str, options: dict[str, Any], ctx: StepContext) -> StepOutput:
    """Move the stream's bookmark past the partitions loaded from the bottom; fail if a partition of
    this run's plan is not loaded (after moving it as far as it may go)."""
    tap, target = _names(spec, ctx)
    partition = _spec(options, ctx)
    plan_step = f"{_part_of(options, ctx)}:plan"
    plan = ctx.earlier.get(plan_step)
    planned = None
    if plan is not None and isinstance(plan.value, list):
        planned = [Partition.from_json(item) for item in plan.value]
    result = commit_partitions(ctx.project, tap, target, partition, planned, run_id=ctx.run_id)
    ctx.log(
        f"{partition.stream}: bookmark {partition.by} = {result.bookmark} "
        f"({len(result.committed)} partition(s) committed, {len(result.pending)} pending)"
    )
    if planned is None:
        raise RunError(
            f"step '{plan_step}' did not succeed: no partitions of {partition.stream} were planned"
        )
    if result.missing:
        shown = ", ".join(result.missing[:3]) + (", …" if len(result.missing) > 3 else "")
        raise RunError(
            f"{len(result.missing)} of {len(planned)} partition(s) of {partition.stream} are not loaded "
            f"({shown}); the bookmark of {partition.by} is {result.bookmark}, below the first of them",
            hint="run again: partitions already loaded are not loaded twice",
        )
    return StepOutput(value=result.to_json(), summary=result.to_json())


def _names(spec: str, ctx: StepContext) -> tuple[str, str]:
    names = spec.split()
    if len(names) != 2:
        raise EltError(
            f"step '{ctx.step}': a partitioned sync is 'TAP TARGET' (no mappers), got '{spec}'",
            hint="mappers change the rows a partition's range selects; map them in dbt instead",
        )
    return names[0], names[1]


def _spec(options: dict[str, Any], ctx: StepContext) -> PartitionSpec:
    return PartitionSpec.from_options(options.get("partition"), f"step '{ctx.step}': partition")


def _part_of(options: dict[str, Any], ctx: StepContext) -> str:
    return str(options.get("part_of") or ctx.step.rsplit(":", 1)[0])
