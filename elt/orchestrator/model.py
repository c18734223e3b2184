"""Pipelines as plain values: `pipelines:` of elt.yml, or Meltano-style blocks, into `PipelineSpec`.

A step is a mapping with a `name`, exactly one type key (`sync`, `dbt`, `python`, `sql`, `export`,
`pipeline`, `shell`) and options. `${vars.NAME}` in a step's strings is replaced by the pipeline's
variable (its default under `variables:`, or `elt run P --var NAME=VALUE`); `${steps.NAME.output}` is
left for the executor, which knows outputs only once steps ran.

A sync step with `partition:` becomes three steps (elt/partitions.py): `NAME:plan`, `NAME` (one instance
per partition of the plan) and `NAME:commit`, which the steps that need `NAME` wait for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from elt.errors import EltError, ProjectError
from elt.notify import Hook, hooks_from_config
from elt.plugins import find_plugin
from elt.project import Project

STEP_KINDS = ("sync", "dbt", "python", "sql", "export", "pipeline", "shell")
CONDITIONS = ("success", "failure", "always")
BACKOFFS = ("exponential", "linear", "fixed")
_VAR = re.compile(r"\$\{vars\.([A-Za-z_][A-Za-z0-9_]*)\}")
STEP_OUTPUT = re.compile(r"^\$\{steps\.([A-Za-z0-9_][A-Za-z0-9_.\-/:]*)\.output\}$")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long after a failed attempt a step is tried again."""

    count: int = 0
    delay: float = 0.0
    backoff: str = "exponential"
    max_delay: float | None = None
    jitter: float = 0.0  # a fraction of the delay, added at random (0.1: up to +10 %)

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first), jitter not included."""
        if self.backoff == "fixed":
            seconds = self.delay
        elif self.backoff == "linear":
            seconds = self.delay * retry
        else:
            seconds = self.delay * 2 ** (retry - 1)
        return min(seconds, self.max_delay) if self.max_delay is not None else seconds


@dataclass(frozen=True)
class StepSpec:
    """One step as declared, `${vars.…}` interpolated."""

    name: str
    kind: str
    spec: str
    needs: tuple[str, ...] = ()
    retries: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    on_failure: str = "stop"
    condition: str = "success"  # `if:`
    for_each: Any = None  # a list, or "${steps.NAME.output}"
    cache_expire: float | None = None  # seconds, from `cache: {expire: 1h}`
    options: dict[str, Any] = field(default_factory=dict)  # the rest (env, full_refresh, …)
    # the variables of the pipeline that declared the step, when it is nested (`pipeline:` steps);
    # None: the run's pipeline's
    variables: dict[str, Any] | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline: its steps and variables; `blocks` when it came from Meltano-style blocks."""

    name: str
    steps: tuple[StepSpec, ...]
    max_parallel: int
    variables: dict[str, Any] = field(default_factory=dict)
    sequential: bool = False  # blocks run one after the other, as with `meltano run`
    notify: tuple[Hook, ...] = ()  # webhooks told of the run (elt/notify.py)


_RESERVED = {"name", "description", "needs", "retries", "timeout", "on_failure", "if", "for_each", "cache"}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `90`, `"90s"`, `"15m"`, `"1h"`, `"2d"`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
    if not match:
        raise ProjectError(f"{where}: expected a duration such as 30s, 15m, 1h or 2d, got '{value}'")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * unit


def interpolate_vars(value: Any, variables: dict[str, Any], where: str) -> Any:
    """`${vars.NAME}` replaced in every string of `value`; a whole-string reference keeps its type."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole:
            return _variable(whole.group(1), variables, where)
        return _VAR.sub(lambda m: str(_variable(m.group(1), variables, where)), value)
    if isinstance(value, list):
        return [interpolate_vars(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: interpolate_vars(v, variables, where) for k, v in value.items()}
    return value


def _variable(name: str, variables: dict[str, Any], where: str) -> Any:
    if name not in variables:
        known = ", ".join(sorted(variables)) or "none"
        raise ProjectError(
            f"{where}: unknown variable '{name}' (variables: {known})",
            hint="declare it under the pipeline's `variables:` or pass --var NAME=VALUE",
        )
    return variables[name]


def load_pipeline(
    project: Project, name: str, overrides: dict[str, Any] | None = None, *, _parents: tuple[str, ...] = ()
) -> PipelineSpec:
    """The pipeline `name` of `pipelines:`, with `pipeline:` steps expanded into `PARENT/CHILD` steps."""
    pipelines = project.data.get("pipelines") or {}
    if name not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none"
        raise EltError(f"{project.file.name}: no pipeline named '{name}' (pipelines: {known})")
    if name in _parents:
        raise ProjectError(f"{project.file.name}: pipeline '{name}' runs itself ({' → '.join(_parents)})")
    entry = pipelines[name]
    variables = dict(entry.get("variables") or {})
    for key, value in (overrides or {}).items():
        variables[key] = value
    steps: list[StepSpec] = []
    partitioned = {str(raw.get("name")) for raw in entry["steps"] if "sync" in raw and "partition" in raw}
    for i, raw in enumerate(entry["steps"]):
        where = project.where(f"pipelines.{name}.steps[{i}]")
        step = _step(raw, variables, where)
        # needing a partitioned sync is needing its commit: its rows are loaded and its bookmark moved
        step = replace(step, needs=tuple(f"{n}:commit" if n in partitioned else n for n in step.needs))
        if step.kind == "sync" and "partition" in step.options:
            steps.extend(partition_steps(step, where))
            continue
        if step.kind != "pipeline":
            steps.append(step)
            continue
        # a `pipeline:` step's `variables:` (interpolated with this pipeline's) win over --var values
        given = step.options.get("variables") or {}
        if not isinstance(given, dict):
            raise ProjectError(f"{where}.variables: expected a mapping of variable names to values")
        child = load_pipeline(project, step.spec, {**(overrides or {}), **given}, _parents=(*_parents, name))
        steps.extend(_nest(step, child))
    declared = {s.name for s in steps}
    for step in steps:
        for need in step.needs:
            if need not in declared:
                raise ProjectError(
                    f"{project.file.name}: step '{step.name}' needs '{need}', which is no step"
                )
    max_parallel = int(entry.get("max_parallel") or os.cpu_count() or 1)
    if "notify" in entry:
        hooks = hooks_from_config(entry["notify"], project.where(f"pipelines.{name}.notify"))
    else:
        hooks = hooks_from_config(project.data.get("notify"), project.where("notify"))
    return PipelineSpec(name, tuple(steps), max_parallel, variables, notify=tuple(hooks))


def _nest(parent: StepSpec, child: PipelineSpec) -> list[StepSpec]:
    """A `pipeline:` step as its pipeline's steps (`PARENT/CHILD`) and a step that waits for them all."""
    inner = {s.name for s in child.steps}
    nested = []
    for s in child.steps:
        needs = tuple(f"{parent.name}/{n}" for n in s.needs if n in inner) or parent.needs
        options = _nested_references(s.options, parent.name, inner)
        if "part_of" in options:
            options = {**options, "part_of": f"{parent.name}/{options['part_of']}"}
        nested.append(
            StepSpec(
                f"{parent.name}/{s.name}",
                s.kind,
                s.spec,
                needs,
                s.retries,
                s.timeout,
                s.on_failure,
                s.condition,
                _nested_references(s.for_each, parent.name, inner),
                s.cache_expire,
                options,
                s.variables if s.variables is not None else child.variables,
            )  # fmt: skip
        )
    barrier = StepSpec(
        parent.name, "pipeline", child.name, tuple(s.name for s in nested), parent.retries, None,
        parent.on_failure, parent.condition, None, None, {"steps": [s.name for s in nested]},
    )  # fmt: skip
    return [*nested, barrier]


def _nested_references(value: Any, parent: str, inner: set[str]) -> Any:
    """`${steps.X.output}` of a step X of a nested pipeline, renamed as the step is: `PARENT/X`."""
    if isinstance(value, str):
        match = STEP_OUTPUT.match(value)
        if match and match.group(1) in inner:
            return "${steps." + f"{parent}/{match.group(1)}" + ".output}"
        return value
    if isinstance(value, list):
        return [_nested_references(v, parent, inner) for v in value]
    if isinstance(value, dict):
        return {k: _nested_references(v, parent, inner) for k, v in value.items()}
    return value


def partition_steps(step: StepSpec, where: str) -> list[StepSpec]:
    """A sync step with `partition:` as its three steps: `NAME:plan` (what to load), `NAME` (one instance
    per partition of the plan, in parallel) and `NAME:commit` (moves the bookmark; it runs whatever
    became of the partitions, so that those loaded count, and fails unless all of them were)."""
    from elt.partitions import PartitionSpec

    PartitionSpec.from_options(step.options["partition"], f"{where}.partition")
    if step.for_each is not None:
        raise ProjectError(f"{where}: a partitioned sync runs once per partition of its plan: no for_each")
    if len(step.spec.split()) != 2:
        raise ProjectError(f"{where}.sync: a partitioned sync is 'TAP TARGET', got '{step.spec}'")
    options = {**step.options, "part_of": step.name}
    plan = replace(step, name=f"{step.name}:plan", kind="partition-plan", options=options)
    load = replace(
        step, kind="partition", needs=(plan.name,), condition="success",
        for_each="${steps." + plan.name + ".output}", options=options,
    )  # fmt: skip
    # not retried: it fails when partitions did, and what it could move is moved; the next run goes on
    commit = replace(step, name=f"{step.name}:commit", kind="partition-commit", needs=(step.name,),
                     retries=RetryPolicy(), condition="always", options=options)  # fmt: skip
    return [plan, load, commit]


def _step(raw: dict[str, Any], variables: dict[str, Any], where: str) -> StepSpec:
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        raise ProjectError(f"{where}: expected exactly one step type ({', '.join(STEP_KINDS)})")
    kind = kinds[0]
    spec = interpolate_vars(raw[kind], variables, where)
    retries_raw = raw.get("retries") or {}
    if isinstance(retries_raw, int):
        retries_raw = {"count": retries_raw}
    retries = RetryPolicy(
        count=int(retries_raw.get("count", 0)),
        delay=parse_duration(retries_raw.get("delay", 0), f"{where}.retries.delay"),
        backoff=str(retries_raw.get("backoff", "exponential")),
        max_delay=parse_duration(retries_raw["max_delay"], f"{where}.retries.max_delay")
        if retries_raw.get("max_delay") is not None
        else None,
        jitter=float(retries_raw.get("jitter", 0)),
    )
    cache = raw.get("cache")
    expire = parse_duration(cache.get("expire", "1h"), f"{where}.cache.expire") if cache else None
    options = {k: interpolate_vars(v, variables, where) for k, v in raw.items()
               if k not in _RESERVED and k != kind}  # fmt: skip
    for_each = raw.get("for_each")
    if for_each is not None:
        for_each = interpolate_vars(for_each, variables, where)
    timeout = raw.get("timeout")
    return StepSpec(
        name=str(raw["name"]),
        kind=kind,
        spec=spec if isinstance(spec, str) else str(spec),
        needs=tuple(raw.get("needs") or ()),
        retries=retries,
        timeout=parse_duration(timeout, f"{where}.timeout") if timeout is not None else None,
        on_failure=str(raw.get("on_failure", "stop")),
        condition=str(raw.get("if", "success")),
        for_each=for_each,
        cache_expire=expire,
        options=options,
    )


def pipeline_from_blocks(
    project: Project, blocks: list[str], overrides: dict[str, Any] | None = None
) -> PipelineSpec:
    """Steps from Meltano-style blocks: `TAP TARGET`, `dbt:COMMAND`, a job's or a pipeline's name.

    A single pipeline name is that pipeline; otherwise the blocks run one after the other, as with
    `meltano run`. An extractor must be followed by a loader (mappers may stand between them).
    """
    pipelines = project.data.get("pipelines") or {}
    if len(blocks) == 1 and blocks[0] in pipelines:
        return load_pipeline(project, blocks[0], overrides)
    steps = _block_steps(project, blocks, overrides)
    if not steps:
        raise EltError("nothing to run: give a pipeline name or blocks such as `TAP TARGET dbt:build`")
    names: dict[str, int] = {}
    chained: list[StepSpec] = []
    for step in steps:
        # The same block twice (`tap target dbt:run tap target`) gets a numbered name.
        count = names.get(step.name, 0)
        names[step.name] = count + 1
        name = step.name if count == 0 else f"{step.name}-{count + 1}"
        needs = (chained[-1].name,) if chained else ()
        chained.append(StepSpec(name, step.kind, step.spec, needs, step.retries, step.timeout,
                                step.on_failure, step.condition, step.for_each, step.cache_expire,
                                step.options, step.variables))  # fmt: skip
    return PipelineSpec(" ".join(blocks), tuple(chained), 1, dict(overrides or {}), sequential=True)


def _block_steps(project: Project, blocks: list[str], overrides: dict[str, Any] | None) -> list[StepSpec]:
    pipelines = project.data.get("pipelines") or {}
    jobs = {job["name"]: job["tasks"] for job in project.data.get("jobs") or []}
    steps: list[StepSpec] = []
    pending: list[str] = []
    for block in blocks:
        if block in pipelines:
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got '{block}'")
            # Within blocks a pipeline runs its steps in order.
            steps.extend(load_pipeline(project, block, overrides).steps)
            continue
        if block in jobs:
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got job '{block}'")
            steps.extend(_block_steps(project, _job_blocks(jobs[block]), overrides))
            continue
        name, _, command = block.partition(":")
        if name.startswith("dbt") and (command or name == "dbt"):
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got '{block}'")
            dbt_args = command or "build"
            steps.append(StepSpec(f"dbt-{dbt_args.split()[0]}", "dbt", dbt_args.replace(",", " ")))
            continue
        plugin = find_plugin(project, name)
        if plugin.type == "extractors":
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got '{block}'")
            pending = [name]
        elif plugin.type == "mappers":
            if not pending:
                raise EltError(f"mapper '{name}' must stand between an extractor and a loader")
            pending.append(name)
        elif plugin.type == "loaders":
            if not pending:
                raise EltError(f"loader '{name}' must follow an extractor")
            steps.append(StepSpec(f"{pending[0]}-{name}", "sync", " ".join([*pending, name])))
            pending = []
        else:
            raise EltError(
                f"cannot run plugin '{name}' ({plugin.type}) as a block",
                hint="blocks are extractor/loader pairs, dbt:COMMAND, or a pipeline name",
            )
    if pending:
        raise EltError(f"extractor '{pending[0]}' must be followed by a loader")
    return steps


def _job_blocks(tasks: str | list[str | list[str]]) -> list[str]:
    """A Meltano job's tasks as blocks: a string, a list of strings, or a list of lists of blocks."""
    if isinstance(tasks, str):
        return tasks.split()
    blocks: list[str] = []
    for task in tasks:
        blocks.extend(task.split() if isinstance(task, str) else task)
    return blocks
