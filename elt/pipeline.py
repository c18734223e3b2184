"""Pipelines: named lists of steps in `pipelines:`, or Meltano-style blocks on the command line.

A step is `{name, sync: "TAP TARGET"}`, `{name, dbt: "build --select …"}` or `{name, shell: "…"}`.
`elt run tap-files target-duckdb dbt:build` makes the same steps from blocks. In this version the steps
of a pipeline run one after the other and the first failure stops the run.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from elt.dbt import DbtResult, NodeResult, run_dbt
from elt.errors import EltError, RunError
from elt.logs import Reporter
from elt.plugins import find_plugin
from elt.project import Project
from elt.runs import RunLog, RunRecord, StepRecord, now
from elt.sync import SyncResult, run_sync


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: its kind (sync, dbt, shell) and what to run."""

    name: str
    kind: str
    command: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    name: str
    steps: tuple[Step, ...]


@dataclass
class StepOutcome:
    step: Step
    status: str
    seconds: float
    summary: dict[str, Any]
    error: str | None = None


@dataclass
class PipelineResult:
    run_id: str
    pipeline: str
    status: str
    seconds: float
    steps: list[StepOutcome]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "steps": [
                {
                    "name": o.step.name,
                    "kind": o.step.kind,
                    "status": o.status,
                    "seconds": round(o.seconds, 3),
                    "summary": o.summary,
                    "error": o.error,
                }
                for o in self.steps
            ],
        }


STEP_KINDS = ("sync", "dbt", "shell")


def pipeline_from_project(project: Project, name: str) -> Pipeline:
    """The pipeline `name` of `pipelines:`."""
    pipelines = project.data.get("pipelines") or {}
    if name not in pipelines:
        raise EltError(f"{project.file.name}: no pipeline named '{name}'")
    steps = []
    for entry in pipelines[name]["steps"]:
        kind = next(k for k in STEP_KINDS if k in entry)
        options = {k: v for k, v in entry.items() if k not in (*STEP_KINDS, "name")}
        steps.append(Step(entry["name"], kind, str(entry[kind]), options))
    return Pipeline(name, tuple(steps))


def pipeline_from_blocks(project: Project, blocks: list[str]) -> Pipeline:
    """Steps from Meltano-style blocks: `TAP TARGET`, `dbt:COMMAND`, or a pipeline's name.

    An extractor must be followed by a loader (mappers may stand between them).
    """
    pipelines = project.data.get("pipelines") or {}
    if len(blocks) == 1 and blocks[0] in pipelines:
        return pipeline_from_project(project, blocks[0])
    jobs = {job["name"]: job["tasks"] for job in project.data.get("jobs") or []}
    steps: list[Step] = []
    pending: list[str] = []
    for block in blocks:
        if block in pipelines:
            steps.extend(pipeline_from_project(project, block).steps)
            continue
        if block in jobs:
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got job '{block}'")
            steps.extend(pipeline_from_blocks(project, _job_blocks(jobs[block])).steps)
            continue
        name, _, command = block.partition(":")
        if name.startswith("dbt") and (command or name == "dbt"):
            if pending:
                raise EltError(f"extractor '{pending[0]}' must be followed by a loader, got '{block}'")
            dbt_args = command or "build"
            steps.append(Step(f"dbt-{dbt_args.split()[0]}", "dbt", dbt_args.replace(",", " ")))
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
            steps.append(Step(f"{pending[0]}-{name}", "sync", " ".join([*pending, name])))
            pending = []
        else:
            raise EltError(
                f"cannot run plugin '{name}' ({plugin.type}) as a block",
                hint="blocks are extractor/loader pairs, dbt:COMMAND, or a pipeline name",
            )
    if pending:
        raise EltError(f"extractor '{pending[0]}' must be followed by a loader")
    if not steps:
        raise EltError("nothing to run: give a pipeline name or blocks such as `TAP TARGET dbt:build`")
    return Pipeline(" ".join(blocks), tuple(steps))


def _job_blocks(tasks: str | list[str | list[str]]) -> list[str]:
    """A Meltano job's tasks as blocks: a string, a list of strings, or a list of lists of blocks."""
    if isinstance(tasks, str):
        return tasks.split()
    blocks: list[str] = []
    for task in tasks:
        blocks.extend(task.split() if isinstance(task, str) else task)
    return blocks


def run_pipeline(
    project: Project,
    pipeline: Pipeline,
    reporter: Reporter,
    on_sync: Callable[[Step, SyncResult], None] | None = None,
    on_node: Callable[[NodeResult], None] | None = None,
) -> PipelineResult:
    """Run the steps in order, recording the run; the first failure stops it (RunError after record)."""
    runs = RunLog(project.system_db)
    record = runs.start("run", pipeline.name, project.environment)
    started = time.monotonic()
    outcomes: list[StepOutcome] = []
    failure: EltError | None = None
    for position, step in enumerate(pipeline.steps):
        step_record = StepRecord(position, step.name, step.kind, "running", now())
        runs.step(record, step_record)
        reporter.event("step_started", f"▶ {step.name} ({step.kind}: {step.command})",
                       step=step.name, kind=step.kind)  # fmt: skip
        step_started = time.monotonic()
        try:
            summary = _run_step(project, step, reporter, on_sync, on_node, record)
            status, error = "success", None
        except EltError as exc:
            summary, status, error = {}, "failed", str(exc)
            failure = exc
        seconds = time.monotonic() - step_started
        step_record.status, step_record.seconds, step_record.ended_at = status, seconds, now()
        step_record.summary, step_record.error = summary, error
        runs.step(record, step_record)
        outcomes.append(StepOutcome(step, status, seconds, summary, error))
        if failure is not None:
            break
    for position, step in enumerate(pipeline.steps[len(outcomes) :], start=len(outcomes)):
        runs.step(record, StepRecord(position, step.name, step.kind, "skipped"))
        outcomes.append(StepOutcome(step, "skipped", 0.0, {}))
    seconds = time.monotonic() - started
    status = "failed" if failure else "success"
    result = PipelineResult(record.run_id, pipeline.name, status, seconds, outcomes)
    runs.finish(record, status, seconds, result.to_json(), str(failure) if failure else None)
    if failure is not None:
        step_name = outcomes[len([o for o in outcomes if o.status != "skipped"]) - 1].step.name
        raise RunError(f"step '{step_name}' failed: {failure.message}", hint=failure.hint)
    return result


def _run_step(
    project: Project,
    step: Step,
    reporter: Reporter,
    on_sync: Callable[[Step, SyncResult], None] | None,
    on_node: Callable[[NodeResult], None] | None,
    record: RunRecord,
) -> dict[str, Any]:
    if step.kind == "sync":
        names = step.command.split()
        if len(names) < 2:
            raise EltError(f"step '{step.name}': sync needs 'TAP [MAPPER...] TARGET', got '{step.command}'")
        timeout = step.options.get("timeout")
        result = run_sync(
            project,
            names[0],
            names[-1],
            mappers=tuple(names[1:-1]),
            reporter=reporter,
            full_refresh=bool(step.options.get("full_refresh")),
            state_strategy=str(step.options.get("state_strategy", "auto")),
            timeout=float(timeout) if timeout is not None else None,
            run_id=record.run_id,
        )
        if on_sync:
            on_sync(step, result)
        return result.to_json()
    if step.kind == "dbt":
        dbt_result: DbtResult = run_dbt(
            project, shlex.split(step.command), on_node, quiet=step.options.get("quiet", True)
        )
        if not dbt_result.success:
            raise RunError(f"dbt {step.command}: {dbt_result.error}")
        return {
            "nodes": {n.unique_id: {"status": n.status, "seconds": round(n.seconds, 3)}
                      for n in dbt_result.nodes},
            "seconds": round(dbt_result.seconds, 3),
        }  # fmt: skip
    if step.kind == "shell":
        return _run_shell(project, step, reporter, record)
    raise EltError(f"step '{step.name}': unknown step kind '{step.kind}'")


def _run_shell(project: Project, step: Step, reporter: Reporter, record: RunRecord) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(project.env())
    env.update({k: str(v) for k, v in (step.options.get("env") or {}).items()})
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    env["ELT_RUN_ID"] = record.run_id
    env["ELT_ENVIRONMENT"] = project.environment or ""
    proc = subprocess.run(
        ["bash", "-c", step.command], cwd=project.root, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        reporter.event("shell_output", f"  {line}", step=step.name, line=line)
    if proc.returncode != 0:
        tail = "\n".join("  " + line for line in proc.stderr.rstrip().splitlines()[-20:])
        raise RunError(f"shell command exited with {proc.returncode}:\n{tail}")
    return {"exit_code": proc.returncode}
